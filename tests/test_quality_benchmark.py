"""The quality benchmark's bookkeeping: time to target ACC, merging per-seed result files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import quality


def test_time_to_target_is_the_first_refresh_at_or_above_it() -> None:
    run = {"acc_by_refresh": [[1, 100.0, 0.80], [141, 130.4, 0.879], [281, 160.6, 0.88], [421, 190.0, 0.90]]}
    assert quality.time_to_target(run, 0.88) == "281, 161"
    assert quality.time_to_target(run, 0.95) == "not reached"
    assert quality.time_to_target(run, None) == "n/a"
    assert quality.time_to_target({}, 0.88) == "n/a"  # result files written before the trajectory was kept


def _result(tmp_path: Path, name: str, seed: int, acc: float, config: str = "configs/x.yaml") -> Path:
    run = {
        "seed": seed,
        "acc": acc,
        "nmi": acc,
        "ari": acc,
        "baseline": {"acc": acc - 0.1, "nmi": None, "ari": None},
        "pretrain_steps": 10,
        "dec_steps": 20,
        "stopped_by_tol": True,
        "wall_s": {"pretrain": 1.0, "kmeans_init": 0.1, "dec": 2.0, "total": 3.1},
        "load_average_start": [0.5, 0.5, 0.5],
        "acc_by_refresh": [[1, 1.5, acc - 0.1], [5, 2.5, acc]],
    }
    extra = {"machine": quality.machine_info(), "command": f"run {name}", "target_acc": 0.9}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(quality.summarize("usps", config, [run], extra)))
    return path


def test_merge_combines_seeds_sorted_with_their_mean(tmp_path: Path) -> None:
    files = [_result(tmp_path, "s1", 1, 0.96), _result(tmp_path, "s0", 0, 0.92)]
    out = tmp_path / "out"
    summary = quality.main(["--dataset", "usps", "--merge", *map(str, files), "--out-dir", str(out), "--name", "m"])
    assert summary["seeds"] == [0, 1]
    assert summary["acc_mean"] == pytest.approx(0.94)
    assert summary["target_acc"] == 0.9
    assert summary["command"] == ["run s1", "run s0"]
    assert json.loads((out / "m.json").read_text())["acc_mean"] == pytest.approx(0.94)
    text = (out / "m.md").read_text()
    assert "Target ACC 0.900: met by the mean ACC 0.940" in text
    assert "| 5, 2 |" in text  # seed 1 reached 0.96 >= 0.9 at its second refresh (step 5, 2.5 s)


def test_merge_refuses_mixed_configs_and_repeated_seeds(tmp_path: Path) -> None:
    a = _result(tmp_path, "a", 0, 0.9)
    other = _result(tmp_path, "b", 1, 0.9, config="configs/y.yaml")
    same_seed = _result(tmp_path, "c", 0, 0.8)
    for files in ([a, other], [a, same_seed]):
        with pytest.raises(SystemExit):
            quality.main(["--dataset", "usps", "--merge", *map(str, files), "--out-dir", str(tmp_path), "--name", "m"])


def test_save_embedding_writes_the_pretrained_embedding_the_diagnosis_reads(tmp_path: Path) -> None:
    """``--save-embedding``: one seed's embedding in index order and the labels, read by start_diagnosis."""
    import numpy as np
    from sklearn.datasets import load_digits

    from benchmarks.studies import start_diagnosis

    emb = tmp_path / "emb"
    summary = quality.main(
        ["--dataset", "digits", "--seed-list", "4", "--out-dir", str(tmp_path), "--save-embedding", str(emb),
         "--", "--pretrain.finetune_steps", "3", "--trainer.max_steps", "2"]
    )  # fmt: skip
    z, y = np.load(emb / "z_seed4.npy"), np.load(emb / "y.npy")
    assert z.shape == (1797, 10) and z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_array_equal(y, load_digits().target)
    # the first refresh of P assigns each sample to its nearest centre of the config's start on this
    # embedding: the means of the graph start's groups, seeded by the run's seed
    import torch

    from dec_lightning.callbacks.graph_start import GRAPH_SAMPLES, group_means
    from dec_lightning.callbacks.kmeans import graph_start_or_none
    from dec_lightning.metrics.clustering import clustering_scores

    groups = graph_start_or_none(z.astype(np.float64), 10, 4, 100, 20, GRAPH_SAMPLES)
    centers = group_means(z.astype(np.float64), groups, 10)
    labels = ((z[:, None, :] - centers[None]) ** 2).sum(-1).argmin(1)
    acc = clustering_scores(torch.from_numpy(labels), torch.from_numpy(y))["acc"]
    assert abs(acc - summary["runs"][0]["baseline"]["acc"]) < 0.02
    record = start_diagnosis.diagnose(z.astype(np.float64), y, 10)
    assert 0 < record["kmeans20_acc"] <= record["kmeans_singles_best_acc"] + 0.05
    assert len(record["kmeans_singles_by_inertia"]) == 30
