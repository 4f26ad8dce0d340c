"""Any transformers sequence-classification model as a scorer: a reward model, a quality classifier.

Teams that trust a reward model can rank by it, alone or combined with the QSM
(`scoring.scorers`). The model reads an exchange through its tokenizer's chat template when it
has one (reward models are trained on chats: system prompt, earlier turns, question, answer),
else as a text pair (the earlier turns and question; the answer). Its score is the logit of a
one-label model (a reward), else the expected label index under its softmax (a quality
classifier whose labels run from worst to best).

`model` is a local directory or, on a machine that may download, a hub id: it is fetched once
on the driver (huggingface_hub.snapshot_download) and the workers load the same files. Batches
are fixed by the corpus as the encoders' are, so a rerun gives the same floats.
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


@dataclass
class _Loaded:
    tokenizer: Any
    model: Any
    device: str


@register("sequence_classifier")
@dataclass(frozen=True)
class SequenceClassifierScorer(Scorer):
    on_device = True
    location: str = ""
    max_length: int = 512
    batch_size: int = 16
    device: str = "auto"

    @classmethod
    def from_config(cls, entry, job, name: str) -> SequenceClassifierScorer:
        if not entry.model:
            raise ConfigError("scoring.scorers: a sequence_classifier needs `model` (a local directory or a hub id)")
        return cls(
            name=name,
            weight=entry.weight,
            location=_local(entry.model),
            batch_size=job.model.batch_size,
            device=job.model.device,
        )

    @property
    def columns(self) -> tuple[str, ...]:
        return (S.MESSAGES,)

    def fingerprint(self, encodings: str) -> str:
        return registry.fingerprint(self.location, "sequence_classifier", str(self.max_length))

    def load(self) -> _Loaded:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from mdaq_spark.models.encoder import pick_device

        device = pick_device(self.device)
        tokenizer = AutoTokenizer.from_pretrained(self.location)
        model = AutoModelForSequenceClassification.from_pretrained(self.location).to(device).eval()
        if tokenizer.pad_token is None:  # decoder reward models often ship without one
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id
        log.info("loaded sequence classifier %s on %s [pid %d]", self.location, device, os.getpid())
        return _Loaded(tokenizer, model, device)

    def place(self, model: _Loaded, gpus: list[str]) -> _Loaded:
        from mdaq_spark.models.encoder import task_device

        device = task_device(model.device.split(":")[0], gpus)
        if device != model.device:
            model.model.to(device)
            model.device = device
        return model

    def _inputs(self, loaded: _Loaded, chats: list[list[dict]]) -> dict:
        tok = loaded.tokenizer
        if getattr(tok, "chat_template", None):
            texts = [tok.apply_chat_template(chat, tokenize=False) for chat in chats]
            return tok(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt",
                       add_special_tokens=False)  # fmt: skip
        prompts = ["\n".join(m["content"] for m in chat[:-1] if m["role"] != "system") for chat in chats]
        answers = [chat[-1]["content"] for chat in chats]
        return tok(prompts, answers, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")

    def score(self, model: _Loaded, batch: pa.RecordBatch) -> np.ndarray:
        import torch

        chats = [json.loads(m) for m in batch.column(S.MESSAGES).to_pylist()]
        out = np.zeros(len(chats), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(chats), self.batch_size):
                inputs = self._inputs(model, chats[start : start + self.batch_size])
                logits = model.model(**{k: v.to(model.device) for k, v in inputs.items()}).logits.float()
                if logits.shape[1] == 1:
                    values = logits[:, 0]
                else:
                    values = torch.softmax(logits, dim=1) @ torch.arange(
                        logits.shape[1], dtype=torch.float32, device=logits.device
                    )
                out[start : start + len(values)] = values.cpu().numpy()
        return out

    def info(self) -> dict:
        return {"model": self.location}
