"""`benchmarks/studies/graph_choice.py`: it ranks graph starts by normalized cut and reports the chosen one's ACC."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.studies import graph_choice
from tests.test_graph_start import strips

# Two triangles {0, 1, 2} and {3, 4, 5}, 2 neighbours each (column 0: the sample itself); one edge 2 -> 3 crosses.
TRIANGLES = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 3], [3, 4, 5], [4, 3, 5], [5, 3, 4]])


def test_normalized_cut_by_hand() -> None:
    """W = A + A^T. The triangles apart: the one crossing edge cuts 1 on each side; vol = out-degree 6 +
    in-degree (5 into the first triangle, 7 into the second): Ncut = (1/11 + 1/13) / 2."""
    assert graph_choice.normalized_cut(np.array([0, 0, 0, 1, 1, 1]), TRIANGLES) == pytest.approx(
        0.5 * (1 / 11 + 1 / 13)
    )
    # {0, 1} against {2, 3, 4, 5}: crossing edges 0->2, 1->2, 2->0 (2->3 no longer crosses); cut 3 each side;
    # vol {0, 1} = out 4 + in 3 (1->0, 0->1, 2->0) = 7; vol {2, ..., 5} = out 8 + in 9 = 17
    assert graph_choice.normalized_cut(np.array([0, 0, 1, 1, 1, 1]), TRIANGLES) == pytest.approx(0.5 * (3 / 7 + 3 / 17))


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_rank_candidates_and_page(tmp_path, monkeypatch) -> None:
    data, truth = strips(n_per_strip=150, seed=4)
    np.save(tmp_path / "z_seed0.npy", data.astype(np.float32))
    np.save(tmp_path / "y.npy", truth)
    monkeypatch.setattr(graph_choice, "REPO", tmp_path)
    (tmp_path / "benchmarks" / "studies" / "results").mkdir(parents=True)
    payload = graph_choice.main([str(tmp_path), "--micro", "4", "30", "--restarts", "2", "--name", "t"])
    r = payload["seeds"]["0"]
    assert [(c["micro_clusters"], c["seed"]) for c in r["candidates"]] == [(4, 0), (4, 1), (30, 0), (30, 1)]
    assert r["chosen"] == min(r["candidates"], key=lambda c: c["ncut"])
    assert r["chosen"]["acc"] == 1.0 and r["best_acc"] == 1.0  # the strips: lowest cut = right partition
    page = (tmp_path / "benchmarks" / "studies" / "results" / "t.md").read_text()
    assert f"| 0 | {r['chosen']['micro_clusters']} / {r['chosen']['seed']} |" in page
    assert "Mean start ACC of the chosen candidates: 1.000." in page
