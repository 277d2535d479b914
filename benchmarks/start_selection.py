"""Choose the graph start's settings on selection data only: never on MNIST, USPS or Reuters.

The selection sets are scikit-learn's bundled digits (the pretrained autoencoder embeddings that
``quality.py --save-embedding`` writes, one per seed), synthetic mixtures built to hold the cases
the graph start is for and against (touching classes, a bimodal class, unbalanced classes,
elongated classes), the synthetic tabular sets of `tabular.py`, and scikit-learn's bundled iris,
wine and breast-cancer tables (standardised). For every setting (micro-clusters, neighbours, the
split-and-merge rule) each start's ACC and ARI is scored against the labels, next to k-means with
20 restarts; a start that falls back (`GraphStartFailed`) scores as the k-means it falls back to.

    python benchmarks/quality.py --dataset digits --seeds 5 --out-dir runs/sel --save-embedding runs/sel/digits
    python benchmarks/start_selection.py runs/sel/digits

Writes benchmarks/results/start_selection.{json,md}; the held-out measurement
(`start_heldout.py`) then uses the chosen setting unchanged.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_facts, set_threads
from tabular import DATASETS as TABULAR
from tabular import make_data

from dec_lightning.callbacks.graph_start import GraphStartFailed, graph_spectral_labels, nearest_neighbors
from dec_lightning.callbacks.kmeans import micro_clusters_for

RESULTS = Path(__file__).resolve().parent / "results"
MICRO = (50, 100, 200)
NEIGHBORS = (5, 10, 20)


def accuracy(y: np.ndarray, labels: np.ndarray) -> float:
    """Cluster accuracy under the best one-to-one matching (Hungarian)."""
    counts = np.zeros((labels.max() + 1, y.max() + 1))
    np.add.at(counts, (labels, y), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(y))


def mixture(centers: np.ndarray, sizes: list[int], scales: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    return np.concatenate(
        [c + rng.normal(size=(s, len(c))) * sc for c, s, sc in zip(centers, sizes, scales, strict=True)]
    )


def synthetic(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-like 10-d mixtures: each holds one difficulty of real embeddings."""
    rng = np.random.default_rng(seed)
    d = 10
    if name == "touching_bimodal":  # 10 classes of 500: 0 and 1 touch, 2 is two modes of 250
        centers = rng.normal(size=(11, d)) * 6.0
        centers[1] = centers[0] + 2.0 / np.sqrt(d)  # 2 apart (2 standard deviations): they overlap
        centers[10] = centers[2] + 3.0 * rng.normal(size=d) / np.sqrt(d)  # class 2's second mode, ~3 away
        sizes = [500, 500, 250, *[500] * 7, 250]
        y = np.concatenate([np.repeat(np.arange(10), sizes[:10]), np.full(250, 2)])
        return mixture(centers, sizes, [np.ones(d)] * 11, rng), y
    if name == "unbalanced":  # 6 classes of 40, 25, 15, 10, 6 and 4 %
        sizes = [1600, 1000, 600, 400, 240, 160]
        centers = rng.normal(size=(6, d)) * 2.2
        return mixture(centers, sizes, [np.ones(d)] * 6, rng), np.repeat(np.arange(6), sizes)
    if name == "elongated":  # 4 long parallel classes: k-means cuts across them
        scale = np.ones(d) * 0.3
        scale[0] = 6.0
        centers = np.zeros((4, d))
        centers[:, 1] = np.arange(4) * 2.0
        return mixture(centers, [600] * 4, [scale] * 4, rng), np.repeat(np.arange(4), 600)
    raise ValueError(name)


SYNTHETIC = ("touching_bimodal", "unbalanced", "elongated")
BUNDLED = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer}


