"""NAR-Former V2 (Yi et al., NeurIPS 2023): a transformer whose attention is restricted to graph
neighbours and linearly normalised, for accuracy and latency prediction.

Encoding (supplement C.1), with NAR-Former's sinusoidal real-number codes
(:func:`nassearch.predictors.tokenizer.real_number_encoding`):

- accuracy (cell graphs): per node, the code of the operation index (length 64) followed by the code
  of the node index in topological order (length 64): 128 values;
- latency (whole-network graphs carrying ``node_attrs["layer"]``, see
  :data:`nassearch.graph.LAYER_ATTRIBUTES`): per node, a one-hot of the layer type (length 32; the
  graph's ``op_vocab`` must hold at most 32 types) followed by a length-10 code of each of the 12 layer
  attributes: 152 values; plus a length-10 code of each of the 4 static properties
  (:data:`nassearch.graph.STATIC_PROPERTIES`, required in ``graph_attrs``): 40 values. Attributes and
  static properties span many orders of magnitude, so each value x is coded as
  sign(x) log2(1 + |x|) / 32 (:func:`log_scale`): every value below 2^32 in magnitude (and every
  non-negative value below 2^64) then has a distinct code, where raw or merely log-scaled values would
  alias (the code's frequencies repeat every 8 units). NaN (an absent attribute) codes to zeros.

Every node also gets its in- and out-degree, and the adjacency that restricts attention. A node's
neighbours are its predecessors, its successors and itself: edges are treated as undirected (A ∨ Aᵀ)
with self loops, so information flows both ways along an edge, as in the paper's description of
attention over adjacent nodes; the direction survives in the degree features and (for accuracy) the
position codes. Padding nodes have no neighbours, not even themselves.

Network (main text and C.2; the block details follow the authors' public description): ``blocks``
blocks of width ``dim`` (6 x 512). Each block: degree scaling H̃ = H ⊙ sigmoid(Linear(in/out-degree))
(``use_degree``), linear graph-aided attention, eqs (1)-(3)::

    X = Sigmoid(W_q H̃ + b_q);  S = (X Xᵀ / sqrt(d)) ⊙ A;  Z = W_a (Norm(S) H̃) + b_a

where Norm divides each row by its sum (+1e-6) (no softmax), plus a root term W_r H̃, then
L2-normalisation of each node's features, ReLU and dropout; then a pre-LN grouped feed-forward network
(``groups`` groups, each LayerNorm -> Linear(w, ratio w) -> ReLU -> dropout -> Linear(ratio w, w)),
added back through a per-channel layer scale initialised to 1e-4. Padding nodes are zeroed after every
block. Accuracy head: the masked mean over real nodes after each block; a fusion MLP (L·dim -> L·dim/4
-> L, sigmoid) weights the L block features, whose weighted sum goes to FC dim -> dim -> dim -> 1 (ReLU,
dropout). Latency head: the sum over nodes of the last block, concatenated with the static properties'
projection ReLU(Linear(40, dim)), into FC 2·dim -> dim -> dim -> 1. The output is an unbounded scalar: the
targets are z-scored by :class:`NeuralPredictor`, so there is no sigmoid at the output.

Training (C.3.3, NAS-Bench-201): AdamW, learning rate 1e-4 with 10% linear warm-up then linear decay to
0, weight decay 0.01 on weight matrices only, batch 8, 1000 epochs, EMA of the weights (decay 0.99),
loss MSE + 0.1 x SR + 0.5 x AC with the information-flow-consistency augmentation, shared with
NAR-Former (:func:`nassearch.predictors.narformer.narformer_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nassearch.graph import LAYER_ATTRIBUTES, STATIC_PROPERTIES, ArchGraph
from nassearch.predictors.base import check_network
from nassearch.predictors.encoders import stack_graphs
from nassearch.predictors.neural import NeuralPredictor
from nassearch.predictors.narformer import narformer_loss, with_augmented_views
from nassearch.predictors.tokenizer import encode_values, log_scale
from nassearch.predictors.training import ExtraLoss, Inputs, TrainSettings

OP_CODE_LENGTH = 64
POSITION_CODE_LENGTH = 64
LAYER_TYPES = 32
ATTRIBUTE_CODE_LENGTH = 10


Edges = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def real_edges(adjacency: np.ndarray, real: np.ndarray) -> Edges:
    """(graph, source, target, weight) of every edge between real nodes (``real``: bool (n, M)) of a
    stacked batch."""
    graph, source, target = np.nonzero(adjacency)
    keep = real[graph, source] & real[graph, target]
    graph, source, target = graph[keep], source[keep], target[keep]
    return graph, source, target, adjacency[graph, source, target]


def neighbour_matrix(edges: Edges, real: np.ndarray) -> np.ndarray:
    """(A ∨ Aᵀ ∨ I) restricted to real nodes, float32 (n, M, M): who attends to whom. Written edge by
    edge: whole-network graphs have hundreds of nodes but few edges, so scattered writes replace several
    passes over the dense array (1.7x faster featurisation of NB201 whole networks, same values)."""
    n, m = real.shape
    graph, source, target, weight = edges
    linked = weight > 0
    neighbours = np.zeros((n, m, m), dtype=np.float32)
    neighbours[graph[linked], source[linked], target[linked]] = 1
    neighbours[graph[linked], target[linked], source[linked]] = 1
    graph, node = np.nonzero(real)
    neighbours[graph, node, node] = 1
    return neighbours


def degrees(edges: Edges, real: np.ndarray) -> np.ndarray:
    """Weighted in- and out-degree of every node, float32 (n, M, 2)."""
    n, m = real.shape
    graph, source, target, weight = edges
    into = np.bincount(graph * m + target, weights=weight, minlength=n * m)
    out = np.bincount(graph * m + source, weights=weight, minlength=n * m)
    return np.stack([into, out], axis=-1).reshape(n, m, 2).astype(np.float32)


class GraphAidedAttention(nn.Module):
    """Degree scaling, linear graph-aided attention (eqs 1-3) plus a root term, L2 norm, ReLU, dropout.

    ``weight`` stacks W_q, W_a and W_r (each dim x in_dim), so one matrix product serves all three;
    W_a (Norm(S) H̃) is computed as Norm(S) (H̃ W_aᵀ), the same product reassociated.
    """

    def __init__(self, in_dim: int, dim: int, dropout: float, use_degree: bool) -> None:
        super().__init__()
        self.dim = dim
        self.degree_gate = nn.Linear(2, in_dim) if use_degree else None
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(3 * dim, in_dim).uniform_(-bound, bound))
        self.query_bias = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.aggregate_bias = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))
        self.register_buffer("no_bias", torch.zeros(dim), persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, nodes: torch.Tensor, neighbours: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
        """nodes (B, M, in_dim), neighbours (B, M, M), degree (B, M, 2) -> (B, M, dim)."""
        if self.degree_gate is not None:
            nodes = nodes * torch.sigmoid(self.degree_gate(degree))
        bias = torch.cat([self.query_bias, self.no_bias, self.aggregate_bias])
        query, value, root = F.linear(nodes, self.weight, bias).split(self.dim, dim=-1)
        x = torch.sigmoid(query)
        scores = torch.bmm(x, x.transpose(1, 2)).mul_(self.dim ** -0.5).mul_(neighbours)
        weights = scores / (scores.sum(dim=-1, keepdim=True) + 1e-6)
        z = torch.baddbmm(root, weights, value)
        return self.drop(F.normalize(z, dim=-1).relu_())


class GroupedFeedForward(nn.Module):
    """Pre-LN feed-forward network applied to ``groups`` channel groups independently, each with its own
    LayerNorm and its own two linear layers (hidden width ``ratio`` times the group width)."""

    def __init__(self, dim: int, groups: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.groups, self.width, self.hidden = groups, dim // groups, dim // groups * ratio
        # Vectors are stored 1-d so that weight decay (matrices only) skips them.
        self.norm_weight = nn.Parameter(torch.ones(dim))
        self.norm_bias = nn.Parameter(torch.zeros(dim))
        self.up_weight = nn.Parameter(torch.empty(groups, self.width, self.hidden))
        self.up_bias = nn.Parameter(torch.empty(groups * self.hidden))
        self.down_weight = nn.Parameter(torch.empty(groups, self.hidden, self.width))
        self.down_bias = nn.Parameter(torch.empty(dim))
        for weight, bias, fan_in in ((self.up_weight, self.up_bias, self.width),
                                     (self.down_weight, self.down_bias, self.hidden)):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)
        self.drop = nn.Dropout(dropout)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        b, m, dim = nodes.shape
        g, w = self.groups, self.width
        x = F.layer_norm(nodes.reshape(b * m, g, w), (w,))
        x = (x * self.norm_weight.view(g, w) + self.norm_bias.view(g, w)).transpose(0, 1)  # (g, b*m, w)
        x = self.drop(torch.baddbmm(self.up_bias.view(g, 1, self.hidden), x, self.up_weight).relu_())
        x = torch.baddbmm(self.down_bias.view(g, 1, w), x, self.down_weight)
        return x.transpose(0, 1).reshape(b, m, dim)


class NARFormerV2Block(nn.Module):
    """Graph-aided attention, then the grouped feed-forward network added through a layer scale."""

    def __init__(self, in_dim: int, dim: int, groups: int, ffn_ratio: int, dropout: float, use_degree: bool) -> None:
        super().__init__()
        self.attention = GraphAidedAttention(in_dim, dim, dropout, use_degree)
        self.feed_forward = GroupedFeedForward(dim, groups, ffn_ratio, dropout)
        self.layer_scale = nn.Parameter(torch.full((dim,), 1e-4))

    def forward(self, nodes: torch.Tensor, neighbours: torch.Tensor, degree: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        z = self.attention(nodes, neighbours, degree)
        return (z + self.layer_scale * self.feed_forward(z)) * mask[..., None]


class NARFormerV2Network(nn.Module):
    """Blocks, then the accuracy head (fused per-block means) or, with ``static_dim``, the latency head
    (node sum + static properties)."""

    def __init__(self, in_dim: int, static_dim: int, dim: int, blocks: int, groups: int, ffn_ratio: int,
                 dropout: float, use_degree: bool) -> None:
        super().__init__()
        dims = [in_dim] + [dim] * blocks
        self.blocks = nn.ModuleList(NARFormerV2Block(a, dim, groups, ffn_ratio, dropout, use_degree) for a in dims[:-1])
        if static_dim:
            self.static = nn.Sequential(nn.Linear(static_dim, dim), nn.ReLU())
            self.fusion = None
        else:
            total = blocks * dim
            self.static = None
            self.fusion = nn.Sequential(nn.Linear(total, total // 4), nn.ReLU(), nn.Linear(total // 4, blocks),
                                        nn.Sigmoid())
        self.head = nn.Sequential(nn.Linear(2 * dim if static_dim else dim, dim), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, 1))

    def forward(self, nodes: torch.Tensor, neighbours: torch.Tensor, degree: torch.Tensor, mask: torch.Tensor,
                static: torch.Tensor | None = None, **_augmented: torch.Tensor) -> torch.Tensor:
        count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        pooled = []
        for block in self.blocks:
            nodes = block(nodes, neighbours, degree, mask)
            if self.fusion is not None:
                pooled.append(nodes.sum(dim=1) / count)
        if self.fusion is None:
            feature = torch.cat([nodes.sum(dim=1), self.static(static)], dim=-1)
        else:
            stacked = torch.stack(pooled, dim=1)  # (B, L, dim)
            feature = (self.fusion(stacked.flatten(1))[..., None] * stacked).sum(dim=1)
        return self.head(feature).squeeze(-1)


def _is_latency_batch(graphs: Sequence[ArchGraph]) -> bool:
    kinds = {"layer" in g.node_attrs for g in graphs}
    if len(kinds) > 1:
        raise ValueError("graphs of one batch must all carry node_attrs['layer'] (latency) or none (accuracy)")
    return kinds == {True}


class NARFormerV2Predictor(NeuralPredictor):
    """NAR-Former V2; latency mode when the graphs carry ``node_attrs["layer"]``, accuracy mode otherwise."""

    name = "narformer_v2"

    def __init__(self, seed: int = 0, dim: int = 512, blocks: int = 6, groups: int = 8, ffn_ratio: int = 4,
                 dropout: float = 0.05, use_degree: bool = True, epochs: int = 1000, batch_size: int = 8,
                 lr: float = 1e-4, weight_decay: float = 0.01, warmup_fraction: float = 0.1,
                 ema_decay: float | None = 0.99, sr_weight: float = 0.1, consistency_weight: float = 0.5,
                 max_steps: int | None = None, device: str = "auto") -> None:
        super().__init__(seed, TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                             optimizer="adamw", schedule="linear", warmup_fraction=warmup_fraction,
                                             ema_decay=ema_decay, max_steps=max_steps, device=device))
        check_network(dropout, dim=dim, blocks=blocks, groups=groups, ffn_ratio=ffn_ratio)
        if dim % groups:
            raise ValueError(f"dim ({dim}) must be divisible by groups ({groups})")
        if blocks * dim < 4:
            raise ValueError(f"blocks * dim must be >= 4 for the fusion MLP, got {blocks * dim}")
        if not sr_weight >= 0 or not consistency_weight >= 0:
            raise ValueError(f"sr_weight and consistency_weight must be >= 0, got {sr_weight}, {consistency_weight}")
        self.dim, self.blocks, self.groups, self.ffn_ratio = dim, blocks, groups, ffn_ratio
        self.dropout, self.use_degree = dropout, use_degree
        self.sr_weight, self.consistency_weight = sr_weight, consistency_weight
        self.latency: bool | None = None  # set by fit from the training graphs

    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        latency = _is_latency_batch(graphs)
        if self.latency is not None and latency != self.latency:
            kind = "latency (node_attrs['layer'])" if self.latency else "accuracy (no node_attrs['layer'])"
            raise ValueError(f"this predictor was fitted on {kind} graphs; got the other kind")
        batch = stack_graphs(graphs)
        mask = batch.mask
        real = mask > 0
        edges = real_edges(batch.adjacency, real)
        inputs = {"neighbours": neighbour_matrix(edges, real), "degree": degrees(edges, real), "mask": mask}
        if latency:
            inputs["nodes"], inputs["static"] = self._latency_codes(graphs, batch.ops, real)
        else:
            positions = np.where(real, np.arange(mask.shape[1]), np.nan)
            inputs["nodes"] = np.concatenate([encode_values(np.where(real, batch.ops, np.nan), OP_CODE_LENGTH),
                                              encode_values(positions, POSITION_CODE_LENGTH)], axis=-1)
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in inputs.items()}

    @staticmethod
    def _latency_codes(graphs: Sequence[ArchGraph], ops: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node codes (n, M, 152) and static-property codes (n, 40) of whole-network graphs."""
        if len(graphs[0].op_vocab) > LAYER_TYPES:
            raise ValueError(f"latency graphs may have at most {LAYER_TYPES} layer types, "
                             f"got an op_vocab of {len(graphs[0].op_vocab)}")
        n, m = ops.shape
        layer = np.full((n, m, len(LAYER_ATTRIBUTES)), np.nan)
        static = np.full((n, len(STATIC_PROPERTIES)), np.nan)
        for i, graph in enumerate(graphs):
            values = np.asarray(graph.node_attrs["layer"], dtype=np.float64)
            if values.shape != (graph.num_nodes, len(LAYER_ATTRIBUTES)):
                raise ValueError(f"node_attrs['layer'] of graph {i} must have shape "
                                 f"({graph.num_nodes}, {len(LAYER_ATTRIBUTES)}), got {values.shape}")
            layer[i, :graph.num_nodes] = values
            missing = [p for p in STATIC_PROPERTIES if p not in graph.graph_attrs]
            if missing:
                raise ValueError(f"latency graph {i} lacks graph_attrs {missing} (NaN marks an unknown value)")
            static[i] = [graph.graph_attrs[p] for p in STATIC_PROPERTIES]
        one_hot = np.eye(LAYER_TYPES, dtype=np.float32)[np.maximum(ops, 0)] * real[..., None]
        layer = np.where(real[..., None], log_scale(layer), np.nan)
        attributes = encode_values(layer, ATTRIBUTE_CODE_LENGTH).reshape(n, m, -1)
        static_codes = encode_values(log_scale(static), ATTRIBUTE_CODE_LENGTH).reshape(n, -1)
        return np.concatenate([one_hot, attributes], axis=-1), static_codes

    def make_network(self, inputs: Inputs) -> nn.Module:
        static_dim = inputs["static"].shape[1] if "static" in inputs else 0
        return NARFormerV2Network(inputs["nodes"].shape[2], static_dim, self.dim, self.blocks, self.groups,
                                  self.ffn_ratio, self.dropout, self.use_degree)

    def featurize_train(self, graphs: Sequence[ArchGraph]) -> Inputs:
        return with_augmented_views(self, graphs, self.consistency_weight > 0)

    def extra_loss(self) -> ExtraLoss:
        """MSE + ``sr_weight`` x SR + ``consistency_weight`` x AC, as NAR-Former."""
        return narformer_loss(self.sr_weight, self.consistency_weight)

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> NARFormerV2Predictor:
        self.latency = _is_latency_batch(graphs)
        return super().fit(graphs, y, val)
