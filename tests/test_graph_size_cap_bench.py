"""`benchmarks/graph_size_cap.py`: it scores the graph start per size cap on saved embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import graph_size_cap
from tests.test_graph_start import split_class_and_touching_pair


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_scores_each_cap_and_writes_the_page(tmp_path, monkeypatch) -> None:
    data, truth = split_class_and_touching_pair(seed=0)
    np.save(tmp_path / "z_seed0.npy", data.astype(np.float32))
    np.save(tmp_path / "y.npy", truth)
    monkeypatch.setattr(graph_size_cap, "REPO", tmp_path)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    payload = graph_size_cap.main([str(tmp_path), "--micro", "40", "--name", "t"])
    r = payload["seeds"]["0"]
    assert set(r) == {"no cap", "cap 1.3", "cap 1.5", "cap 1.7", "cap 1.8", "cap 2.0", "wall_s"}
    # no cap: classes 1 and 2 share a group of 600; a cap of 1.5 x 304 splits it and rejoins class 0
    assert r["no cap"]["largest"] == 600 and r["no cap"]["acc"] < 0.7
    assert r["cap 1.5"]["largest"] <= 1.5 * len(truth) / 3 and r["cap 1.5"]["acc"] > 0.95
    page = (tmp_path / "benchmarks" / "results" / "t.md").read_text()
    assert f"| 0 | {r['no cap']['acc']:.3f} (600 / {r['no cap']['smallest']}) |" in page
    assert "40 micro-clusters" in page
