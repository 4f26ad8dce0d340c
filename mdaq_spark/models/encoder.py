"""A sentence encoder on whatever device this process has, with OOM-safe batching.

sentence-transformers already does the batching we want (sort by length, batch, no_grad,
restore order); this wrapper adds what a long Spark task needs on top: explicit truncation
to the configured length, half precision on CUDA, and halving the batch after a CUDA
out-of-memory error instead of failing the task.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from mdaq_spark.config import ModelConfig
from mdaq_spark.errors import ModelLoadError
from mdaq_spark.models import registry

log = logging.getLogger(__name__)

_LOADS = 0  # models loaded by this process: one per worker is the target, and benches check it
_ENCODE_CPU = 0.0  # CPU seconds this process spent inside the model: the rest of a worker's CPU is overhead
_LOCK = threading.Lock()
T = TypeVar("T")


def loads_in_this_process() -> int:
    return _LOADS


def encode_cpu_in_this_process() -> float:
    return _ENCODE_CPU


def pick_device(requested: str) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("model.device is 'cuda' but this process sees no CUDA device; use 'auto' or 'cpu'")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def task_device(device: str, gpu_addresses: Sequence[str]) -> str:
    """The CUDA device of the GPU Spark assigned to this task, when there is one.

    Plain "cuda" is device 0 in every process: on an executor with two GPUs, two model tasks
    each holding one GPU would both run on the first. A Python worker is reused by later
    tasks, which may hold the other GPU, so the device is chosen per task, not per load.
    Addresses are what the discovery script reports; non-numeric ones cannot name a torch
    device and leave the choice to CUDA.
    """
    if device == "cuda" and gpu_addresses and str(gpu_addresses[0]).isdigit():
        return f"cuda:{int(gpu_addresses[0])}"
    return device


def halving_on_oom(run: Callable[[int], T], batch_size: int) -> tuple[T, int]:
    """(run(batch_size), the batch size it succeeded with), halving it after each out-of-memory error.

    A batch that fits on one GPU may not on another, or with longer texts: halving and
    retrying the same inputs is cheaper than a failed stage. Other errors, and one at batch
    size 1, propagate.
    """
    while True:
        try:
            return run(batch_size), batch_size
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower() or batch_size == 1:
                raise
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory: batch size halved to %d", batch_size)


def torch_dtype(requested: str, device: str):
    import torch

    if requested == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[requested]


def _truncate(model, max_tokens: int) -> None:
    """Cut every text to at most `max_tokens` tokens, explicitly, whatever the first module is.

    Transformer modules truncate at `max_seq_length`; a StaticEmbedding has no such limit
    (its max_seq_length is infinite and read-only), so its Rust tokenizer truncates instead.
    """
    first = model[0]
    tokenizer = getattr(first, "tokenizer", None)
    if math.isinf(getattr(first, "max_seq_length", 0) or 0) and hasattr(tokenizer, "enable_truncation"):
        tokenizer.enable_truncation(max_tokens)
        return
    model.max_seq_length = min(max_tokens, model.max_seq_length or max_tokens)


def max_tokens(model) -> int:
    """The truncation length actually in force (what the load log and the benches report)."""
    first = model[0]
    truncation = getattr(getattr(first, "tokenizer", None), "truncation", None)
    if isinstance(truncation, dict):
        return int(truncation["max_length"])
    return int(model.max_seq_length)


class TextEncoder:
    def __init__(self, cfg: ModelConfig, location: str | None = None) -> None:
        global _LOADS
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.cfg = cfg
        self.kind = pick_device(cfg.device)  # "cpu" or "cuda"; place() picks the task's GPU
        self.device = self.kind
        self.location = location or registry.resolve(cfg.name, cfg.cache_dir)
        started = time.perf_counter()
        try:
            model = SentenceTransformer(self.location, device=self.device, local_files_only=True)
        except Exception as exc:  # the loader raises many types; all mean "cannot load offline"
            raise ModelLoadError(f"cannot load model '{cfg.name}' from {self.location} offline: {exc}") from exc
        _truncate(model, cfg.max_seq_length)
        dtype = torch_dtype(cfg.dtype, self.device)
        if dtype != next(model.parameters()).dtype:
            model = model.to(dtype)
        model.eval()
        self.model = model
        self.batch_size = cfg.batch_size
        with _LOCK:
            _LOADS += 1
        log.info(
            "loaded %s on %s (%s, max_seq_length %d) in %.1fs [pid %d, load #%d]",
            cfg.name, self.device, dtype, max_tokens(model), time.perf_counter() - started, os.getpid(), _LOADS,
        )  # fmt: skip

    def place(self, gpu_addresses: Sequence[str]) -> None:
        """Move the model to the GPU this task holds (a no-op on CPU or when it is there already)."""
        device = task_device(self.kind, gpu_addresses)
        if device != self.device:
            self.model.to(device)
            log.info("model moved from %s to %s for this task's GPU [pid %d]", self.device, device, os.getpid())
            self.device = device

    @property
    def dim(self) -> int:
        model = self.model  # sentence-transformers renamed the method; older releases have only the old name
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def _oom_safe(self, run):
        """run(batch_size), halving the batch after a CUDA out-of-memory error; counts the model's CPU time."""
        global _ENCODE_CPU
        cpu = time.process_time()
        try:
            out, self.batch_size = halving_on_oom(run, self.batch_size)
            return out
        finally:
            with _LOCK:
                _ENCODE_CPU += time.process_time() - cpu

    def encode(self, texts: list[str], prefix: str = "") -> np.ndarray:
        """L2-normalised float32 embeddings, one row per text, in the input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [prefix + t for t in texts] if prefix else list(texts)

        def run(batch_size: int) -> np.ndarray:
            out = self.model.encode(
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            return np.asarray(out, dtype=np.float32)

        return self._oom_safe(run)

    def fit_prompts(self, questions: list[str], contexts: list[str], prefix: str = "") -> list[str]:
        """Each question after as much of its context's end as fits the truncation length (io.exchanges.fit_context).

        A row without context is its question unchanged: no tokenizer call, the text as before.
        """
        if not any(contexts):
            return list(questions)
        from mdaq_spark.io.exchanges import fit_context

        count, spans = _token_functions(self.model[0].tokenizer, prefix)
        limit = max_tokens(self.model)
        return [fit_context(c, q, limit, count, spans) if c else q for q, c in zip(questions, contexts, strict=True)]

    def encode_layers(self, texts: list[str], prefix: str = "", batch_size: int | None = None) -> np.ndarray:
        """Mean-pooled hidden states of every layer, (n_texts, n_layers + 1, dim) float32, in input order.

        One forward pass gives all of them: lower layers carry fluency and syntax that the
        last layer's pooled vector has largely abstracted away, which is what a QSM layer
        head needs to tell a fluent revision from a literal machine translation. Index 0 is
        the token-embedding output; the last, pooled and normalised, is the embedding
        (`with_layers`). Pooling is in float32 whatever precision the model runs in.
        """
        import torch

        first = self.model[0]
        bert = getattr(first, "auto_model", None)
        if bert is None:
            raise ModelLoadError(f"model '{self.cfg.name}' has no transformer module: layer states need one")
        texts = [prefix + t for t in texts] if prefix else list(texts)
        n_states = bert.config.num_hidden_layers + 1
        if not texts:
            return np.zeros((0, n_states, self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        # sentence-transformers renamed tokenize to preprocess (same features); older releases have only tokenize
        tokenize = getattr(first, "preprocess", None) or first.tokenize

        def run(size: int) -> np.ndarray:
            out = np.zeros((len(texts), n_states, self.dim), dtype=np.float32)
            with torch.no_grad():
                for start in range(0, len(texts), size):
                    idx = order[start : start + size]
                    features = tokenize([texts[i] for i in idx])
                    features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
                    states = bert(**features, output_hidden_states=True).hidden_states
                    mask = features["attention_mask"].unsqueeze(-1).float()
                    pooled = [(h.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9) for h in states]
                    out[idx] = torch.stack(pooled, dim=1).cpu().numpy()
            return out

        if batch_size is not None:
            return run(batch_size)
        return self._oom_safe(run)

    def with_layers(self, texts: list[str], prefix: str, layers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(L2-normalised embeddings, float16 pooled states of `layers`) from one forward pass.

        What a QSM layer head reads: the embedding exactly as `train.features` derives it from
        the same states (so training and the pipeline see the same numbers), and the chosen
        layers' states in the half precision they were trained from.
        """
        states = self.encode_layers(texts, prefix)
        return embedding_of_states(states), states[:, list(layers), :].astype(np.float16)


def _token_functions(tokenizer, prefix: str):
    """(tokens the encoder reads for a prompt, character spans of a text's tokens): transformers or Rust tokenizer."""
    if hasattr(tokenizer, "encode_batch"):  # a tokenizers.Tokenizer (StaticEmbedding): truncation is its own

        def count(text: str) -> int:
            return len(tokenizer.encode(prefix + text).ids)

        def spans(text: str) -> list[tuple[int, int]]:
            return list(tokenizer.encode(text, add_special_tokens=False).offsets)

        return count, spans

    def count(text: str) -> int:
        return len(tokenizer(prefix + text, truncation=False)["input_ids"])

    def spans(text: str) -> list[tuple[int, int]]:
        return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]

    return count, spans


def embedding_of_states(states: np.ndarray) -> np.ndarray:
    """The L2-normalised output-layer state of (n, n_layers + 1, dim) pooled states: the text's embedding."""
    last = states[:, -1, :]
    return (last / np.maximum(np.linalg.norm(last, axis=1, keepdims=True), 1e-12)).astype(np.float32)
