"""Any transformers sequence-classification model as a scorer: a reward model, a quality classifier.

Teams that trust a reward model can rank by it, alone or combined with the QSM
(`scoring.scorers`). The model reads an exchange through its tokenizer's chat template when it
has one (reward models are trained on chats: system prompt, earlier turns, question, answer),
else as a text pair (the earlier turns and question; the answer). Its score is the logit of a
one-label model (a reward), else the expected label index under its softmax (a quality
classifier whose labels run from worst to best).

The model judges the answer, so what it reads always ends with the answer: a chat longer than
`max_length` tokens loses its earliest turns whole (after the system prompt), then the system
prompt, then, when question and answer alone are too long, tokens from the left (a leading
BOS kept). A text pair loses the start of its prompt first. Cutting from the right, as
tokenizers do by default, would show a later turn's model only the conversation's opening.

`model` is a local directory or, on a machine that may download, a hub id: it is fetched once
on the driver (huggingface_hub.snapshot_download), and the workers load the same directory; an
executor on another host, where that directory is missing, resolves the id from its own cache.
A CUDA out-of-memory error halves the batch and retries, as the encoders do. It runs in
`model.dtype` on `model.device`; `auto` is the checkpoint's own dtype on a GPU (a bfloat16
reward model stays bfloat16) and float32 on a CPU. Batches are fixed by the corpus as the
encoders' are, so a rerun gives the same floats.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mdaq_spark import schema as S
from mdaq_spark.errors import ConfigError
from mdaq_spark.io.records import SYSTEM_ROLES
from mdaq_spark.models import registry
from mdaq_spark.scoring.base import Scorer, register

log = logging.getLogger(__name__)


def _local(model: str) -> str:
    """A local directory for `model`: itself, or the hub snapshot (from the local cache when offline)."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as exc:  # the hub client raises many types: all mean "not available here"
        raise ConfigError(f"scoring.scorers: sequence_classifier model {model!r} is neither a directory nor "
                          f"a hub model this machine can fetch: {exc}") from exc  # fmt: skip


DEFAULT_MAX_LENGTH = 512
FIT_VERSION = "left-cut-2"  # how a long exchange is cut to max_length: part of the scores' fingerprint
_NO_LIMIT = 1_000_000  # tokenizers without a known limit report a huge model_max_length


