"""The encoder runs on the GPU its Spark task was given, not on whichever CUDA device is first."""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import TextEncoder, task_device
from mdaq_spark.stages import udfs

NAME = "multilingual-e5-small-static"


@pytest.mark.parametrize(
    ("kind", "addresses", "device"),
    [
        ("cuda", ["1"], "cuda:1"),  # the second GPU of an executor: not plain "cuda", which is device 0
        ("cuda", ["0", "1"], "cuda:0"),  # a task holding two GPUs runs the model on the first
        ("cuda", [], "cuda"),  # no resource profile (a local run): CUDA's own choice
        ("cuda", ["GPU-5c1e"], "cuda"),  # an address torch cannot name a device by
        ("cpu", ["0"], "cpu"),  # model.device: cpu stays on the CPU whatever the task holds
    ],
)
def test_task_device(kind, addresses, device):
    assert task_device(kind, addresses) == device


def test_placing_a_cpu_encoder_keeps_it_and_its_embeddings():
    registry.ensure_prepared(NAME)
    encoder = TextEncoder(ModelConfig(name=NAME, max_seq_length=16, device="cpu"))
    before = encoder.encode(["Wie spät ist es?", "What time is it?"])
    encoder.place(["0"])
    assert encoder.device == "cpu" and str(next(encoder.model.parameters()).device) == "cpu"
    assert np.array_equal(encoder.encode(["Wie spät ist es?", "What time is it?"]), before)


def test_a_task_without_a_gpu_profile_holds_no_gpu(spark):
    """Read inside a real Spark task, as the encode map reads it."""
    held = spark.sparkContext.parallelize([0, 1], 2).map(lambda _: udfs.assigned_gpus()).collect()
    assert held == [[], []]


def test_out_of_memory_halves_the_batch_until_it_fits():
    from mdaq_spark.models.encoder import halving_on_oom

    tried = []

    def run(size: int) -> int:
        tried.append(size)
        if size > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return size * 10

    assert halving_on_oom(run, 16) == (20, 2) and tried == [16, 8, 4, 2]
    with pytest.raises(RuntimeError, match="out of memory"):
        halving_on_oom(lambda size: run(99), 4)  # still too big at batch size 1: the error stands
    with pytest.raises(ValueError):
        halving_on_oom(lambda size: int("x"), 8)  # not a memory error: raised at once
