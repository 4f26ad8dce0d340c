"""A QSM head over several encoder layers: relevance from the last layer, fluency from all of them.

The last layer's pooled vector is what the encoder was trained to make language- and
wording-independent, so it says little about whether a response reads like a literal machine
translation. Lower layers keep more of the surface: word order, agreement, calques. The
score stays a bi-encoder score (instruction and response encoded separately, once each):

    c = cos(P e_prompt, R e_response)
    score = c + scale * sigmoid(q(layers of the response)) * sigmoid((c - tau) / temperature)

The cosine term (affine maps starting at the identity, as in the plain head) carries
relevance; q, a small MLP over the response's pooled layer states, carries fluency. It is
trained with two kinds of negatives: the raw machine translation of the same instruction
(quality) and the response of another instruction (relevance). The gate bounds what q can
add and opens it only above a learned cosine threshold tau, so fluency lifts answers to the
question and next to nothing else; with `gate_scale: 0` q is added as it is (score = c + q),
and then a fluent non-answer can be lifted above a true answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mdaq_spark.config import LayerHeadTrainConfig
from mdaq_spark.models.qsm import QsmHead, normalise_rows
from mdaq_spark.train.head import identity_linear

log = logging.getLogger(__name__)


@dataclass
class TrainedLayerHead:
    tensors: dict[str, np.ndarray]  # models.qsm names: prompt.*, response.*, quality.*
    layers: tuple[int, ...]
    losses: list[float]  # mean training loss per epoch
    gate: dict | None = None  # scale, threshold, temperature of a gated fluency term (manifest "quality_gate")

    def head(self) -> QsmHead:
        manifest = {"layers": list(self.layers), **({"quality_gate": self.gate} if self.gate else {})}
        return QsmHead.from_tensors(self.tensors, manifest)


def train_layer_head(
    anchor: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    positive_layers: np.ndarray,
    negative_layers: np.ndarray,
    params: LayerHeadTrainConfig,
    seed: int,
) -> TrainedLayerHead:
    """anchor/positive/negative: last-layer embeddings (n, d); *_layers: (n, len(params.layers), d) states."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    d = anchor.shape[1]
    flat_pos = positive_layers.reshape(len(positive_layers), -1)
    flat_neg = negative_layers.reshape(len(negative_layers), -1)
    both = np.concatenate([flat_pos, flat_neg])
    mu, sd = both.mean(0), both.std(0) + 1e-6

    p_map, r_map = identity_linear(d), identity_linear(d)
    q1, q2 = nn.Linear(flat_pos.shape[1], params.hidden), nn.Linear(params.hidden, 1)
    with torch.no_grad():
        q2.weight.mul_(0.01)
        q2.bias.zero_()
    act = nn.GELU(approximate="tanh")
    modules = nn.ModuleList([p_map, r_map, q1, q2])
    if not params.train_relevance:
        for m in (p_map, r_map):
            m.requires_grad_(False)
    trainable = [x for x in modules.parameters() if x.requires_grad]
    gated = params.gate_scale > 0
    groups = [{"params": trainable}]
    if gated:
        # the gate's threshold starts halfway between the untrained cosines of true answers and of
        # another instruction's answers
        tau = torch.nn.Parameter(torch.tensor(_initial_threshold(anchor, positive), dtype=torch.float32))
        groups.append({"params": [tau], "weight_decay": 0.0})
    optim = torch.optim.AdamW(groups, lr=params.lr, weight_decay=params.weight_decay)
    eye = torch.eye(d)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    a, p, n = t(anchor), t(positive), t(negative)
    lp, ln = t((flat_pos - mu) / sd), t((flat_neg - mu) / sd)

    def cos(x, y):
        return nn.functional.cosine_similarity(p_map(x), r_map(y))

    def q(x):
        return q2(act(q1(x)))[:, 0]

    def score(prompt, response, states):
        c = cos(prompt, response)
        if not gated:
            return c + q(states)
        gate = torch.sigmoid((c - tau) / params.gate_temperature)
        return c + params.gate_scale * torch.sigmoid(q(states)) * gate

    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(params.epochs):
        order = torch.randperm(len(a), generator=generator)
        total = 0.0
        for start in range(0, len(a), params.batch_size):
            idx = order[start : start + params.batch_size]
            s_pos = score(a[idx], p[idx], lp[idx])
            s_neg = score(a[idx], n[idx], ln[idx])
            other = idx.roll(1)  # another instruction's revised response
            s_other = score(a[idx], p[other], lp[other])
            loss = torch.relu(params.margin - (s_pos - s_neg)).mean()
            loss = loss + params.relevance_weight * torch.relu(params.margin - (s_pos - s_other)).mean()
            reg = ((p_map.weight - eye) ** 2).sum() + ((r_map.weight - eye) ** 2).sum()
            optim.zero_grad()
            (loss + params.identity_penalty * reg).backward()
            optim.step()
            total += loss.item() * len(idx)
        losses.append(total / len(a))
        log.info("layer head epoch %d/%d: loss %.5f", epoch + 1, params.epochs, losses[-1])
    state = {name: v.detach().numpy().astype(np.float32).copy() for name, v in modules.state_dict().items()}
    rename = {"0.weight": "prompt.weight", "0.bias": "prompt.bias", "1.weight": "response.weight",
              "1.bias": "response.bias", "2.weight": "quality.1.weight", "2.bias": "quality.1.bias",
              "3.weight": "quality.2.weight", "3.bias": "quality.2.bias"}  # fmt: skip
    state = {rename[k]: v for k, v in state.items()}
    state["quality.mean"], state["quality.std"] = mu.astype(np.float32), sd.astype(np.float32)
    gate = None
    if gated:
        gate = {"scale": params.gate_scale, "threshold": float(tau.detach()), "temperature": params.gate_temperature}
        log.info("layer head gate: threshold %.4f", gate["threshold"])
    return TrainedLayerHead(state, tuple(params.layers), losses, gate)


def _initial_threshold(anchor: np.ndarray, positive: np.ndarray) -> float:
    """Midway between the mean cosine of true (instruction, response) pairs and of mismatched ones."""
    a, p = normalise_rows(anchor), normalise_rows(positive)
    true = np.einsum("ij,ij->i", a, p).mean()
    other = np.einsum("ij,ij->i", a, np.roll(p, 1, axis=0)).mean()
    return float((true + other) / 2)
