"""MLP predictor: the Neural Predictor paper's baseline on one-hot operations + flattened adjacency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.predictors.base import check_network
from nassearch.predictors.encoders import flat_features
from nassearch.predictors.neural import NeuralPredictor
from nassearch.predictors.training import Inputs, TrainSettings


class MLPNetwork(nn.Module):
    """Fully connected ReLU layers with dropout, then one output."""

    def __init__(self, in_features: int, hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        self.body = nn.Sequential(*layers, nn.Linear(in_features, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(features).squeeze(-1)


class MLPPredictor(NeuralPredictor):
    """MLP on ``flat_features`` (concatenated one-hot ops and upper-triangular adjacency)."""

    name = "mlp"

    def __init__(self, seed: int = 0, hidden: list[int] | None = None, dropout: float = 0.1, epochs: int = 300,
                 batch_size: int = 10, lr: float = 1e-3, weight_decay: float = 1e-3,
                 loss: Literal["mse", "ranking", "mse+ranking"] = "mse", max_steps: int | None = None,
                 device: str = "auto") -> None:
        super().__init__(seed, TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                             loss=loss, max_steps=max_steps, device=device))
        self.hidden = list(hidden) if hidden is not None else [256, 256, 256]
        check_network(dropout, **{f"hidden[{i}]": width for i, width in enumerate(self.hidden)})
        self.dropout = dropout

    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        return {"features": torch.from_numpy(flat_features(graphs))}

    def make_network(self, inputs: Inputs) -> nn.Module:
        return MLPNetwork(inputs["features"].shape[1], self.hidden, self.dropout)
