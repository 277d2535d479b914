"""Why a seed ends with two digits in one cluster: the starts a pretrained embedding allows (issue #14).

Reads the embeddings that ``quality.py --save-embedding DIR`` saved (``z_seed<s>.npy``, ``y.npy``)
and scores, per seed, the ways to start DEC's centres, against the labels (for diagnosis only;
nothing here selects with labels):

- k-means, 20 restarts (the paper's start), and 30 single restarts sorted by inertia: does a
  lower-inertia restart, or any restart, find the right partition?
- k-means on the L2-normalised embedding (cosine), a full-covariance Gaussian mixture;
- the graph start (`graph_spectral_labels`) with 100, 150 and 200 micro-clusters: its labels and
  its nearest-group-mean assignment, which is what DEC starts from (the centres are the means);
- the largest k-means cluster's two commonest labels: a merge shows as two digits near 50/50.

    python benchmarks/studies/start_diagnosis.py DIR --name graph_start

writes ``benchmarks/studies/results/<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.quality import machine_info
from dec_lightning.callbacks.graph_start import graph_spectral_labels, group_means, nearest_neighbors
from dec_lightning.callbacks.kmeans import nearest_center
from dec_lightning.metrics.clustering import clustering_scores

MICRO = (100, 150, 200)


def diagnose(z: np.ndarray, y: np.ndarray, k: int) -> dict:
    def acc(labels: np.ndarray) -> float:
        return round(clustering_scores(torch.from_numpy(np.asarray(labels)), torch.from_numpy(y))["acc"], 4)

    def nearest_mean_acc(labels: np.ndarray) -> float:
        centers = torch.from_numpy(group_means(z, labels, k))
        return acc(nearest_center(torch.from_numpy(z), centers).numpy())

    start = time.perf_counter()
    paper = KMeans(k, n_init=20, random_state=0).fit(z)
    singles = sorted(
        (float(km.inertia_), acc(km.labels_)) for km in (KMeans(k, n_init=1, random_state=r).fit(z) for r in range(30))
    )
    largest = np.bincount(paper.labels_).argmax()
    members = np.bincount(y[paper.labels_ == largest], minlength=k) / (paper.labels_ == largest).sum()
    top = np.argsort(-members)[:2]
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    gmm = GaussianMixture(k, covariance_type="full", n_init=2, random_state=0).fit(z)
    record = {
        "kmeans20_acc": acc(paper.labels_),
        "kmeans_singles_by_inertia": [[round(i, 1), a] for i, a in singles],
        "kmeans_singles_best_acc": max(a for _, a in singles),
        "kmeans_largest_cluster_top2": [[int(d), round(float(members[d]), 2)] for d in top],
        "cosine_kmeans20_acc": acc(KMeans(k, n_init=20, random_state=0).fit_predict(unit)),
        "gmm_full_acc": acc(gmm.predict(z)),
    }
    neighbors = nearest_neighbors(z, 10)  # one search for all three graph starts
    for m in MICRO:
        labels = graph_spectral_labels(z, k, n_micro=m, n_neighbors=10, neighbors=neighbors, refine=False)
        record[f"graph{m}_acc"] = acc(labels)
        record[f"graph{m}_nearest_mean_acc"] = nearest_mean_acc(labels)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def markdown(payload: dict) -> str:
    cols = ["kmeans20_acc", "kmeans_singles_best_acc", "cosine_kmeans20_acc", "gmm_full_acc"]
    cols += [c for m in MICRO for c in (f"graph{m}_acc", f"graph{m}_nearest_mean_acc")]
    lines = [
        "# Starts a pretrained embedding allows (ACC against the labels, diagnosis only)",
        "",
        f"Command: `{payload['command']}`. Machine: {payload['machine']['cpu']}, "
        + f"{payload['machine']['torch_threads']} torch thread(s).",
        "",
        "| seed | " + " | ".join(cols) + " | largest k-means cluster: top 2 labels (share) |",
        "| --- " * (len(cols) + 2) + "|",
    ]
    for seed, r in payload["seeds"].items():
        top = ", ".join(f"{d} ({s})" for d, s in r["kmeans_largest_cluster_top2"])
        lines.append(f"| {seed} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + f" | {top} |")
    lines += ["", "k-means single restarts, sorted by inertia (inertia, ACC), first 5:", ""]
    lines += [f"- seed {s}: {r['kmeans_singles_by_inertia'][:5]}" for s, r in payload["seeds"].items()]
    if payload.get("note"):
        lines += ["", payload["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", type=Path, help="the folder quality.py --save-embedding wrote")
    parser.add_argument("--name", default="start_diagnosis")
    parser.add_argument("--note")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    payload = {"machine": machine_info(), "note": args.note, "seeds": {}}
    payload["command"] = (
        f"python benchmarks/studies/start_diagnosis.py <dir of quality.py --save-embedding> --name {args.name}"
    )
    return over_saved_embeddings(
        args.embeddings, diagnose, payload, REPO / "benchmarks" / "studies" / "results" / args.name, markdown
    )


def over_saved_embeddings(
    folder: Path,
    analyse: Callable[[np.ndarray, np.ndarray, int], dict],
    payload: dict,
    out: Path,
    render: Callable[[dict], str],
) -> dict:
    """``analyse(z, labels, k)`` of every ``z_seed<k>.npy`` in a ``quality.py --save-embedding`` folder into
    ``payload["seeds"]``; writes ``out`` + ``.json`` and ``.md`` (``render(payload)``)."""
    y = np.load(folder / "y.npy").astype(np.int64)
    k = int(y.max()) + 1
    for path in sorted(folder.glob("z_seed*.npy")):
        seed = path.stem.removeprefix("z_seed")
        payload["seeds"][seed] = analyse(np.load(path).astype(np.float64), y, k)
        print(seed, payload["seeds"][seed], flush=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(payload))
    return payload


if __name__ == "__main__":
    main()
