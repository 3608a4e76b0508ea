"""NAR, the Neural Architecture Ranker (Guo et al., 2022): a transformer that scores architectures and
classifies them into quality tiers, collecting per-tier FLOPs / params / operation statistics on the way.

Feature tensor (App. A): per graph, the operation matrix ``O[i, j] = A[i, j] * o[j]`` (``A`` the cell
adjacency, ``o`` each node's operation code) followed by, for every cell of the network in order, the
FLOPs matrix ``F[i, j] = A[i, j] * f[j]`` and the params matrix built the same way from each node's
cost in that cell: (19, 7, 7) for NB101 (9 cells), (31, 4, 4) for NB201 (15 cells). Node costs come from
the graph's ``cell_flops`` / ``cell_params`` attributes (see ``nassearch.graph``); for op-on-edge cells
(``cell_edge``, NB201) the matrix is the 4x4 node-level cell: ``O[i, j]`` is the code of edge i->j's
operation and a node's cost is the sum of its incoming edges' operations. Operation codes: ``op_codes``
(name -> code) or, by default, the vocabulary index + 1 (0 stays "no edge"); FLOPs and params matrices are
divided by their largest training value.

Model (§3.1): a linear projection of the flattened patches plus sine/cosine positions (eq. 4), ``layers``
pre-LN encoder layers and a final LN (eqs. 5-7), a bias-free 2-layer ranking head on the flattened feature
(eq. 8) trained with the pairwise logistic ranking loss (eq. 9); a decoder of as many layers (self-attention
on the tier embedding + positions, cross-attention to the architecture feature (eq. 10), feed-forward),
run once per tier, the final-LN outputs summed and classified by a 2-layer head (eq. 11) with
cross-entropy; loss L2 + λ L1 (eq. 12). Tier labels split each batch into ``tiers`` equal quality tiers
(Alg. 1 line 7); tier embeddings are running means of the encoder features of each tier's architectures
(eq. 13, updated after every training step; not during prediction). Statistics (eqs. 14-15): for every
batch of the last epoch, a ``bins``-bin histogram of the whole-network FLOPs and params (``graph_attrs``)
per tier on the batch's [min, max] (step rounded up to a whole FLOP / parameter), and per-tier counts of
node operations. L1 is the mean over ordered pairs (the shared trainer's), not the sum.

Training (App. B; hidden sizes, heads, λ, bins and the learning-rate factor from the authors' released
configs): AdamW (eps 1e-9), the Transformer's inverse-square-root schedule
``lr = lr_mul * dim^-0.5 * min(step^-0.5, step * warmup^-1.5)``, dropout 0.1, incomplete last batch
dropped, the epoch with the best validation Kendall tau kept when ``fit`` gets a validation set. Defaults
are the NB101 settings (dim 256, FFN 1024, 35 epochs, batch 256, 50 warm-up steps, λ 9, 8 bins); the NB201
ones are dim 128, FFN 512, tier head 256, ranking head 1024, β2 0.99, weight decay 1e-2, 55 epochs, batch
128, 30 warm-up steps, λ 1, 5 bins, lr_mul 0.07 (experiments/nar_nb201_paper.yaml).

``predict`` returns the ranking score (higher is better; relative, not the target's scale), or in
``mode="classification"`` the log-probability of the top tier; ``predict_tiers`` the tier probabilities
(tier 0 = best), unavailable in ``mode="ranking"``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.stats import kendalltau
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.predictors.base import Capabilities, Predictor, check_network
from nassearch.predictors.training import fit_epochs, parameter_groups, pairwise_ranking_loss
from nassearch.training.loops import resolve_device

log = logging.getLogger(__name__)

Mode = Literal["both", "classification", "ranking"]


def nar_features(graphs: Sequence[ArchGraph], op_codes: np.ndarray) -> np.ndarray:
    """Unscaled feature tensors, float32 (len(graphs), 1 + 2 * num_cells, P, P); ``op_codes`` maps each
    vocabulary index to its code. Graphs of one batch share their node count and number of cells."""
    ops = np.stack([g.ops for g in graphs])
    flops = np.stack([g.node_attrs["cell_flops"] for g in graphs])
    params = np.stack([g.node_attrs["cell_params"] for g in graphs])
    codes = op_codes[ops].astype(np.float32)
    b, n, cells = flops.shape
    if "cell_edge" in graphs[0].node_attrs:  # operations on the cell's edges: node-level cell matrix
        edges = np.stack([g.node_attrs["cell_edge"] for g in graphs])
        p = int(edges.max()) + 1
        graph, node = np.nonzero(edges[..., 0] >= 0)
        src, dst = edges[graph, node, 0], edges[graph, node, 1]
        adjacency = np.zeros((b, p, p), dtype=np.float32)
        adjacency[graph, src, dst] = 1.0
        operations = np.zeros((b, p, p), dtype=np.float32)
        operations[graph, src, dst] = codes[graph, node]
        node_costs = np.zeros((b, p, 2, cells))
        np.add.at(node_costs, (graph, dst), np.stack([flops[graph, node], params[graph, node]], axis=1))
    else:
        adjacency = np.stack([g.adjacency for g in graphs]).astype(np.float32)
        operations = adjacency * codes[:, None, :]
        node_costs = np.stack([flops, params], axis=2)
    # (b, cells, 2, p) -> (b, 2 * cells, 1, p): F_1, P_1, F_2, P_2, ... broadcast over rows, masked by A
    per_cell = node_costs.transpose(0, 3, 2, 1).reshape(b, 2 * cells, 1, -1).astype(np.float32)
    return np.concatenate([operations[:, None], per_cell * adjacency[:, None]], axis=1)


def sinusoid_positions(length: int, dim: int) -> torch.Tensor:
    """The Transformer's sine/cosine positional encoding, (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


