"""Real, small, randomly initialised transformers models that tests build and save (no download)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }} {{ m['content'] | lower }} [SEP] {% endfor %}"


def tiny_reward_model(
    folder: Path, words: Iterable[str], *, chat_template: str | None = CHAT_TEMPLATE, positions: int = 256
) -> Path:
    """A one-label BERT with a word-level tokenizer over `words` (lower case), saved to `folder`.

    `chat_template`: the tokenizer's template (None: none, so a scorer reads a text pair);
    `positions`: the model's position table, its token limit.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "user", "assistant", "system"]
    vocab = {w: i for i, w in enumerate([*specials, *sorted(set(words) - set(specials))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=positions, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
