"""`benchmarks/graph_choice.py`: it ranks graph starts by normalized cut and reports the chosen one's ACC."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import graph_choice
from tests.test_graph_start import strips


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_rank_candidates_and_page(tmp_path, monkeypatch) -> None:
    data, truth = strips(n_per_strip=150, seed=4)
    np.save(tmp_path / "z_seed0.npy", data.astype(np.float32))
    np.save(tmp_path / "y.npy", truth)
    monkeypatch.setattr(graph_choice, "REPO", tmp_path)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    payload = graph_choice.main([str(tmp_path), "--micro", "4", "30", "--restarts", "2", "--name", "t"])
    r = payload["seeds"]["0"]
    assert [(c["micro_clusters"], c["seed"]) for c in r["candidates"]] == [(4, 0), (4, 1), (30, 0), (30, 1)]
    assert r["chosen"] == min(r["candidates"], key=lambda c: c["ncut"])
    assert r["chosen"]["acc"] == 1.0 and r["best_acc"] == 1.0  # the strips: lowest cut = right partition
    page = (tmp_path / "benchmarks" / "results" / "t.md").read_text()
    assert f"| 0 | {r['chosen']['micro_clusters']} / {r['chosen']['seed']} |" in page
    assert "Mean start ACC of the chosen candidates: 1.000." in page
