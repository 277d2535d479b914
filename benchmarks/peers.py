"""Side by side with a peer library: ClustPy's DEC and IDEC against ours on MNIST, in one process per seed.

    python benchmarks/peers.py --seed-list 0 --out benchmarks/results/peers_s0.json
    python benchmarks/peers.py --merge benchmarks/results/peers_s0.json benchmarks/results/peers_s1.json

For each seed, four runs alternate in one process (one torch thread unless told otherwise), with the
same epoch budget: ``--pretrain-epochs`` autoencoder epochs, then at most ``--clustering-epochs``
clustering epochs, one epoch being ceil(70000 / 256) = 274 steps of batch 256:

- ``ours_dec``: ``configs/mnist_fast.yaml`` (plain DEC: KL only, SGD 0.01) with
  ``--pretrain.finetune_steps`` and ``--trainer.max_steps`` set to the budget;
- ``clustpy_dec``: ``clustpy.deep.DEC`` with its defaults (Adam 1e-3 pretraining, Adam 1e-4
  clustering, d-500-500-2000-10 LeakyReLU autoencoder, k-means init) and the same budget;
- ``ours_best``: ``configs/mnist_fast_idec_aug.yaml`` (IDEC + augmentation) with the same overrides and
  ``--pretrain.layerwise_steps 0`` (no greedy layer-wise phase: as many pretraining steps as ClustPy);
- ``clustpy_idec``: ``clustpy.deep.IDEC``, likewise;
- ``ours_dec_kmeans`` and ``clustpy_dec_n20``: the matched start. Our plain DEC from the paper's
  k-means start (the config with ``init: kmeans``, 20 restarts) against ClustPy's DEC with
  ``initial_clustering_params={"n_init": 20}``, the DEC paper's 20 restarts: the pair that says
  how much of the plain-DEC lead is the graph start (`lead_split`);
- ``clustpy_dec_default``: ClustPy's DEC at its own 100 + 150 epochs, outside the budget; not in a
  default run (``--methods clustpy_dec_default``; ``make bench-peers`` runs it for seed 0).

``--device cuda`` runs both libraries on a GPU (ours with ``--trainer.accelerator gpu``).

Even seeds run ours first, odd seeds ClustPy first. ClustPy clusters the very array our
``MNISTDataModule`` loads (train + test, pixels / 255) and both are scored against its labels by
`dec_lightning.metrics.clustering.clustering_scores`. ClustPy returns two labelings: ``labels_``
(k-means on the final embedding: what ``fit_predict`` gives) and ``dec_labels_`` (the DEC head's
assignment); both are recorded and the verdict holds ours against the better of the two. The verdicts
pair plain DEC with plain DEC, IDEC with IDEC, and our best run (by mean ACC) with ClustPy's best.
Wall time is the whole run, data loading and pretraining included. Each run is written to the
``--out`` file as it ends; ``--merge`` combines such files into ``benchmarks/results/peers.{json,md}``.

ClustPy is an optional extra (``pip install -e '.[peers]'``), never a runtime dependency.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
BATCH_SIZE = 256
REPRODUCE = "make bench-peers"
METHODS: dict[str, dict[str, str]] = {
    "ours_dec": {"library": "dec-lightning", "label": "ours, plain DEC", "config": "configs/mnist_fast.yaml"},
    "clustpy_dec": {"library": "clustpy", "label": "ClustPy DEC"},
    "ours_best": {
        "library": "dec-lightning",
        "label": "ours, IDEC + augmentation",
        "config": "configs/mnist_fast_idec_aug.yaml",
        # the config's greedy layer-wise phase (1000 steps per layer) off: the same pretraining steps as ClustPy
        "overrides": ["--pretrain.layerwise_steps", "0"],
    },
    "clustpy_idec": {"library": "clustpy", "label": "ClustPy IDEC"},
    "ours_dec_kmeans": {
        "library": "dec-lightning",
        "label": "ours, plain DEC, k-means start",
        "config": "configs/mnist_fast.yaml",
        "init": "kmeans",
    },
    "clustpy_dec_n20": {"library": "clustpy", "label": "ClustPy DEC, 20 k-means restarts"},
    "clustpy_dec_default": {"library": "clustpy", "label": "ClustPy DEC, its defaults (100 + 150 epochs)"},
}
CLUSTPY_OWN_EPOCHS = {"clustpy_dec_default": (100, 150)}  # DEC.__init__ defaults in ClustPy 0.0.3
# ClustPy at its own epochs (~7x the budget) runs once, not with every seed: `make bench-peers` gives it seed 0.
DEFAULT_METHODS = [m for m in METHODS if m not in CLUSTPY_OWN_EPOCHS]
ORDER_EVEN = (
    "ours_dec",
    "clustpy_dec",
    "ours_best",
    "clustpy_idec",
    "ours_dec_kmeans",
    "clustpy_dec_n20",
    *CLUSTPY_OWN_EPOCHS,
)
ORDER_ODD = (
    "clustpy_dec",
    "ours_dec",
    "clustpy_idec",
    "ours_best",
    "clustpy_dec_n20",
    "ours_dec_kmeans",
    *CLUSTPY_OWN_EPOCHS,
)


def run_order(seed: int) -> tuple[str, ...]:
    """Alternate who goes first, so drift in the machine's load does not always favour one side."""
    return ORDER_EVEN if seed % 2 == 0 else ORDER_ODD


