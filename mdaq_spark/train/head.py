"""Train the QSM head on frozen embeddings with a triplet margin loss.

Two affine maps, one for the prompt side and one for the response side, start at the
identity (so an untrained head scores exactly like the encoder's cosine) and learn to pull
an expert-revised response nearer its prompt than the raw machine translation. A penalty
on the distance from the identity keeps the head close to the encoder's geometry, which is
what lets it carry over to languages it never saw. Runs in minutes on a 2-core CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mdaq_spark.config import HeadTrainConfig

log = logging.getLogger(__name__)


@dataclass
class TrainedHead:
    prompt_weight: np.ndarray
    prompt_bias: np.ndarray
    response_weight: np.ndarray
    response_bias: np.ndarray
    losses: list[float]  # mean training loss per epoch


def identity_linear(d: int):
    """A d x d affine map that starts as the identity: an untrained head scores like the encoder's cosine."""
    import torch
    from torch import nn

    layer = nn.Linear(d, d)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(d))
        layer.bias.zero_()
    return layer


def train_head(
    anchor: np.ndarray, positive: np.ndarray, negative: np.ndarray, params: HeadTrainConfig, seed: int
) -> TrainedHead:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    d = anchor.shape[1]

    prompt_map, response_map = identity_linear(d), identity_linear(d)
    params_list = [*prompt_map.parameters(), *response_map.parameters()]
    optim = torch.optim.Adam(params_list, lr=params.lr)
    loss_fn = nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: 1.0 - nn.functional.cosine_similarity(x, y), margin=params.margin
    )
    eye = torch.eye(d)
    a, p, n = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in (anchor, positive, negative))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for epoch in range(params.epochs):
        order = torch.randperm(len(a), generator=generator)
        total = 0.0
        for start in range(0, len(a), params.batch_size):
            idx = order[start : start + params.batch_size]
            loss = loss_fn(prompt_map(a[idx]), response_map(p[idx]), response_map(n[idx]))
            reg = ((prompt_map.weight - eye) ** 2).sum() + ((response_map.weight - eye) ** 2).sum()
            optim.zero_grad()
            (loss + params.identity_penalty * reg).backward()
            optim.step()
            total += loss.item() * len(idx)
        losses.append(total / len(a))
        log.info("epoch %d/%d: triplet loss %.5f", epoch + 1, params.epochs, losses[-1])

    def np_(t) -> np.ndarray:
        return t.detach().numpy().astype(np.float32).copy()

    return TrainedHead(
        np_(prompt_map.weight), np_(prompt_map.bias), np_(response_map.weight), np_(response_map.bias), losses
    )
