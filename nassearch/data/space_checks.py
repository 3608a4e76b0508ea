"""``nassearch spaces verify``: check a space's implementation against every row of the benchmark tables.

NAS-Bench-201: enumeration equals the table's cells; params/FLOPs of the built network equal the official
values. NAS-Bench-101: the fingerprint (``key``) reproduces every stored hash and the built network's
trainable-parameter count equals every stored count.
"""

from __future__ import annotations

import os
import time
from multiprocessing import Pool
from typing import Any

import numpy as np
import torch

from nassearch.data.tables import load_csv, load_json
from nassearch.model_cost import count_params
from nassearch.data.nb101_table import load_nb101_table
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench101_cell import HASH_LABEL, cell_from_table, check_cell, nb101_hash, parse_cell
from nassearch.spaces.nasbench201 import NasBench201Space, format_arch, parse_arch

NB201_DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}


def verify_nasbench201(data_dir: str | None) -> list[dict[str, Any]]:
    """Rows of (check, checked, matched, worst) for the NB201 space."""
    space = NasBench201Space()
    table = load_csv("nb201_12epoch", data_dir)
    enumerated = {format_arch(a) for a in space.enumerate()}
    rows = [{"check": "enumerate() == table cells", "checked": len(enumerated),
             "matched": len(enumerated & set(table["arch_str"])), "worst": ""}]
    subset = load_csv("nb201_200epoch_subset", data_dir)
    for dataset, (classes, size) in NB201_DATASETS.items():
        part = subset[subset["dataset"] == dataset]
        params, flops = NasBench201Space(num_classes=classes, input_size=size).cost_batch(
            [parse_arch(s) for s in part["arch_str"]])
        for name, ours, official in (("params", params, part["params_m"].to_numpy()),
                                     ("FLOPs", flops, part["flops_m"].to_numpy())):
            rel = np.abs(ours - official) / official
            worst = int(np.argmax(rel))
            rows.append({"check": f"{name} within 0.5% ({dataset})", "checked": len(part),
                         "matched": int((rel <= 0.005).sum()),
                         "worst": f"{rel[worst]:.2e} at index {part['index'].iloc[worst]} "
                                  f"({ours[worst]:.6f} vs {official[worst]:.6f})"})
    return rows


def _nb101_params(item: tuple[str, str]) -> int:
    torch.set_num_threads(1)
    with torch.device("meta"):
        return count_params(NasBench101Space().build_model(parse_cell(f"{item[0]}|{item[1]}")))


def verify_nasbench101(data_dir: str | None, processes: int | None = None) -> list[dict[str, Any]]:
    """Rows of (check, checked, matched, worst) for the NB101 space over the 10k, 1k and NASLib tables."""
    space = NasBench101Space()
    table = load_nb101_table(data_dir)
    cells = [cell_from_table(a, o) for a, o in zip(table["adjacency"], table["ops"])]
    naslib = load_json("nb101_naslib500", data_dir)["archs"]
    naslib_cells = {a["hash"]: (np.array(a["pruned_adjacency"]), a["pruned_ops"], round(a["params_m"] * 1e6))
                    for a in naslib}
    keys = np.array([space.key(c) for c in cells])
    naslib_keys = [nb101_hash(m, [HASH_LABEL[o] for o in ops]) for m, ops, _ in naslib_cells.values()]
    rows = [{"check": "fingerprint == stored hash (10k + 1k tables)", "checked": len(cells),
             "matched": int((keys == table["hash"].to_numpy()).sum()), "worst": ""},
            {"check": "fingerprint == stored hash (NASLib 500, pruned)", "checked": len(naslib_keys),
             "matched": sum(k == h for k, h in zip(naslib_keys, naslib_cells)), "worst": ""}]
    items = [("".join(map(str, np.asarray(check_cell(c)[0]).ravel())), ",".join(check_cell(c)[1])) for c in cells]
    items += [("".join(map(str, m.ravel())), ",".join(ops)) for m, ops, _ in naslib_cells.values()]
    start = time.perf_counter()
    with Pool(processes or os.cpu_count()) as pool:
        counts = np.array(pool.map(_nb101_params, items, chunksize=64))
    official = np.concatenate([table["trainable_params"].to_numpy(np.int64),
                               [p for _, _, p in naslib_cells.values()]])
    diff = np.abs(counts - official)
    worst = int(np.argmax(diff))
    rows.append({"check": "built network params == stored trainable params", "checked": len(items),
                 "matched": int((diff == 0).sum()),
                 "worst": f"{diff[worst]} params off ({time.perf_counter() - start:.0f} s to build all)"})
    return rows


def format_rows(title: str, rows: list[dict[str, Any]]) -> str:
    """The verification rows as a fixed-width table."""
    width = max(len(r["check"]) for r in rows)
    lines = [title, f"{'check':<{width}}  {'checked':>8}  {'matched':>8}  worst"]
    lines += [f"{r['check']:<{width}}  {r['checked']:>8}  {r['matched']:>8}  {r['worst']}" for r in rows]
    return "\n".join(lines)
