"""GCN predictor: Neural Predictor (Wen et al., ECCV 2020).

Three bidirectional graph-convolution layers of width D (each averages a convolution along the edges
and one against them, with self loops and row-normalised adjacency), the node embeddings of the last
layer mean-pooled over the graph's real nodes, fully connected layers (``hidden``: 128 for NAS-Bench-101;
the ImageNet predictor of 003 §3.2 has 512 and 128, with 18 graph layers of width 96) with dropout, and the
output. Training (003 §3.1): Adam, weight decay 1e-3, cosine decay to 0, 300 epochs, batch 10,
learning rate 1e-4 for the regressor and 2e-4 for the classifier of the optional two-stage mode.
Two-stage mode: a classifier (trained on 0/1 labels with the squared error) learns which architectures lie above the ``classifier_quantile`` of the
training targets; the regressor is trained on those, and architectures the classifier rejects are
ranked below every accepted one (by their classifier probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.predictors.base import check_network
from nassearch.predictors.encoders import stack_graphs
from nassearch.predictors.neural import NeuralPredictor
from nassearch.predictors.training import Inputs, TrainSettings, predict_scores, train


class BidirectionalGraphConv(nn.Module):
    """H' = ReLU((Â_fwd H W_fwd + Â_bwd H W_bwd) / 2) with row-normalised Â = D⁻¹(A + I)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.forward_weight = nn.Linear(in_features, out_features)
        self.backward_weight = nn.Linear(in_features, out_features)

    def forward(self, nodes: torch.Tensor, forward_adj: torch.Tensor, backward_adj: torch.Tensor) -> torch.Tensor:
        return torch.relu(0.5 * (forward_adj @ self.forward_weight(nodes) + backward_adj @ self.backward_weight(nodes)))


def normalised_adjacencies(adjacency: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-normalised (A + I) for messages along the edges (from predecessors) and against them."""
    eye = torch.diag_embed(mask)
    incoming = adjacency.transpose(1, 2) + eye
    outgoing = adjacency + eye
    norm = lambda a: a / a.sum(dim=2, keepdim=True).clamp(min=1.0)  # noqa: E731
    return norm(incoming), norm(outgoing)


class GCNNetwork(nn.Module):
    """Stacked bidirectional graph convolutions, masked mean pooling, fully connected layers of the ``hidden``
    sizes (each with ReLU and dropout), output."""

    def __init__(self, vocab: int, width: int, layers: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        dims = [vocab] + [width] * layers
        self.convs = nn.ModuleList(BidirectionalGraphConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        head: list[nn.Module] = []
        for size_in, size_out in zip([width, *hidden], hidden):
            head += [nn.Linear(size_in, size_out), nn.ReLU(), nn.Dropout(dropout)]
        self.head = nn.Sequential(*head, nn.Linear(hidden[-1], 1))

    def forward(self, one_hot: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        incoming, outgoing = normalised_adjacencies(adjacency, mask)
        nodes = one_hot
        for conv in self.convs:
            nodes = conv(nodes, incoming, outgoing) * mask[..., None]
        pooled = nodes.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


class GCNPredictor(NeuralPredictor):
    """Neural Predictor GCN (``width`` is the node representation size D)."""

    name = "gcn"

    def __init__(self, seed: int = 0, width: int = 144, layers: int = 3, hidden: int | list[int] = 128,
                 dropout: float = 0.1,
                 epochs: int = 300, batch_size: int = 10, lr: float = 1e-4, weight_decay: float = 1e-3,
                 loss: Literal["mse", "ranking", "mse+ranking"] = "mse", two_stage: bool = False, classifier_lr: float = 2e-4,
                 classifier_quantile: float = 0.5, max_steps: int | None = None, device: str = "auto") -> None:
        super().__init__(seed, TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                             loss=loss, max_steps=max_steps, device=device))
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        if not sizes:
            raise ValueError("hidden must name at least one layer size, e.g. 128 or [512, 128]")
        check_network(dropout, width=width, layers=layers, **{f"hidden[{i}]": size for i, size in enumerate(sizes)})
        if not 0 < classifier_quantile < 1:
            raise ValueError(f"classifier_quantile must lie in (0, 1), got {classifier_quantile}")
        self.width, self.layers, self.hidden, self.dropout = width, layers, sizes, dropout
        self.two_stage, self.classifier_quantile = two_stage, classifier_quantile
        self.classifier_settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=classifier_lr,
                                                 weight_decay=weight_decay, max_steps=max_steps, device=device)
        self.classifier: nn.Module | None = None

    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        batch = stack_graphs(graphs)
        return {"one_hot": torch.from_numpy(batch.one_hot), "adjacency": torch.from_numpy(batch.adjacency),
                "mask": torch.from_numpy(batch.mask)}

    def make_network(self, inputs: Inputs) -> nn.Module:
        return GCNNetwork(inputs["one_hot"].shape[2], self.width, self.layers, self.hidden, self.dropout)

    @property
    def supports_refit(self) -> bool:
        return not self.two_stage  # a warm start would continue the regressor without its classifier

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> GCNPredictor:
        if not self.two_stage:
            return super().fit(graphs, y, val)
        y = np.asarray(y, dtype=np.float64)
        good = y > np.quantile(y, self.classifier_quantile)
        inputs = self.featurize(graphs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            self.classifier = train(self.make_network(inputs), inputs, torch.as_tensor(good, dtype=torch.float32),
                                    self.classifier_settings, self.seed + 1)
        return super().fit([g for g, k in zip(graphs, good) if k], y[good])

    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        scores = super().predict(graphs)
        if not self.two_stage:
            return scores
        probability = predict_scores(self.classifier, self.featurize(graphs)).double().numpy()
        accepted = probability >= 0.5
        floor = scores[accepted].min() if accepted.any() else scores.min()
        return np.where(accepted, scores, floor - 1.0 + np.clip(probability, 0.0, 0.5))