def selection_sets(embeddings: Path | None, seeds: list[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    sets = []
    if embeddings is not None:
        y = np.load(embeddings / "y.npy")
        for path in sorted(embeddings.glob("z_seed*.npy")):
            sets.append((f"digits_ae_{path.stem[2:]}", np.load(path).astype(np.float64), y))
    for name, seed in itertools.product(SYNTHETIC, seeds):
        sets.append((f"{name}_s{seed}", *synthetic(name, seed)))
    for name, seed in itertools.product(TABULAR, seeds):
        x, y = make_data(TABULAR[name], seed)
        sets.append((f"{name}_s{seed}", x.astype(np.float64), y))
    for name, load in BUNDLED.items():
        bunch = load()
        sets.append((name, StandardScaler().fit_transform(bunch.data), bunch.target))
    return sets


def score_set(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """k-means and every graph setting on one set: ACC, ARI, and whether the start fell back."""
    k = int(y.max()) + 1
    kmeans = KMeans(k, n_init=20, random_state=seed).fit_predict(x)
    row: dict[str, Any] = {"kmeans": {"acc": accuracy(y, kmeans), "ari": adjusted_rand_score(y, kmeans)}}
    for n_neighbors in NEIGHBORS:
        neighbors = nearest_neighbors(x, n_neighbors)
        for micro, refine in itertools.product(MICRO, (False, True)):
            key = f"m{micro}_k{n_neighbors}_{'split_merge' if refine else 'plain'}"
            try:
                n_micro = micro_clusters_for(len(x), micro, k, n_neighbors)
                labels = graph_spectral_labels(x, k, n_micro, n_neighbors, seed, neighbors=neighbors, refine=refine)
                row[key] = {"acc": accuracy(y, labels), "ari": adjusted_rand_score(y, labels), "fallback": None}
            except GraphStartFailed as failure:
                row[key] = {**row["kmeans"], "fallback": str(failure)}
    return row


def summary(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: mean ACC and ARI over the sets, wins against k-means, fallbacks; best first."""
    settings = [key for key in next(iter(rows.values())) if key != "kmeans"]
    table = []
    for key in ["kmeans", *settings]:
        acc = [r[key]["acc"] for r in rows.values()]
        ari = [r[key]["ari"] for r in rows.values()]
        table.append(
            {
                "setting": key,
                "acc_mean": float(np.mean(acc)),
                "ari_mean": float(np.mean(ari)),
                "acc_min_minus_kmeans": float(min(r[key]["acc"] - r["kmeans"]["acc"] for r in rows.values())),
                "ahead_of_kmeans": sum(r[key]["acc"] > r["kmeans"]["acc"] + 0.005 for r in rows.values()),
                "behind_kmeans": sum(r[key]["acc"] < r["kmeans"]["acc"] - 0.005 for r in rows.values()),
                "fallbacks": sum(bool(r[key].get("fallback")) for r in rows.values()),
            }
        )
    return sorted(table, key=lambda t: -t["acc_mean"])


def markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        "# Graph start: settings chosen on selection data",
        "",
        (
            f"Command: `{payload['command']}`. Machine: {m['cpu_model']}, torch threads {m['torch_num_threads']}, "
            f"load {payload['load_average'][0]:.1f}; {payload['wall_s']:.0f} s."
        ),
        f"Selection sets ({len(payload['sets'])}): {', '.join(payload['sets'])}. None of MNIST, USPS or Reuters.",
        (
            "Micro-clusters are capped at n / 5 (small sets). ACC/ARI of the start itself, before any DEC step; "
            "a start that fell back scores as k-means (n_init 20)."
        ),
        "",
        "| setting | mean ACC | mean ARI | worst ACC - k-means | sets ahead / behind k-means (±0.005) | fallbacks |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t in payload["summary"]:
        lines.append(
            f"| {t['setting']} | {t['acc_mean']:.3f} | {t['ari_mean']:.3f} | {t['acc_min_minus_kmeans']:+.3f} "
            f"| {t['ahead_of_kmeans']} / {t['behind_kmeans']} | {t['fallbacks']} |"
        )
    lines += ["", f"Chosen: **{payload['chosen']}** ({payload['why']})", ""]
    lines += ["| set | k-means ACC | chosen ACC | fallback |", "| --- | --- | --- | --- |"]
    for name, row in payload["sets"].items():
        chosen = row[payload["chosen"]]
        lines.append(f"| {name} | {row['kmeans']['acc']:.3f} | {chosen['acc']:.3f} | {chosen.get('fallback') or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embeddings", type=Path, nargs="?", help="the folder quality.py --save-embedding wrote")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the generated sets")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    set_threads(1)
    start = time.perf_counter()
    rows = {}
    for name, x, y in selection_sets(args.embeddings, args.seeds):
        rows[name] = score_set(x, y)
        print(name, f"k-means {rows[name]['kmeans']['acc']:.3f}", flush=True)
    table = summary(rows)
    graph = [t for t in table if t["setting"] != "kmeans"]
    chosen = graph[0]["setting"]
    payload = {
        "command": "python benchmarks/start_selection.py <dir of quality.py --dataset digits --save-embedding>",
        "machine": machine_facts(),
        "load_average": loadavg(),
        "wall_s": time.perf_counter() - start,
        "chosen": chosen,
        "why": "the highest mean ACC over all selection sets",
        "summary": table,
        "sets": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "start_selection.json").write_text(json.dumps(payload, indent=2) + "\n")
    (args.out_dir / "start_selection.md").write_text(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