def load_mnist(data_dir: str | None) -> tuple[Any, Any]:
    """The 70000 x 784 array and labels exactly as our MNISTDataModule loads them (pixels / 255)."""
    from dec_lightning.data import MNISTDataModule

    return (MNISTDataModule(data_dir) if data_dir else MNISTDataModule()).load_arrays()


def fingerprint(x: Any, y: Any) -> dict[str, Any]:
    import numpy as np

    return {
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "x_min": float(x.min()),
        "x_max": float(x.max()),
        "x_sum": round(float(x.sum(dtype=np.float64)), 3),
        "label_counts": np.bincount(y).tolist(),
    }


def run_ours(
    method: str,
    seed: int,
    data_dir: str | None,
    budget: dict[str, int],
    extra: list[str],
    workdir: Path,
    config: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """One seed of ``dec-lightning run`` through `benchmarks.quality.run_seed` (in process, timed whole)."""
    import torch

    from benchmarks.quality import run_seed

    overrides = [
        "--pretrain.finetune_steps",
        str(budget["pretrain_steps"]),
        "--trainer.max_steps",
        str(budget["clustering_steps"]),
        *METHODS[method].get("overrides", []),
        *(["--trainer.accelerator", "gpu"] if device == "cuda" else []),
        *extra,
    ]
    load_before = os.getloadavg()
    r = run_seed(config or METHODS[method]["config"], seed, data_dir, overrides, workdir / method)
    return {
        "acc": r["acc"],
        "nmi": r["nmi"],
        "ari": r["ari"],
        "wall_s": r["wall_s"]["total"],
        "budget": {
            **budget,
            "pretrain_steps_done": r["pretrain_steps"],  # includes a greedy layer-wise phase if the config has one
            "clustering_steps_done": r["dec_steps"],
            "stopped_early": r["stopped_by_tol"],
        },
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "detail": {
            "config": METHODS[method]["config"],
            "init": METHODS[method].get("init", "the config's"),
            "overrides": overrides,
            "objective": r["objective"],
            "ae_kmeans_acc": r["baseline"]["acc"],
            "wall_s_by_phase": r["wall_s"],
            "refreshes": r["refreshes"],
            "acc_by_refresh": r["acc_by_refresh"],
        },
    }


def run_clustpy(
    method: str, seed: int, data_dir: str | None, budget: dict[str, int], device: str = "cpu", smoke: bool = False
) -> dict[str, Any]:
    """ClustPy's DEC or IDEC with its defaults and our epoch budget, on the same MNIST array (timed whole).

    ``clustpy_dec_default`` keeps ClustPy's own epochs (`CLUSTPY_OWN_EPOCHS`) instead of the budget
    (not in a smoke test).
    """
    import clustpy
    import torch
    from clustpy.deep import DEC, IDEC

    from dec_lightning.metrics.clustering import clustering_scores

    load_before = os.getloadavg()
    start = time.perf_counter()
    x, y = load_mnist(data_dir)
    if method in CLUSTPY_OWN_EPOCHS and not smoke:
        budget = make_budget(len(x), *CLUSTPY_OWN_EPOCHS[method])
    initial = {"initial_clustering_params": {"n_init": 20}} if method == "clustpy_dec_n20" else {}
    algo = (IDEC if method == "clustpy_idec" else DEC)(
        **initial,
        n_clusters=10,
        batch_size=BATCH_SIZE,
        pretrain_epochs=budget["pretrain_epochs"],
        clustering_epochs=budget["clustering_epochs"],
        embedding_size=10,
        device=device,
        random_state=seed,
    )
    algo.fit(x)
    wall = time.perf_counter() - start
    target = torch.from_numpy(y)
    final = clustering_scores(torch.from_numpy(algo.labels_.astype("int64")), target)
    head = clustering_scores(torch.from_numpy(algo.dec_labels_.astype("int64")), target)
    return {
        **final,
        "wall_s": wall,
        "budget": {**budget, "clustering_steps_done": budget["clustering_epochs"] * budget["steps_per_epoch"]},
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "dec_labels": head,
        "detail": {
            "clustpy": clustpy.__version__,
            "class": type(algo).__name__,
            "epochs": "ClustPy's own defaults" if method in CLUSTPY_OWN_EPOCHS else "the budget",
            "pretrain_optimizer": "Adam lr 1e-3 (ClustPy default)",
            "clustering_optimizer": "Adam lr 1e-4 (ClustPy default)",
            "initial_clustering_params": initial.get("initial_clustering_params", "ClustPy default"),
            "clustering_loss_weight": algo.clustering_loss_weight,
            "ssl_loss_weight": getattr(algo, "ssl_loss_weight", 0.0),
            "scores": "acc/nmi/ari: labels_ (k-means on the final embedding); dec_labels: the DEC head",
        },
    }


def snapshot_configs(methods: list[str], folder: Path) -> dict[str, dict[str, Any]]:
    """Copy our configs as they are now: a config edited while the benchmark runs does not reach its later runs.

    Records each config's sha256, the commit, and whether the file differs from that commit.
    """
    import hashlib
    import subprocess

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    commit = git("rev-parse", "--short", "HEAD")
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for method in methods:
        config = METHODS[method].get("config")
        if not config:
            continue
        text = (REPO / config).read_text()
        copy = folder / f"{method}.yaml"
        copy.write_text(with_start(text, METHODS[method]["init"]) if "init" in METHODS[method] else text)
        changed = git("status", "--porcelain", "--", config)
        out[method] = {
            "config": config,
            "path": str(copy),
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
            "commit": commit,
            "modified_from_commit": None if changed is None else bool(changed),
        }
    return out


def with_start(config_text: str, init: str) -> str:
    """The config with its `KMeansInit` set to ``init`` (a method that differs from its config only in the start)."""
    import yaml

    from benchmarks._common import kmeans_init_args

    config = yaml.safe_load(config_text)
    kmeans_init_args(config)["init"] = init
    return yaml.safe_dump(config, sort_keys=False)


def make_budget(n: int, pretrain_epochs: int, clustering_epochs: int) -> dict[str, int]:
    steps = math.ceil(n / BATCH_SIZE)
    return {
        "steps_per_epoch": steps,
        "pretrain_epochs": pretrain_epochs,
        "clustering_epochs": clustering_epochs,
        "pretrain_steps": pretrain_epochs * steps,
        "clustering_steps": clustering_epochs * steps,
    }


# ----------------------------------------------------------------------------- summary and report


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.pstdev(values) if values else None


def summarize_method(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over seeds; for ClustPy also its DEC head's scores and the better of its two labelings."""
    if not runs:
        return {"seeds": []}
    acc = [r["acc"] for r in runs]
    out = {
        "seeds": [r["seed"] for r in runs],
        "acc_mean": _mean(acc),
        "acc_std": _std(acc),
        "nmi_mean": _mean([r["nmi"] for r in runs]),
        "ari_mean": _mean([r["ari"] for r in runs]),
        "wall_s_mean": _mean([r["wall_s"] for r in runs]),
    }
    if all("dec_labels" in r for r in runs):
        out["dec_labels_acc_mean"] = _mean([r["dec_labels"]["acc"] for r in runs])
    out["acc_compared"] = max(out["acc_mean"], out.get("dec_labels_acc_mean") or -1.0)
    return out


def acc_at(run: dict[str, Any], seconds: float) -> float | None:
    """Our ACC had the run been stopped after ``seconds``: the labels of its last refresh of P by then.

    The final ACC if the run ended sooner; None if it was still pretraining (no assignment yet).
    """
    if run["wall_s"] <= seconds:
        return run["acc"]
    seen = [acc for _, t, acc in run.get("detail", {}).get("acc_by_refresh", []) if t <= seconds]
    return seen[-1] if seen else None


def verdict(ours: str, peer: str, runs: list[dict[str, Any]], name: str = "") -> dict[str, Any]:
    """ACC difference and wall-time ratio of one pair, on the seeds both ran; ahead means more ACC at no more wall time.

    When ours took longer, it still counts as ahead at equal wall time if, stopped at the peer's
    wall time of each seed, its assignments then (`acc_at`) beat the peer's final ACC on average.
    """
    ours_seeds = {r["seed"] for r in runs if r["method"] == ours}
    runs = [r for r in runs if r["seed"] in ours_seeds & {r["seed"] for r in runs if r["method"] == peer}]
    o, p = (summarize_method([r for r in runs if r["method"] == m]) for m in (ours, peer))
    paired = "" if set(o["seeds"]) == ours_seeds else f" (seed {', '.join(map(str, o['seeds']))} only)"
    diff = o["acc_mean"] - p["acc_compared"]
    ratio = o["wall_s_mean"] / p["wall_s_mean"]
    peer_wall = {r["seed"]: r["wall_s"] for r in runs if r["method"] == peer}
    at_peer_wall = [acc_at(r, peer_wall[r["seed"]]) for r in runs if r["method"] == ours and r["seed"] in peer_wall]
    at_mean = None if not at_peer_wall or None in at_peer_wall else statistics.fmean(at_peer_wall)
    if diff > 0 and ratio <= 1:
        ahead, how = True, "ahead: more ACC in no more wall time"
    elif diff > 0 and at_mean is not None and at_mean > p["acc_compared"]:
        ahead, how = True, f"ahead at equal wall time: stopped at the peer's wall time, ours had ACC {at_mean:.3f}"
    elif diff > 0:
        reached = "still pretraining then" if at_mean is None else f"ACC {at_mean:.3f} then"
        ahead, how = False, f"NOT ahead at equal wall time: more ACC, but slower ({reached} at the peer's wall time)"
    else:
        ahead, how = False, "NOT ahead: less or equal ACC"
    text = (
        f"{name}{': ' if name else ''}{METHODS[ours]['label']} vs {METHODS[peer]['label']}{paired}: "
        f"ACC {o['acc_mean']:.3f} vs {p['acc_compared']:.3f} "
        f"({diff:+.3f}), wall {o['wall_s_mean']:.0f} s vs {p['wall_s_mean']:.0f} s (ratio {ratio:.2f}): {how}."
    )
    return {
        "pair": name,
        "seeds": o["seeds"],
        "ours": ours,
        "peer": peer,
        "acc_diff": diff,
        "wall_ratio": ratio,
        "ours_acc_at_peer_wall_mean": at_mean,
        "ahead_at_equal_wall": ahead,
        "text": text,
    }


def lead_split(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Plain DEC's ACC lead over ClustPy's DEC in three parts, paired on the seeds all four plain arms ran.

    lead = (ours - ours from k-means: our start) + (ClustPy with 20 restarts - ClustPy: its single
    restart) + (ours from k-means - ClustPy with 20 restarts: the rest, at a matched start). The
    parts add up to the lead exactly; ClustPy's side is its better labeling, as in the verdicts.
    """
    arms = ("ours_dec", "ours_dec_kmeans", "clustpy_dec", "clustpy_dec_n20")
    by_arm = {m: {r["seed"]: r for r in runs if r["method"] == m} for m in arms}
    seeds = sorted(set.intersection(*(set(v) for v in by_arm.values())))
    if not seeds:
        return None
    acc = {m: summarize_method([by_arm[m][s] for s in seeds])["acc_compared"] for m in arms}
    return {
        "seeds": seeds,
        "acc": acc,
        "lead": acc["ours_dec"] - acc["clustpy_dec"],
        "our_start": acc["ours_dec"] - acc["ours_dec_kmeans"],
        "clustpy_single_restart": acc["clustpy_dec_n20"] - acc["clustpy_dec"],
        "rest_at_matched_start": acc["ours_dec_kmeans"] - acc["clustpy_dec_n20"],
    }


def summarize(sources: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine per-seed result files: runs, per-method means, and the verdict of each pair."""
    runs = sorted((r for s in sources for r in s["runs"]), key=lambda r: (r["seed"], r["position"]))
    keys = [(r["seed"], r["method"]) for r in runs]
    if len(set(keys)) < len(keys):
        raise ValueError("a (seed, method) pair appears in more than one file")
    methods = {m: summarize_method([r for r in runs if r["method"] == m]) for m in METHODS}
    methods = {m: s for m, s in methods.items() if s["seeds"]}
    verdicts = []
    pairs = {
        ("ours_dec", "clustpy_dec"): "Plain DEC",
        ("ours_best", "clustpy_idec"): "IDEC",
        ("ours_dec_kmeans", "clustpy_dec_n20"): "Plain DEC, both from k-means with 20 restarts",
        ("ours_dec", "clustpy_dec_default"): "Plain DEC, ClustPy at its own epochs",
    }
    ours_done = [m for m in ("ours_dec", "ours_best") if m in methods]
    peers_done = [m for m in ("clustpy_dec", "clustpy_idec") if m in methods]
    if ours_done and peers_done:  # best config against best config, by mean ACC
        best = (
            max(ours_done, key=lambda m: methods[m]["acc_mean"]),
            max(peers_done, key=lambda m: methods[m]["acc_compared"]),
        )
        pairs[best] = f"{pairs[best]}, also the best of each" if best in pairs else "Best of each"
    for (ours, peer), name in pairs.items():
        if ours in methods and peer in methods:
            verdicts.append(verdict(ours, peer, runs, name))
    first = sources[0]
    return {
        "kind": "peers",
        "machine": first["machine"],
        "commands": [s["command"] for s in sources],
        # `make bench-peers` runs on the CPU; a GPU run is reproduced by its own commands (--device cuda)
        "reproduce": REPRODUCE if first["settings"].get("device", "cpu") == "cpu" else None,
        "settings": {
            **first["settings"],
            "configs": {m: c for s in sources for m, c in s["settings"].get("configs", {}).items()},
        },
        "data": first["data"],
        "note": " | ".join(dict.fromkeys(s["note"] for s in sources if s.get("note"))) or None,
        "methods": methods,
        "verdicts": verdicts,
        "lead_split": lead_split(runs),
        "runs": runs,
    }


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(s: dict[str, Any]) -> str:
    m, b = s["machine"], s["settings"]["budget"]
    lines = [
        "# Against ClustPy: DEC and IDEC on MNIST, side by side",
        "",
        "Generated by `benchmarks/peers.py` from the per-seed result files; do not edit by hand.",
        "",
        (
            f"Reproduce from the repository root: `{s['reproduce']}`; it ran "
            if s["reproduce"]
            else "Ran from the repository root on a machine with a CUDA GPU: "
        )
        + "; ".join(f"`{c}`" for c in s["commands"])
        + ", then merged them.",
        (
            f"Machine: {m['cpu']}, {m['cores']} cores, {s['settings']['threads']} torch thread(s) per process, "
            f"device {s['settings'].get('device', 'cpu')}, "
            f"torch {m['torch']}, lightning {m['lightning']}, clustpy {s['settings'].get('clustpy', 'n/a')}."
        ),
        (
            f"Data: MNIST train + test, {s['data']['n']} x {s['data']['d']}, pixels / 255 "
            f"(our `MNISTDataModule`), the same array and labels for both libraries."
        ),
        (
            f"Budget for every run: {b['pretrain_epochs']} autoencoder epochs ({b['pretrain_steps']} steps of batch "
            f"{BATCH_SIZE}), then at most {b['clustering_epochs']} clustering epochs ({b['clustering_steps']} steps). "
            "Ours: the config with `--pretrain.finetune_steps` and `--trainer.max_steps` set to these, and "
            "`configs/mnist_fast_idec_aug.yaml` with `--pretrain.layerwise_steps 0` (no greedy layer-wise phase: the "
            "same pretraining steps as ClustPy). "
            "ClustPy: `pretrain_epochs`, `clustering_epochs`, `batch_size=256`, `embedding_size=10`, `device`, "
            "`random_state=seed`, everything else its default; its DEC at its own defaults (100 + 150 epochs, "
            "`make bench-peers` runs it for seed 0) is the one run outside this budget."
        ),
        "Per seed the runs alternate in one process (even seeds: ours first; odd seeds: ClustPy first).",
        *(
            [
                "Our configs, copied when each process started: "
                + "; ".join(
                    f"`{c['config']}` (sha256 {c['sha256']}, commit {c['commit']}"
                    + (", with uncommitted changes" if c.get("modified_from_commit") else "")
                    + ")"
                    for c in s["settings"]["configs"].values()
                )
                + "."
            ]
            if s["settings"].get("configs")
            else []
        ),
        *([f"Note: {s['note']}"] if s.get("note") else []),
        "",
        "## Per seed",
        "",
        (
            "| seed | # | method | ACC | NMI | ARI | ClustPy DEC-head ACC | pretrain steps | clustering steps "
            "| wall s | threads | load avg before / after (1 min) |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in s["runs"]:
        rb = r["budget"]
        head = _f(r["dec_labels"]["acc"]) if "dec_labels" in r else ""
        lines.append(
            f"| {r['seed']} | {r['position']} | {METHODS[r['method']]['label']} | {_f(r['acc'])} | {_f(r['nmi'])} "
            f"| {_f(r['ari'])} | {head} | {rb.get('pretrain_steps_done', rb['pretrain_steps'])} "
            f"| {rb['clustering_steps_done']} | {r['wall_s']:.0f} | {r['torch_threads']} "
            f"| {r['load_average_before'][0]:.1f} / {r['load_average_after'][0]:.1f} |"
        )
    lines += [
        "",
        "## Means per method",
        "",
        "| method | seeds | ACC (mean ± std) | NMI | ARI | ClustPy DEC-head ACC | wall s (mean) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in s["methods"].items():
        lines.append(
            f"| {METHODS[name]['label']} | {', '.join(map(str, v['seeds']))} | {_f(v['acc_mean'])} ± "
            f"{_f(v['acc_std'])} | {_f(v['nmi_mean'])} | {_f(v['ari_mean'])} | {_f(v.get('dec_labels_acc_mean'))} "
            f"| {v['wall_s_mean']:.0f} |"
        )
    lines += ["", "## Verdict", ""]
    lines += [f"- {v['text']}" for v in s["verdicts"]]
    if s.get("lead_split"):
        d = s["lead_split"]
        lines += [
            "",
            "## Where plain DEC's lead comes from",
            "",
            (
                f"Paired on seeds {', '.join(map(str, d['seeds']))} (the seeds all four plain-DEC arms ran): ours "
                f"{d['acc']['ours_dec']:.3f} against ClustPy's DEC {d['acc']['clustpy_dec']:.3f}, a lead of "
                f"{d['lead']:+.3f} ACC = {d['our_start']:+.3f} from our graph start (ours from k-means: "
                f"{d['acc']['ours_dec_kmeans']:.3f}) {d['clustpy_single_restart']:+.3f} from ClustPy's k-means restarts "
                f"(20 instead of its 1: {d['acc']['clustpy_dec_n20']:.3f}) {d['rest_at_matched_start']:+.3f} from the rest "
                "of the two implementations at a matched start."
            ),
        ]
    lines += [
        "",
        (
            "ACC, NMI, ARI: the final labels of all 70000 samples against the digits. ClustPy's row is its "
            "`labels_` (k-means on the final embedding, what `fit_predict` returns); its DEC head's own "
            "assignment (`dec_labels_`) is the next column, and the verdict compares ours with the better of "
            "the two means. Best of each: the method with the higher mean ACC on each side. Ours: the DEC assignments at the end of the run (no re-clustering). "
            "Wall s: the whole run, data loading, pretraining and k-means included. Ahead at equal wall time: "
            "more ACC in no more wall time, or, if ours ran longer, more ACC from the assignments it had at "
            "the peer's wall time of each seed (its last refresh of P by then)."
        ),
    ]
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown(summary))


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-list", type=int, nargs="+", default=[0])
    parser.add_argument("--data-dir", default=os.environ.get("DEC_DATA_DIR"), help="default: $DEC_DATA_DIR")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared CPU)")
    parser.add_argument("--pretrain-epochs", type=int, default=25)
    parser.add_argument("--clustering-epochs", type=int, default=10)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="for both libraries (cuda: our --trainer.accelerator gpu)",
    )
    parser.add_argument(
        "--ours-extra", default="", help="more dec-lightning arguments for both of our runs (e.g. for a smoke test)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the pipeline in minutes: 1 + 1 epochs, 20 layer-wise steps per layer; not a measurement",
    )
    parser.add_argument(
        "--out", type=Path, help="per-seed result file (default: benchmarks/results/peers_s<seeds>.json)"
    )
    parser.add_argument("--note", help="free text saved with the results")
    parser.add_argument("--merge", nargs="+", type=Path, help="only combine these per-seed files into <name>.{json,md}")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where --merge writes")
    parser.add_argument("--name", default="peers", help="file stem --merge writes")
    args = parser.parse_args(argv)

    if args.merge:
        summary = summarize([json.loads(p.read_text()) for p in args.merge])
        if args.note:
            summary["note"] = args.note
        write_report(summary, args.out_dir, args.name)
        print("\n".join(v["text"] for v in summary["verdicts"]))
        return summary

    import shlex

    os.environ.setdefault("TQDM_MININTERVAL", "30")  # ClustPy's progress bars: a line every 30 s, not every step
    import torch

    from benchmarks._common import set_threads
    from benchmarks.quality import machine_info, portable_command

    set_threads(args.threads)
    import clustpy

    if args.smoke:
        args.pretrain_epochs, args.clustering_epochs = 1, 1
        args.ours_extra = f"--pretrain.layerwise_steps 20 {args.ours_extra}".strip()
    x, y = load_mnist(args.data_dir)
    budget = make_budget(len(x), args.pretrain_epochs, args.clustering_epochs)
    extra = shlex.split(args.ours_extra)
    out = args.out or RESULTS / f"peers_s{'-'.join(map(str, args.seed_list))}.json"
    result: dict[str, Any] = {
        "kind": "peers-seed",
        "machine": machine_info(),
        "command": portable_command(["python", "benchmarks/peers.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {
            "budget": budget,
            "threads": args.threads,
            "device": args.device if args.device == "cpu" else f"cuda ({torch.cuda.get_device_name()})",
            "clustpy": clustpy.__version__,
            "ours_extra": extra,
            "smoke": args.smoke,
        },
        "data": fingerprint(x, y),
        "note": args.note,
        "runs": [],
    }
    del x, y
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dec-peers-") as workdir:
        configs = snapshot_configs(args.methods, Path(workdir) / "configs")
        result["settings"]["configs"] = {m: {k: v for k, v in c.items() if k != "path"} for m, c in configs.items()}
        for seed in args.seed_list:
            for position, method in enumerate((m for m in run_order(seed) if m in args.methods), start=1):
                print(f"seed {seed}: {method} (load {os.getloadavg()[0]:.2f})", flush=True)
                if METHODS[method]["library"] == "clustpy":
                    record = run_clustpy(method, seed, args.data_dir, budget, args.device, args.smoke)
                else:
                    work = Path(workdir) / f"seed{seed}"
                    config = configs[method]["path"]
                    record = run_ours(method, seed, args.data_dir, budget, extra, work, config, args.device)
                set_threads(args.threads)  # whatever a library did to the pools, the next run starts the same
                run = {"method": method, "library": METHODS[method]["library"], "seed": seed, "position": position}
                result["runs"].append({**run, **record})
                print(
                    f"seed {seed}: {method} ACC {record['acc']:.4f} wall {record['wall_s']:.0f} s "
                    f"threads {torch.get_num_threads()}",
                    flush=True,
                )
                out.write_text(json.dumps(result, indent=2) + "\n")  # after every run: a stopped job keeps them
    return result


if __name__ == "__main__":
    main()