def batch_tiers(y: np.ndarray, tiers: int) -> np.ndarray:
    """Tier of each architecture of a batch: the batch split into ``tiers`` equal parts by ``y`` (0 = best)."""
    rank = np.empty(len(y), dtype=np.int64)
    rank[np.argsort(-np.asarray(y), kind="stable")] = np.arange(len(y))
    return rank * tiers // len(y)


def update_tier_embeddings(embeddings: torch.Tensor, counts: torch.Tensor, features: torch.Tensor,
                           tiers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 13: each tier's embedding becomes the running mean of all features assigned to it so far.

    ``embeddings`` (T, N, D), ``counts`` (T,) features seen per tier, ``features`` (B, N, D), ``tiers`` (B,).
    """
    sums = torch.zeros_like(embeddings).index_add_(0, tiers, features)
    new_counts = counts + torch.bincount(tiers, minlength=embeddings.shape[0]).to(counts.dtype)
    updated = (embeddings * counts[:, None, None] + sums) / new_counts.clamp(min=1)[:, None, None]
    return torch.where((new_counts > 0)[:, None, None], updated, embeddings), new_counts


@dataclass(frozen=True)
class BatchStatistics:
    """Per-tier statistics of one training batch (eqs. 14-15); histograms are counts / batch size."""

    size: int
    tier_counts: np.ndarray        # (T,) architectures of each tier
    flops_edges: np.ndarray        # (bins + 1,) millions
    flops_hist: np.ndarray         # (T, bins)
    params_edges: np.ndarray       # (bins + 1,) millions
    params_hist: np.ndarray        # (T, bins)
    op_counts: np.ndarray          # (T, len(op_vocab)) nodes of each operation


@dataclass(frozen=True)
class TierStatistics:
    """What NAR training collects for sampling: one ``BatchStatistics`` per batch of the last epoch."""

    batches: list[BatchStatistics]
    op_vocab: tuple[str, ...]

    def op_distribution(self, tier: int = 0) -> dict[str, float]:
        """Share of each operation among the nodes of ``tier``'s architectures, over all batches."""
        counts = np.sum([b.op_counts[tier] for b in self.batches], axis=0)
        return dict(zip(self.op_vocab, (counts / max(counts.sum(), 1)).tolist()))


def tier_histogram(values: np.ndarray, tiers: np.ndarray, num_tiers: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges (bins + 1,), histogram (T, bins)) of one batch (eqs. 14-15): ``bins`` equal steps from the
    batch minimum, the step rounded up to a whole unit (values in millions); bin κ holds (τ_κ-1, τ_κ]."""
    low = float(values.min())
    step = max(math.ceil((float(values.max()) - low) / bins * 1e6), 1) / 1e6
    edges = low + step * np.arange(bins + 1)
    index = np.clip(np.ceil((values - low) / step).astype(np.int64) - 1, 0, bins - 1)
    histogram = np.zeros((num_tiers, bins))
    np.add.at(histogram, (tiers, index), 1.0 / len(values))
    return edges, histogram


def batch_statistics(graphs: Sequence[ArchGraph], tiers: np.ndarray, num_tiers: int, bins: int) -> BatchStatistics:
    """The tier statistics of one batch of graphs with known tiers."""
    flops_edges, flops_hist = tier_histogram(np.array([g.graph_attrs["flops"] for g in graphs]), tiers, num_tiers, bins)
    params_edges, params_hist = tier_histogram(np.array([g.graph_attrs["params"] for g in graphs]), tiers,
                                               num_tiers, bins)
    ops = np.stack([g.ops for g in graphs])
    op_counts = np.zeros((num_tiers, len(graphs[0].op_vocab)))
    np.add.at(op_counts, (np.repeat(tiers, ops.shape[1]), ops.ravel()), 1.0)
    return BatchStatistics(len(graphs), np.bincount(tiers, minlength=num_tiers), flops_edges, flops_hist,
                           params_edges, params_hist, op_counts)


class Attention(nn.Module):
    """Multi-head attention of ``queries`` over ``keys_values`` (already projected, (B, H, M, 2 * D / H)),
    on ``scaled_dot_product_attention`` with dropout on the attention weights while training."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key_value, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def project_keys_values(self, memory: torch.Tensor) -> torch.Tensor:
        """(B, M, D) -> (B, H, M, 2 * D / H), keys then values in the last dimension."""
        b, m, d = memory.shape
        return self.key_value(memory).view(b, m, 2, self.heads, d // self.heads).permute(0, 3, 1, 2, 4).flatten(3)

    def forward(self, x: torch.Tensor, keys_values: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q = self.query(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = keys_values.chunk(2, dim=-1)
        out = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """Pre-LN transformer layer: x + MSA(LN(x)), then x + FFN(LN(x)) (eqs. 5-6)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm_attention, self.norm_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = Attention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.drop = nn.Dropout(dropout)

    def self_attention(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_attention(x)
        return x + self.drop(self.attention(h, self.attention.project_keys_values(h)))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.ffn(self.norm_ffn(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.self_attention(x))


class DecoderLayer(EncoderLayer):
    """An encoder layer with a pre-LN cross-attention to the architecture feature in between (eq. 10).

    ``forward`` takes the queries of every (architecture, tier) pair, (B * T, N, D) with tiers fastest, and
    the architectures' features (B, N, D); the cross-attention's keys and values are projected once per
    architecture and shared by its T queries.
    """

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__(dim, heads, ffn, dropout)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads, dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = self.self_attention(q)
        keys_values = self.cross.project_keys_values(memory).repeat_interleave(q.shape[0] // memory.shape[0], dim=0)
        q = q + self.drop(self.cross(self.norm_cross(q), keys_values))
        return self.feed_forward(q)


class NARNetwork(nn.Module):
    """Patch projection + positions -> encoder -> ranking head; tier embeddings -> decoder -> tier head.

    ``forward`` returns (scores (B,) or None, tier logits (B, T) or None, features (B, N, D)).
    """

    def __init__(self, patches: int, patch_size: int, dim: int, layers: int, heads: int, ffn: int,
                 rank_hidden: int, tier_hidden: int, tiers: int, dropout: float, mode: Mode) -> None:
        super().__init__()
        self.mode = mode
        self.projection = nn.Linear(patch_size * patch_size, dim)
        self.register_buffer("positions", sinusoid_positions(patches, dim))
        self.encoder = nn.ModuleList(EncoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.rank_head = nn.Sequential(nn.Linear(patches * dim, rank_hidden, bias=False), nn.ReLU(),
                                       nn.Linear(rank_hidden, 1, bias=False))
        self.register_buffer("tier_embeddings", torch.zeros(tiers, patches, dim))
        self.register_buffer("tier_counts", torch.zeros(tiers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.tier_head = nn.Sequential(nn.Linear(patches * dim, tier_hidden), nn.ReLU(),
                                       nn.Linear(tier_hidden, tiers))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        tokens = self.projection(x.flatten(2)) + self.positions
        for layer in self.encoder:
            tokens = layer(tokens)
        features = self.norm(tokens)
        scores = self.rank_head(features.flatten(1)).squeeze(-1) if self.mode != "classification" else None
        logits = None
        if self.mode != "ranking":
            b, (t, n, d) = features.shape[0], self.tier_embeddings.shape
            queries = (self.tier_embeddings + self.positions).repeat(b, 1, 1)  # (B * T, N, D), tier fastest
            for layer in self.decoder:
                queries = layer(queries, features)
            summed = self.decoder_norm(queries).view(b, t, n, d).sum(dim=1)
            logits = self.tier_head(summed.flatten(1))
        return scores, logits, features


class NARPredictor(Predictor):
    """NAR ranker + tier classifier; after ``fit``, ``tier_statistics`` guides ``nar_sampling``."""

    name = "nar"

    def __init__(self, seed: int = 0, tiers: int = 5, mode: Mode = "both", dim: int = 256, layers: int = 6,
                 heads: int = 4, ffn: int = 1024, rank_hidden: int = 2048, tier_hidden: int = 2048,
                 dropout: float = 0.1, ranking_weight: float = 9.0, bins: int = 8, epochs: int = 35,
                 batch_size: int = 256, warmup_steps: int = 50, lr_mul: float = 0.1,
                 betas: Sequence[float] = (0.9, 0.982), weight_decay: float = 5e-4, eps: float = 1e-9,
                 op_codes: Mapping[str, int] | None = None, predict_batch_size: int = 512,
                 device: str = "auto") -> None:
        if mode not in ("both", "classification", "ranking"):
            raise ValueError(f"mode must be 'both', 'classification' or 'ranking', got {mode!r}")
        if tiers < 2 or bins < 1 or layers < 1 or epochs < 1 or warmup_steps < 1:
            raise ValueError("tiers must be >= 2 and bins, layers, epochs, warmup_steps >= 1")
        check_network(dropout, dim=dim, heads=heads, ffn=ffn, rank_hidden=rank_hidden, tier_hidden=tier_hidden,
                      predict_batch_size=predict_batch_size)
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if batch_size < tiers:
            raise ValueError(f"batch_size ({batch_size}) must be >= tiers ({tiers}): tiers split each batch")
        if (len(betas) != 2 or not all(0 <= b < 1 for b in betas) or not lr_mul > 0 or not weight_decay >= 0
                or not ranking_weight >= 0 or not eps > 0):
            raise ValueError("betas must be two numbers in [0, 1), lr_mul > 0, weight_decay >= 0, ranking_weight >= 0, "
                             "eps > 0")
        self.seed, self.tiers, self.mode = seed, tiers, mode
        self.architecture = {"dim": dim, "layers": layers, "heads": heads, "ffn": ffn, "rank_hidden": rank_hidden,
                             "tier_hidden": tier_hidden, "tiers": tiers, "dropout": dropout, "mode": mode}
        self.ranking_weight, self.bins, self.epochs, self.batch_size = ranking_weight, bins, epochs, batch_size
        self.warmup_steps, self.lr_mul = warmup_steps, lr_mul
        self.betas, self.weight_decay, self.eps = (float(betas[0]), float(betas[1])), weight_decay, eps
        self.op_codes = dict(op_codes) if op_codes is not None else None
        self.predict_batch_size, self.device = predict_batch_size, device
        self.capabilities = Capabilities(predict_tiers=mode != "ranking")
        self.network: NARNetwork | None = None
        self.tier_statistics: TierStatistics | None = None
        self.scales = np.ones(2, dtype=np.float32)

    # features -------------------------------------------------------------------------------

    def _codes(self, vocab: tuple[str, ...]) -> np.ndarray:
        if self.op_codes is None:
            return np.arange(1, len(vocab) + 1)
        missing = [name for name in vocab if name not in self.op_codes]
        if missing:
            raise ValueError(f"op_codes has no code for operation(s) {', '.join(missing)}")
        return np.array([self.op_codes[name] for name in vocab])

    def featurize(self, graphs: Sequence[ArchGraph]) -> torch.Tensor:
        """Feature tensors (len(graphs), 1 + 2 * cells, P, P), costs divided by the training scales."""
        missing = [a for a in ("cell_flops", "cell_params") if a not in graphs[0].node_attrs]
        if missing:
            raise ValueError(f"NAR needs graphs with node attributes {missing} (cell-based spaces: nasbench101, "
                             "nasbench201)")
        x = nar_features(graphs, self._codes(graphs[0].op_vocab))
        x[:, 1::2] /= self.scales[0]
        x[:, 2::2] /= self.scales[1]
        return torch.from_numpy(x)

    # training -------------------------------------------------------------------------------

    def _lr(self, step: int) -> float:
        step += 1
        return self.lr_mul * self.architecture["dim"] ** -0.5 * min(step ** -0.5, step * self.warmup_steps ** -1.5)

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> NARPredictor:
        y = np.asarray(y, dtype=np.float64)
        if len(graphs) != len(y) or len(y) < self.tiers:
            raise ValueError(f"fit needs at least tiers={self.tiers} graphs with one target each, "
                             f"got {len(graphs)} graphs and {len(y)} targets")
        raw = nar_features(graphs, self._codes(graphs[0].op_vocab))
        self.scales = np.array([raw[:, 1::2].max(), raw[:, 2::2].max()], dtype=np.float32).clip(min=1e-12)
        x = self.featurize(graphs)
        val_x = self.featurize(val[0]) if val is not None else None
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(self.seed)
        n = len(y)
        batch = min(self.batch_size, n)
        per_epoch = n // batch  # the incomplete last batch is dropped
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = NARNetwork(x.shape[1], x.shape[2], **self.architecture).to(device)
            optimizer = torch.optim.AdamW(parameter_groups(network, self.weight_decay), lr=1.0, betas=self.betas,
                                          eps=self.eps)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr)
            best_tau, best_state = -math.inf, None
            for epoch in fit_epochs(self.epochs, "fit NAR"):
                network.train()
                order = torch.randperm(n, generator=generator)[: per_epoch * batch].view(per_epoch, batch)
                statistics = []
                for index in order:
                    tiers = batch_tiers(y[index.numpy()], self.tiers)
                    self._step(network, optimizer, x[index].to(device), torch.as_tensor(y[index.numpy()]),
                               torch.as_tensor(tiers), device)
                    scheduler.step()
                    if epoch == self.epochs - 1:
                        statistics.append(batch_statistics([graphs[i] for i in index.tolist()], tiers, self.tiers,
                                                           self.bins))
                if val_x is not None:
                    tau = kendalltau(self._scores(network, val_x), val[1]).statistic
                    log.info("epoch %d/%d: validation Kendall tau %.4f", epoch + 1, self.epochs, tau)
                    if np.isfinite(tau) and tau > best_tau:
                        best_tau, best_state = tau, copy.deepcopy(network.state_dict())
            if best_state is not None:
                network.load_state_dict(best_state)
        self.network = network.eval()
        self.tier_statistics = TierStatistics(statistics, tuple(graphs[0].op_vocab))
        return self

    def _step(self, network: NARNetwork, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              tiers: torch.Tensor, device: torch.device) -> None:
        """One training step (Alg. 1 lines 6-17): losses, update, then the tier-embedding means."""
        y, tiers = y.to(device), tiers.to(device)
        scores, logits, features = network(x)
        loss = torch.zeros((), device=device)
        if scores is not None:
            loss = loss + self.ranking_weight * pairwise_ranking_loss(scores, y)
        if logits is not None:
            loss = loss + nn.functional.cross_entropy(logits, tiers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            network.tier_embeddings, network.tier_counts = update_tier_embeddings(
                network.tier_embeddings, network.tier_counts, features.detach(), tiers)

    # prediction -----------------------------------------------------------------------------

    @torch.no_grad()
    def _forward(self, network: NARNetwork, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        network.eval()
        device = next(network.parameters()).device
        outputs = [network(x[i:i + self.predict_batch_size].to(device))[:2]
                   for i in range(0, len(x), self.predict_batch_size)]
        scores = torch.cat([s for s, _ in outputs]).cpu() if outputs[0][0] is not None else None
        logits = torch.cat([z for _, z in outputs]).cpu() if outputs[0][1] is not None else None
        return scores, logits

    def _scores(self, network: NARNetwork, x: torch.Tensor) -> np.ndarray:
        scores, logits = self._forward(network, x)
        if scores is None:
            scores = torch.log_softmax(logits, dim=-1)[:, 0]
        return scores.double().numpy()

    def _fitted(self) -> NARNetwork:
        if self.network is None:
            raise RuntimeError("NARPredictor used before fit")
        return self.network

    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        """Ranking score per graph (higher = better); the top tier's log-probability when classification-only."""
        return self._scores(self._fitted(), self.featurize(graphs))

    def predict_tiers(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        """Tier probabilities, float array (len(graphs), tiers); column 0 is the best tier."""
        if self.mode == "ranking":
            raise RuntimeError("a NAR trained with mode='ranking' has no tier classifier")
        _, logits = self._forward(self._fitted(), self.featurize(graphs))
        return torch.softmax(logits, dim=-1).double().numpy()
