"""TNASP (Lu et al., NeurIPS 2021): a transformer over operation embeddings plus Laplacian positional
encodings, with an optional self-evolution stage.

Model (002 §B): operation embedding of size 80 plus a linear projection of the Laplacian eigenvectors
(both branches summed), 3 transformer encoder layers with 4 heads, mean pooling over real nodes, and a
2-layer regressor with hidden size 96. Training: Adam, learning rate 1e-4 with cosine decay, weight
decay 1e-3, batch 10, 300 epochs.

Self-evolution (used when ``fit`` gets a validation set and ``self_evolution_epochs > 0``): the
evaluated validation architectures become constraints f(v) = ȳ on the predictor, with an estimated
target ȳ initialised from a normal distribution (mean and spread of the training targets) and pulled
toward the validation evaluations. The constrained problem is solved as a minimax (augmented
Lagrangian) problem with ADMM for ``self_evolution_epochs`` more epochs (100 in the paper): each epoch
takes gradient steps on the training loss plus (ρ/2)||f(v) - ȳ + u||², then updates
ȳ = argmin ||ȳ - y_v||² + (ρ/2)||f(v) + u - ȳ||² in closed form, then the scaled dual u += f(v) - ȳ.
(The supplement gives the setting, not the full algorithm; this is our reading of its equations.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.predictors.base import check_network
from nassearch.predictors.encoders import laplacian_eigenvectors, stack_graphs
from nassearch.predictors.neural import NeuralPredictor
from nassearch.predictors.training import Inputs, TrainSettings, fit_epochs, predict_scores, train


def softmax_last(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, written out: for attention over a handful of nodes it runs several
    times faster on CPU than ``torch.softmax``."""
    exp = (scores - scores.amax(dim=-1, keepdim=True)).exp()
    return exp / exp.sum(dim=-1, keepdim=True)


class EncoderLayer(nn.Module):
    """Post-LN transformer encoder layer: multi-head self-attention (padding keys masked), then a ReLU
    feed-forward of twice the width (as in the graph transformer that introduced Laplacian positional
    encodings); attention is written out with batched matmuls, which is fastest for graphs this small."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                          nn.Linear(2 * dim, dim))
        self.norm_attention, self.norm_feed_forward = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        b, m, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).view(b, m, 3, h, d // h).permute(2, 0, 3, 1, 4).reshape(3, b * h, m, d // h)
        scores = torch.bmm(q, k.transpose(1, 2)).mul_((d // h) ** -0.5)
        scores = scores.view(b, h, m, m).masked_fill_(padding[:, None, None, :], float("-inf")).view(b * h, m, m)
        attended = torch.bmm(self.drop(softmax_last(scores)), v).view(b, h, m, d // h).transpose(1, 2)
        x = self.norm_attention(x + self.drop(self.proj(attended.reshape(b, m, d))))
        return self.norm_feed_forward(x + self.drop(self.feed_forward(x)))


class TNASPNetwork(nn.Module):
    """Op embedding + Laplacian PE projection -> transformer encoder -> masked mean -> 2-layer regressor."""

    def __init__(self, vocab: int, max_nodes: int, dim: int, layers: int, heads: int, hidden: int,
                 dropout: float) -> None:
        super().__init__()
        self.op_embedding = nn.Embedding(vocab + 1, dim, padding_idx=vocab)
        self.position = nn.Linear(max_nodes, dim)
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, dropout) for _ in range(layers))
        self.regressor = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, ops: torch.Tensor, eigenvectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.op_embedding(ops) + self.position(eigenvectors)
        padding = mask == 0
        for layer in self.encoder:
            tokens = layer(tokens, padding)
        pooled = (tokens * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.regressor(pooled).squeeze(-1)


class TNASPPredictor(NeuralPredictor):
    """TNASP with optional ADMM self-evolution on a validation set."""

    name = "tnasp"

    def __init__(self, seed: int = 0, dim: int = 80, layers: int = 3, heads: int = 4, hidden: int = 96,
                 dropout: float = 0.1, epochs: int = 300, batch_size: int = 10, lr: float = 1e-4,
                 weight_decay: float = 1e-3, loss: Literal["mse", "ranking", "mse+ranking"] = "mse",
                 self_evolution_epochs: int = 100, rho: float = 1.0, max_steps: int | None = None,
                 device: str = "auto") -> None:
        super().__init__(seed, TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                             loss=loss, max_steps=max_steps, device=device))
        check_network(dropout, dim=dim, layers=layers, heads=heads, hidden=hidden)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if not rho > 0 or self_evolution_epochs < 0:
            raise ValueError("rho must be > 0 and self_evolution_epochs >= 0")
        self.dim, self.layers, self.heads, self.hidden, self.dropout = dim, layers, heads, hidden, dropout
        self.self_evolution_epochs, self.rho = self_evolution_epochs, rho
        self.vocab_size = self.max_nodes = 0

    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        batch = stack_graphs(graphs, max_nodes=self.max_nodes)
        ops = np.where(batch.mask > 0, batch.ops, batch.vocab_size)  # padding -> the embedding's padding index
        return {"ops": torch.from_numpy(ops), "eigenvectors": torch.from_numpy(
            laplacian_eigenvectors(batch.adjacency, batch.mask)), "mask": torch.from_numpy(batch.mask)}

    def make_network(self, inputs: Inputs) -> nn.Module:
        return TNASPNetwork(self.vocab_size, self.max_nodes, self.dim, self.layers, self.heads, self.hidden,
                            self.dropout)

    @property
    def supports_refit(self) -> bool:
        return False  # its positional encoding is sized by the first fit's largest graph

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> TNASPPredictor:
        self.vocab_size = len(graphs[0].op_vocab)
        self.max_nodes = max(g.num_nodes for g in graphs)
        super().fit(graphs, y)
        if val is not None and self.self_evolution_epochs > 0:
            self._self_evolve(graphs, np.asarray(y, dtype=np.float64), val)
        return self

    def _self_evolve(self, graphs: Sequence[ArchGraph], y: np.ndarray,
                     val: tuple[Sequence[ArchGraph], np.ndarray]) -> None:
        inputs, targets = self.featurize(graphs), self._scaled(y)
        val_inputs, val_targets = self.featurize(val[0]), self._scaled(val[1])
        rng = np.random.default_rng(self.seed)
        estimate = torch.as_tensor(rng.normal(0.0, 1.0, len(val_targets)), dtype=torch.float32)
        dual = torch.zeros_like(estimate)
        settings = TrainSettings(epochs=1, batch_size=self.settings.batch_size, lr=self.settings.lr,
                                 weight_decay=self.settings.weight_decay, schedule="constant",
                                 device=self.settings.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for epoch in fit_epochs(self.self_evolution_epochs, "TNASP self-evolution"):
                penalty = self._constraint_loss(val_inputs, estimate, dual)
                self.network = train(self.network, inputs, targets, settings, self.seed + epoch, extra_loss=penalty)
                predicted = predict_scores(self.network, val_inputs)
                estimate = (2.0 * val_targets + self.rho * (predicted + dual)) / (2.0 + self.rho)
                dual = dual + predicted - estimate

    def _constraint_loss(self, val_inputs: Inputs, estimate: torch.Tensor, dual: torch.Tensor):
        rho = self.rho

        def loss(model: nn.Module, _batch: Inputs, _scores: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
            device = next(model.parameters()).device
            predicted = model(**{k: v.to(device) for k, v in val_inputs.items()})
            return 0.5 * rho * ((predicted - estimate.to(device) + dual.to(device)) ** 2).mean()

        return loss
