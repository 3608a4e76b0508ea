"""NAR-Former (Yi et al., CVPR 2023): a tokenizer, a multi-stage fusion transformer and a prediction head.

Tokenizer (000 §1 and the paper §3.2): every node becomes the concatenation of real-number codes
(:mod:`nassearch.predictors.tokenizer`) of its operation index, its own position and its source nodes'
positions (the sum of their codes; the input node's source is position -1). Cell graphs use 64 values
per part (192 per node). Whole-network graphs (``node_attrs["layer"]``, for latency) use 32 values for
each of 15 parts (operation, position, sources, 8 operation attributes, 4 output-shape values): 480 per
node, zeros where an attribute is absent; attribute values and the static properties are scaled by
:func:`~nassearch.predictors.tokenizer.log_scale` first. A graph token
coding the number of nodes (through a linear layer and ReLU) is put in front.

MobileNet tokenizer (``tokenizer="mobilenet"``, 000 §2.4, for chains of MBConv blocks: ``ofa_mbv3``,
``proxylessnas``): one token per block (node with ``kernel`` > 0; input, output, padding and zero layers
get none), the codes of its kernel size, its expansion ratio and its own position (1..n in the chain), 64
values each; the graph token codes the input resolution (``graph_attrs["resolution"]``) instead of the node
count. A chain has one topological order, so this tokenizer trains without the augmented views (the AC term
would be zero and the MSE and SR terms would see every graph twice).

Multi-stage fusion transformer (``depths`` = (6, 1, 1, 1)): a first stage of pre-LN self-attention
encoder blocks over all tokens; each later stage cross-attends a smaller set of learnt queries (4, 2,
then 1 token) to the previous stage's summary, the third and fourth stages first fusing the first
stage's tokens into that summary; the single final token, layer-normalised, goes to the head: a linear
layer (accuracy) or, for whole networks, an MLP over the token and the static properties (batch size,
FLOPs, parameters, memory access). Targets are z-scored by :class:`NeuralPredictor`, so the head has no
output sigmoid (the authors' code squashes raw accuracies with one).

Training (000 §2.2, NAS-Bench-201): AdamW, 10% warm-up to lr 1e-4 then linear decay to 0, weight decay
0.01 except norms and biases, dropout 0.1, EMA of the weights, batch 256, 4000 epochs; loss = MSE +
0.1 x SR (sequence ranking: L1 between pairwise differences of predictions and of targets under a
random pairing within the batch) + 0.5 x AC (architecture consistency: squared difference between the
predictions for a graph and for its information-flow-consistent augmentation, the same DAG with its
nodes renumbered in another topological order; the MSE and SR terms cover both views).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from nassearch.graph import STATIC_PROPERTIES, ArchGraph
from nassearch.predictors.base import check_network
from nassearch.predictors.encoders import stack_graphs
from nassearch.predictors.neural import NeuralPredictor
from nassearch.predictors.tnasp import softmax_last
from nassearch.predictors.tokenizer import encode_values, log_scale
from nassearch.predictors.training import ExtraLoss, Inputs, TrainSettings

CELL_PART = 64
NETWORK_PART = 32
NETWORK_PARTS = 15  # operation, position, sources, 8 attributes, 4 output-shape values


def node_tokens(ops: np.ndarray, adjacency: np.ndarray, mask: np.ndarray, part: int) -> np.ndarray:
    """Operation, position and source-position codes of padded graphs: float32 (n, M, 3 * part);
    padding nodes are zero."""
    n, m = ops.shape
    positions = np.arange(m, dtype=np.float64)
    op_code = encode_values(ops.astype(np.float64), part)
    position_code = np.broadcast_to(encode_values(positions, part), (n, m, part))
    sources = np.einsum("bij,ic->bjc", adjacency.astype(np.float32), encode_values(positions, part))
    no_source = adjacency.sum(axis=1) == 0
    sources = np.where(no_source[..., None], encode_values(np.array(-1.0), part), sources)
    return np.concatenate([op_code, position_code, sources], axis=-1) * mask[..., None]


def tokenize(graphs: Sequence[ArchGraph], max_nodes: int | None = None) -> dict[str, np.ndarray]:
    """NAR-Former tokens of a batch of graphs: ``tokens`` (n, M, 192 or 480), ``mask`` (n, M), ``depth``
    (n,) and, for whole networks, ``static`` (n, 4) (log-compressed static properties)."""
    batch = stack_graphs(graphs, max_nodes=max_nodes)
    layered = "layer" in graphs[0].node_attrs
    part = NETWORK_PART if layered else CELL_PART
    tokens = node_tokens(np.maximum(batch.ops, 0), batch.adjacency, batch.mask, part)
    out = {"mask": batch.mask, "depth": batch.mask.sum(axis=1).astype(np.float32)}
    if layered:
        m = batch.ops.shape[1]
        attrs = np.full((len(graphs), m, 12), np.nan)
        for i, graph in enumerate(graphs):
            attrs[i, : graph.num_nodes] = graph.node_attrs["layer"]
        attr_code = encode_values(log_scale(attrs), part).reshape(len(graphs), m, 12 * part)
        tokens = np.concatenate([tokens, attr_code * batch.mask[..., None]], axis=-1)
        out["static"] = log_scale(np.array([[g.graph_attrs[k] for k in STATIC_PROPERTIES] for g in graphs])).astype(np.float32)
    out["tokens"] = tokens.astype(np.float32)
    return out


MOBILENET_SPACES = "ofa_mbv3 and proxylessnas"


def tokenize_mobilenet(graphs: Sequence[ArchGraph]) -> dict[str, np.ndarray]:
    """The §2.4 tokens of chains of MBConv blocks: ``tokens`` (n, M, 192) with the kernel, expansion and
    position (1..n_blocks) codes of each block in chain order, M the most blocks in the batch; ``mask`` (n, M);
    ``depth`` (n,) holding the input resolution, which the network codes like the node count."""
    if not graphs:
        raise ValueError("no graphs to encode")
    for i, graph in enumerate(graphs):
        missing = [f"node attribute {k!r}" for k in ("kernel", "expansion") if k not in graph.node_attrs]
        if "resolution" not in graph.graph_attrs:
            missing.append("graph attribute 'resolution'")
        if missing:
            raise ValueError(f"narformer tokenizer 'mobilenet' needs {', '.join(missing)}, which graph {i} lacks; "
                             f"the {MOBILENET_SPACES} spaces provide them (use tokenizer 'graph' for other spaces)")
    m = max(g.num_nodes for g in graphs)
    kernel, expansion = np.zeros((len(graphs), m)), np.zeros((len(graphs), m))
    for i, graph in enumerate(graphs):
        kernel[i, : graph.num_nodes] = graph.node_attrs["kernel"]
        expansion[i, : graph.num_nodes] = graph.node_attrs["expansion"]
    is_block = kernel > 0
    blocks = is_block.sum(axis=1)
    order = np.argsort(~is_block, axis=1, kind="stable")[:, : blocks.max()]  # the blocks first, in chain order
    mask = (np.arange(order.shape[1]) < blocks[:, None]).astype(np.float32)
    position_code = encode_values(np.arange(1.0, order.shape[1] + 1), CELL_PART)
    tokens = np.concatenate([encode_values(np.take_along_axis(kernel, order, axis=1), CELL_PART),
                             encode_values(np.take_along_axis(expansion, order, axis=1), CELL_PART),
                             np.broadcast_to(position_code, (*order.shape, CELL_PART))], axis=-1)
    return {"tokens": (tokens * mask[..., None]).astype(np.float32), "mask": mask,
            "depth": np.array([g.graph_attrs["resolution"] for g in graphs], dtype=np.float32)}


Tokenizer = Literal["graph", "mobilenet"]
TOKENIZERS: dict[str, Callable[[Sequence[ArchGraph]], dict[str, np.ndarray]]] = {
    "graph": tokenize, "mobilenet": tokenize_mobilenet}


def topological_renumbering(adjacency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random topological order of a DAG (strictly upper-triangular adjacency): ``order[k]`` is the
    old index of the node that becomes node k."""
    indegree = adjacency.sum(axis=0).astype(np.int64)
    ready = [i for i in range(len(indegree)) if indegree[i] == 0]
    order = []
    while ready:
        node = ready.pop(int(rng.integers(len(ready))))
        order.append(node)
        for child in np.flatnonzero(adjacency[node]):
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(int(child))
    return np.array(order, dtype=np.int64)