def model_limit(tokenizer, config) -> int | None:
    """The most tokens the model reads: its tokenizer's stated limit or its position table, when known."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    known = [int(x) for x in limits if isinstance(x, int | float) and 0 < x < _NO_LIMIT]
    return min(known) if known else None


def _keep_end(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """The last `limit` tokens, with a leading BOS kept in front of them."""
    if len(ids) <= limit:
        return ids
    if bos is not None and ids and ids[0] == bos:
        return [bos, *ids[len(ids) - limit + 1 :]]
    return ids[len(ids) - limit :]


def fit_chat(chat: list[dict], limit: int, count) -> list[dict]:
    """`chat` without its earliest turns, whole, so that `count(messages)` tokens fit in `limit`.

    The question the answer replies to (the last user turn) and everything after it are never
    dropped; a system prompt goes only after every earlier turn. When nothing fits, the shortest
    candidate: the question and what follows it.
    """
    system = 1 if chat and chat[0].get("role") in SYSTEM_ROLES else 0
    question = max((i for i, m in enumerate(chat) if m.get("role") == "user"), default=len(chat) - 1)
    question = max(question, system)
    if count(chat) <= limit:
        return chat
    # drop k of the turns between the system prompt and the question: the least k that fits
    low, high = 1, question - system
    while low <= high:
        mid = (low + high) // 2
        if count(chat[:system] + chat[system + mid :]) <= limit:
            high = mid - 1
        else:
            low = mid + 1
    if low <= question - system:
        return chat[:system] + chat[system + low :]
    return chat[question:]


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    device: str
    batch_size: int  # halved for good in this worker after an out-of-memory error


@register("sequence_classifier")
@dataclass(frozen=True)
class SequenceClassifierScorer(Scorer):
    on_device = True
    location: str = ""  # the model's directory on the driver
    model_id: str = ""  # `model` as configured: a worker without the driver's directory resolves it itself
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"

    @classmethod
    def from_config(cls, entry, job, name: str) -> SequenceClassifierScorer:
        if not entry.model:
            raise ConfigError("scoring.scorers: a sequence_classifier needs `model` (a local directory or a hub id)")
        location = _local(entry.model)
        max_length = entry.max_length or DEFAULT_MAX_LENGTH
        limit = _limit_of(location)
        if limit is not None and max_length > limit:
            if entry.max_length:
                log.warning("%s reads at most %d tokens: scoring.scorers max_length %d lowered", location, limit,
                            max_length)  # fmt: skip
            max_length = limit
        return cls(
            name=name,
            weight=entry.weight,
            location=location,
            model_id=entry.model,
            max_length=max_length,
            batch_size=entry.batch_size or job.model.batch_size,
            device=job.model.device,
            dtype=job.model.dtype,
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return (S.MESSAGES,)

    def fingerprint(self, encodings: str) -> str:
        return registry.fingerprint(
            self.location, "sequence_classifier", str(self.max_length), FIT_VERSION, self.device, self.dtype
        )

    def load(self) -> _Loaded:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from mdaq_spark.models.encoder import pick_device, torch_dtype

        device = pick_device(self.device)
        if self.dtype == "auto":
            dtype = "auto" if device.startswith("cuda") else torch.float32
        else:
            dtype = torch_dtype(self.dtype, device)
        # an executor on another host has no driver directory: its own Hugging Face cache, or a download
        location = self.location if Path(self.location).is_dir() else _local(self.model_id or self.location)
        tokenizer = AutoTokenizer.from_pretrained(location)
        tokenizer.truncation_side = "left"  # the answer is at the end: what is cut is the oldest text
        model = AutoModelForSequenceClassification.from_pretrained(location, dtype=dtype).to(device).eval()
        if tokenizer.pad_token is None:  # decoder reward models often ship without one
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id
        log.info("loaded sequence classifier %s on %s (%s) [pid %d]", location, device, model.dtype, os.getpid())
        return _Loaded(tokenizer, model, device, self.batch_size)

    def place(self, model: _Loaded, gpus: list[str]) -> _Loaded:
        from mdaq_spark.models.encoder import task_device

        device = task_device(model.device.split(":")[0], gpus)
        if device != model.device:
            model.model.to(device)
            model.device = device
        return model

    def _chat_ids(self, tok, chat: list[dict]) -> list[int]:
        def ids(messages: list[dict]) -> list[int]:
            text = tok.apply_chat_template(messages, tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]

        whole = ids(chat)
        if len(whole) <= self.max_length:  # most exchanges: one templating, no search
            return whole
        fitted = fit_chat(chat, self.max_length, lambda messages: len(ids(messages)))
        return _keep_end(ids(fitted), self.max_length, tok.bos_token_id)

    def _pair(self, tok, chat: list[dict]) -> dict:
        prompt = "\n".join(m["content"] for m in chat[:-1] if m["role"] not in SYSTEM_ROLES)
        answer = chat[-1]["content"]
        room = self.max_length - tok.num_special_tokens_to_add(pair=True)
        answer_tokens = len(tok(answer, add_special_tokens=False)["input_ids"])
        # the prompt's start goes first; an answer that alone overflows loses its own start too
        how = "only_first" if answer_tokens < room else "longest_first"
        return dict(tok(prompt, answer, truncation=how, max_length=self.max_length))

    def inputs(self, loaded: _Loaded, chats: list[list[dict]]) -> dict:
        """The padded model inputs of `chats`, each cut to max_length with its answer kept at the end."""
        tok = loaded.tokenizer
        if getattr(tok, "chat_template", None):
            rows = [self._chat_ids(tok, chat) for chat in chats]
            encoded = [{"input_ids": r, "attention_mask": [1] * len(r)} for r in rows]
        else:
            encoded = [self._pair(tok, chat) for chat in chats]
        return tok.pad(encoded, return_tensors="pt")

    def _forward(self, model: _Loaded, chats: list[list[dict]]) -> np.ndarray:
        import torch

        inputs = self.inputs(model, chats)
        with torch.no_grad():
            logits = model.model(**{k: v.to(model.device) for k, v in inputs.items()}).logits.float()
        if logits.shape[1] == 1:
            values = logits[:, 0]
        else:
            values = torch.softmax(logits, dim=1) @ torch.arange(
                logits.shape[1], dtype=torch.float32, device=logits.device
            )
        return values.cpu().numpy()

    def score(self, model: _Loaded, batch: pa.RecordBatch) -> np.ndarray:
        from mdaq_spark.models.encoder import halving_on_oom

        chats = [json.loads(m) for m in batch.column(S.MESSAGES).to_pylist()]
        out = np.zeros(len(chats), dtype=np.float64)
        start = 0
        while start < len(chats):

            def run(size: int, start: int = start) -> np.ndarray:
                return self._forward(model, chats[start : start + size])

            values, model.batch_size = halving_on_oom(run, model.batch_size)
            out[start : start + len(values)] = values
            start += len(values)
        return out

    def info(self) -> dict:
        return {"model": self.location, "max_length": self.max_length}


def _limit_of(location: str) -> int | None:
    """The model's token limit, read on the driver from its tokenizer and config files."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        return model_limit(AutoTokenizer.from_pretrained(location), AutoConfig.from_pretrained(location))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"scoring.scorers: sequence_classifier model {location!r} cannot be loaded: {exc}") from exc
