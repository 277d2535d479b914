"""The graph start's benchmarks: selection bookkeeping, the held-out configs and merge. Fabricated runs only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import start_heldout, start_selection


def test_start_config_changes_only_the_start_and_where_it_writes(tmp_path: Path) -> None:
    path = start_heldout.start_config("configs/usps_fast.yaml", "kmeans", tmp_path, with_probe=True, data_dir="d")
    changed = yaml.safe_load(path.read_text())
    original = yaml.safe_load((start_heldout.REPO / "configs/usps_fast.yaml").read_text())
    callbacks = changed["trainer"]["callbacks"]
    assert callbacks[-1] == {"class_path": start_heldout.PROBE}  # the k-means arm replaces the whole list
    init = next(cb for cb in callbacks if cb["class_path"].endswith("KMeansInit"))
    assert init["init_args"]["init"] == "kmeans"
    assert changed["data"]["init_args"]["data_dir"] == "d"
    assert changed["trainer"]["logger"]["init_args"]["save_dir"] == str(tmp_path / "kmeans")
    # undo the three changes: nothing else differs
    callbacks.pop()
    init["init_args"]["init"] = "graph"
    changed["data"]["init_args"]["data_dir"] = original["data"]["init_args"]["data_dir"]
    changed["trainer"]["logger"]["init_args"]["save_dir"] = original["trainer"]["logger"]["init_args"]["save_dir"]
    assert changed == original


def _arm(acc: float, start: float) -> dict:
    return {
        "acc": acc,
        "nmi": acc - 0.1,
        "ari": acc - 0.2,
        "baseline": {"acc": start},
        "dec_steps": 10,
        "stopped_by_tol": True,
        "wall_s": {"total": 100.0},
    }


def test_merge_pairs_by_seed_and_keeps_selection_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results, runs = tmp_path / "results", tmp_path / "results" / "start_heldout"
    runs.mkdir(parents=True)
    monkeypatch.setattr(start_heldout, "RESULTS", results)
    monkeypatch.setattr(start_heldout, "RUNS", runs)
    sets = {"digits_ae_seed0": {}, "blobs_n300_d4_k3_s1": {}, "iris": {}}
    (results / "start_selection.json").write_text(json.dumps({"chosen": "m100_k20_split_merge", "sets": sets}))
    for seed, (km, graph) in enumerate([(0.80, 0.90), (0.85, 0.84)]):
        run = {
            "dataset": "usps",
            "recipe": "plain",
            "seed": seed,
            "objective": "DEC: KL(P||Q)",
            "graph": {**_arm(graph, 0.8), "fallback": "graph start: tiny" if seed else None},
            "kmeans": _arm(km, 0.7),
            "extra_args": [],
            "machine": {"cpu": "test"},
            "load_average_start": [1.0],
        }
        (runs / f"usps_plain_s{seed}.json").write_text(json.dumps(run))
    payload = start_heldout.merge()
    assert payload["selection"] == ["blobs_n300_d4_k3", "digits_ae", "iris"]
    assert payload["evaluation"] == ["usps"]
    entry = payload["results"]["usps/plain"]
    assert entry["graph_acc_mean"] == pytest.approx(0.87) and entry["kmeans_acc_mean"] == pytest.approx(0.825)
    assert entry["graph_ahead_seeds"] == 1 and entry["fallbacks"] == 1
    assert payload["verdict"] == "graph" and payload["graph_minus_kmeans_acc_mean"] == pytest.approx(0.045)
    assert "| usps/plain | 1 | 0.850 / 0.840 |" in (results / "start_heldout.md").read_text()


def test_selection_scores_a_fallback_as_the_kmeans_it_falls_back_to() -> None:
    x = np.random.default_rng(0).normal(size=(40, 2))  # 40 rows: 8 micro-clusters at most, K = 10: no graph start
    y = np.arange(40) % 10
    row = start_selection.score_set(x, y)
    graph = [v for k, v in row.items() if k != "kmeans"]
    assert graph and all(v["fallback"] and v["acc"] == row["kmeans"]["acc"] for v in graph)
    table = start_selection.summary({"a": row})
    assert table[0]["setting"] in {t["setting"] for t in table} and all(t["fallbacks"] in (0, 1) for t in table)
    assert start_selection.accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == 1.0