def consistent_augmentation(graph: ArchGraph, rng: np.random.Generator) -> ArchGraph:
    """The same architecture with its nodes renumbered in another topological order (information flow
    unchanged); padding nodes (``node_attrs["mask"] == 0``) stay at the end."""
    real = graph.node_attrs.get("mask", np.ones(graph.num_nodes)) > 0
    keep = np.flatnonzero(real)
    order = keep[topological_renumbering(graph.adjacency[np.ix_(keep, keep)], rng)]
    order = np.concatenate([order, np.flatnonzero(~real)])
    return ArchGraph(ops=graph.ops[order], adjacency=graph.adjacency[np.ix_(order, order)], op_vocab=graph.op_vocab,
                     node_attrs={k: np.asarray(v)[order] for k, v in graph.node_attrs.items()},
                     graph_attrs=dict(graph.graph_attrs), cells=None if graph.cells is None else graph.cells[order])


class Attention(nn.Module):
    """Multi-head attention of ``query`` tokens over ``memory`` tokens (padding keys masked)."""

    def __init__(self, dim: int, heads: int, dropout: float, project_query: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim) if project_query else nn.Identity()
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        b, q_len, d = query.shape
        h, k_len = self.heads, memory.shape[1]
        q = self.query(query).view(b, q_len, h, d // h).transpose(1, 2)
        k, v = self.key_value(memory).view(b, k_len, 2, h, d // h).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)).mul_((d // h) ** -0.5)
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        attended = self.drop(softmax_last(scores)) @ v
        return self.out(attended.transpose(1, 2).reshape(b, q_len, d))


class FeedForward(nn.Module):
    """Pre-LN position-wise feed-forward with a residual connection."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x))


class EncoderBlock(nn.Module):
    """Pre-LN self-attention (residual) then feed-forward (residual)."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, dropout)
        self.feed_forward = FeedForward(dim, hidden, dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        normed = self.norm(x)
        return self.feed_forward(x + self.attention(normed, normed, padding))


class FusionStage(nn.Module):
    """Learnt queries cross-attend the stage input (no residual: the token count changes), then a
    feed-forward, then ``depth - 1`` encoder blocks over the queries."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, queries: int, depth: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, queries, dim))
        self.norm = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads, dropout, project_query=False)
        self.feed_forward = FeedForward(dim, hidden, dropout)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, hidden, dropout) for _ in range(depth - 1))

    def forward(self, memory: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        x = self.feed_forward(self.cross(self.queries.expand(memory.shape[0], -1, -1), self.norm(memory), padding))
        for block in self.blocks:
            x = block(x, None)
        return x


class FuseFeature(nn.Module):
    """The previous stage's tokens attend the first stage's tokens, then a feed-forward."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm_memory, self.norm_query = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, dropout)
        self.feed_forward = FeedForward(dim, hidden, dropout)

    def forward(self, memory: torch.Tensor, query: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.attention(self.norm_query(query), self.norm_memory(memory), padding))


class NARFormerNetwork(nn.Module):
    """Graph token + node tokens -> multi-stage fusion transformer -> prediction head."""

    def __init__(self, token_dim: int, dim: int, heads: int, hidden: int, depths: tuple[int, ...], dropout: float,
                 static_features: int = 0) -> None:
        super().__init__()
        self.depth_dim = token_dim
        self.depth_map = nn.Linear(token_dim, dim)
        self.input = nn.Identity() if token_dim == dim else nn.Linear(token_dim, dim)
        self.encoder = nn.ModuleList(EncoderBlock(dim, heads, hidden, dropout) for _ in range(depths[0]))
        queries = [2 ** (len(depths) - 1 - s) for s in range(1, len(depths))]
        self.stages = nn.ModuleList(FusionStage(dim, heads, hidden, dropout, q, d) for q, d in zip(queries, depths[1:]))
        self.fuse = nn.ModuleList(FuseFeature(dim, heads, hidden, dropout) for _ in depths[2:])
        self.norm = nn.LayerNorm(dim)
        if static_features:
            widths = [dim + static_features] + [dim // 2 ** i for i in range(4)]
            layers: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
            self.head = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        else:
            self.head = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, depth: torch.Tensor,
                static: torch.Tensor | None = None, **_augmented: torch.Tensor) -> torch.Tensor:
        depth_code = real_number_encoding_torch(depth, self.depth_dim)
        x = torch.cat([torch.relu(self.depth_map(depth_code))[:, None], self.input(tokens)], dim=1)
        padding = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1) == 0  # the graph token is never padding
        for block in self.encoder:
            x = block(x, padding)
        memory = x
        if self.stages:
            x = self.stages[0](memory, padding)
            for fuse, stage in zip(self.fuse, self.stages[1:]):
                x = stage(fuse(memory, x, padding), None)
        final = self.norm(x[:, -1])
        if static is not None:
            final = torch.cat([final, static], dim=-1)
        return self.head(final).squeeze(-1)


def real_number_encoding_torch(values: torch.Tensor, length: int) -> torch.Tensor:
    """:func:`real_number_encoding` for a tensor of small integers (node counts), on its device."""
    half = length // 2
    frequencies = torch.linspace(1.0, 2.0 ** (half - 1), half, dtype=torch.float64, device=values.device)
    angles = torch.pi * values.double()[:, None] * frequencies
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(len(values), length).float()


class NARFormerPredictor(NeuralPredictor):
    """NAR-Former with the SR and AC losses and information-flow-consistency augmentation; ``tokenizer``
    "graph" (§3.2, any space) or "mobilenet" (§2.4, MBConv chains)."""

    name = "narformer"

    def __init__(self, seed: int = 0, dim: int = 192, heads: int = 6, hidden: int = 768,
                 depths: tuple[int, ...] = (6, 1, 1, 1), dropout: float = 0.1, epochs: int = 4000,
                 batch_size: int = 256, lr: float = 1e-4, weight_decay: float = 0.01, warmup_fraction: float = 0.1,
                 ema_decay: float = 0.99, sr_weight: float = 0.1, consistency_weight: float = 0.5,
                 tokenizer: Tokenizer = "graph", max_steps: int | None = None, device: str = "auto") -> None:
        super().__init__(seed, TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                             optimizer="adamw", schedule="linear", warmup_fraction=warmup_fraction,
                                             ema_decay=ema_decay, max_steps=max_steps, device=device))
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        check_network(dropout, dim=dim, heads=heads, hidden=hidden)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if not depths or min(depths) < 1 or len(depths) > 4:
            raise ValueError(f"depths must be 1 to 4 stage depths >= 1, got {depths}")
        if not sr_weight >= 0 or not consistency_weight >= 0:
            raise ValueError("sr_weight and consistency_weight must be >= 0")
        self.dim, self.heads, self.hidden, self.depths, self.dropout = dim, heads, hidden, tuple(depths), dropout
        self.sr_weight, self.consistency_weight, self.tokenizer = sr_weight, consistency_weight, tokenizer

    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        return {k: torch.from_numpy(v) for k, v in TOKENIZERS[self.tokenizer](graphs).items()}

    def featurize_train(self, graphs: Sequence[ArchGraph]) -> Inputs:
        # a chain's only topological order is its own: the mobilenet tokens have no other view
        return with_augmented_views(self, graphs, self.consistency_weight > 0 and self.tokenizer == "graph")

    def make_network(self, inputs: Inputs) -> nn.Module:
        static = inputs["static"].shape[1] if "static" in inputs else 0
        return NARFormerNetwork(inputs["tokens"].shape[2], self.dim, self.heads, self.hidden, self.depths,
                                self.dropout, static)

    def extra_loss(self) -> ExtraLoss:
        return narformer_loss(self.sr_weight, self.consistency_weight)


def sequence_ranking_loss(scores: torch.Tensor, targets: torch.Tensor,
                          permutation: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |(s - s[π]) - (y - y[π])| for a permutation π of the batch (random from the global torch RNG,
    which ``NeuralPredictor.fit`` seeds, when not given)."""
    if permutation is None:
        permutation = torch.randperm(scores.shape[0]).to(scores.device)
    return ((scores - scores[permutation]) - (targets - targets[permutation])).abs().mean()


def with_augmented_views(predictor: NeuralPredictor, graphs: Sequence[ArchGraph], augment: bool) -> Inputs:
    """``predictor.featurize(graphs)`` plus, when ``augment``, the features of one information-flow-consistent
    augmentation of each graph under ``augmented_<key>`` (drawn from the predictor's seed)."""
    inputs = predictor.featurize(graphs)
    if augment:
        rng = np.random.default_rng(predictor.seed)
        augmented = predictor.featurize([consistent_augmentation(g, rng) for g in graphs])
        inputs.update({f"augmented_{k}": v for k, v in augmented.items()})
    return inputs


def narformer_loss(sr_weight: float, consistency_weight: float) -> ExtraLoss:
    """The SR and AC terms added to the trainer's MSE (NAR-Former and V2). With augmented views in the
    batch, the MSE and SR terms cover both views and AC is the squared gap between their predictions."""

    def loss(model: nn.Module, batch: Inputs, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if "augmented_mask" not in batch:
            return sr_weight * sequence_ranking_loss(scores, targets)
        augmented = model(**{k.removeprefix("augmented_"): v for k, v in batch.items() if k.startswith("augmented_")})
        both, both_targets = torch.cat([scores, augmented]), torch.cat([targets, targets])
        # the trainer adds mse(source views); with this term the MSE is the mean over both views
        mse_rest = nn.functional.mse_loss(both, both_targets) - nn.functional.mse_loss(scores, targets)
        return (mse_rest + sr_weight * sequence_ranking_loss(both, both_targets)
                + consistency_weight * nn.functional.mse_loss(scores, augmented))

    return loss
