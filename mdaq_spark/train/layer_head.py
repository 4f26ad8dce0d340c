"""A QSM head over several encoder layers: relevance from the last layer, fluency from all of them.

The last layer's pooled vector is what the encoder was trained to make language- and
wording-independent, so it says little about whether a response reads like a literal machine
translation. Lower layers keep more of the surface: word order, agreement, calques. The
score stays a bi-encoder score (instruction and response encoded separately, once each):

    score = cos(P e_prompt, R e_response) + q(layers of the response)

The cosine term (affine maps starting at the identity, as in the plain head) carries
relevance; q, a small MLP over the response's pooled layer states, carries fluency. It is
trained with two kinds of negatives: the raw machine translation of the same instruction
(quality) and the response of another instruction (relevance), so that what q learns can
never outvote a response that does not answer the question.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mdaq_spark.train.head import identity_linear

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerHeadParams:
    layers: tuple[int, ...] = (2, 4, 6, 8, 10, 12)
    hidden: int = 256
    epochs: int = 12
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 0.05
    identity_penalty: float = 0.1
    relevance_weight: float = 1.0
    # False: the relevance term stays the untrained encoder's cosine (identity maps), which
    # already ranks the true response above another instruction's ~99% of the time; only q learns
    train_relevance: bool = True


class LayerHead:
    """Trained weights as numpy arrays; scoring needs no torch."""

    def __init__(self, state: dict[str, np.ndarray], params: LayerHeadParams) -> None:
        self.state, self.params = state, params

    def quality(self, layers: np.ndarray) -> np.ndarray:
        s = self.state
        x = layers.reshape(len(layers), -1)
        x = (x - s["mu"]) / s["sd"]
        h = x @ s["q1.weight"].T + s["q1.bias"]
        h = 0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))  # GELU (tanh form)
        return (h @ s["q2.weight"].T + s["q2.bias"])[:, 0]

    def relevance(self, prompt_emb: np.ndarray, response_emb: np.ndarray) -> np.ndarray:
        s = self.state
        p = prompt_emb @ s["p.weight"].T + s["p.bias"]
        r = response_emb @ s["r.weight"].T + s["r.bias"]
        p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", p, r)

    def score(self, prompt_emb: np.ndarray, response_emb: np.ndarray, response_layers: np.ndarray) -> np.ndarray:
        return self.relevance(prompt_emb, response_emb) + self.quality(response_layers)


def train_layer_head(
    anchor: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    positive_layers: np.ndarray,
    negative_layers: np.ndarray,
    params: LayerHeadParams,
    seed: int,
) -> LayerHead:
    """anchor/positive/negative: last-layer embeddings (n, d); *_layers: (n, len(params.layers), d) states."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
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
    optim = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
    eye = torch.eye(d)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    a, p, n = t(anchor), t(positive), t(negative)
    lp, ln = t((flat_pos - mu) / sd), t((flat_neg - mu) / sd)

    def cos(x, y):
        return nn.functional.cosine_similarity(p_map(x), r_map(y))

    def q(x):
        return q2(act(q1(x)))[:, 0]

    generator = torch.Generator().manual_seed(seed)
    for epoch in range(params.epochs):
        order = torch.randperm(len(a), generator=generator)
        total = 0.0
        for start in range(0, len(a), params.batch_size):
            idx = order[start : start + params.batch_size]
            s_pos = cos(a[idx], p[idx]) + q(lp[idx])
            s_neg = cos(a[idx], n[idx]) + q(ln[idx])
            other = idx.roll(1)  # another instruction's revised response
            s_other = cos(a[idx], p[other]) + q(lp[other])
            loss = torch.relu(params.margin - (s_pos - s_neg)).mean()
            loss = loss + params.relevance_weight * torch.relu(params.margin - (s_pos - s_other)).mean()
            reg = ((p_map.weight - eye) ** 2).sum() + ((r_map.weight - eye) ** 2).sum()
            optim.zero_grad()
            (loss + params.identity_penalty * reg).backward()
            optim.step()
            total += loss.item() * len(idx)
        log.info("layer head epoch %d/%d: loss %.5f", epoch + 1, params.epochs, total / len(a))
    state = {name: v.detach().numpy().astype(np.float32).copy() for name, v in modules.state_dict().items()}
    rename = {"0.weight": "p.weight", "0.bias": "p.bias", "1.weight": "r.weight", "1.bias": "r.bias",
              "2.weight": "q1.weight", "2.bias": "q1.bias", "3.weight": "q2.weight", "3.bias": "q2.bias"}  # fmt: skip
    state = {rename[k]: v for k, v in state.items()}
    state["mu"], state["sd"] = mu.astype(np.float32), sd.astype(np.float32)
    return LayerHead(state, params)
