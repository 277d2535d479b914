"""The peer benchmark's bookkeeping (benchmarks/peers.py): merging per-seed files, means, verdicts, report.

Fabricated runs only: no ClustPy, no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import peers


def _run(method: str, seed: int, acc: float, wall: float, head: float | None = None, refreshes=None) -> dict:
    run = {
        "method": method,
        "library": peers.METHODS[method]["library"],
        "seed": seed,
        "position": peers.run_order(seed).index(method) + 1,
        "acc": acc,
        "nmi": acc - 0.05,
        "ari": acc - 0.1,
        "wall_s": wall,
        "budget": {**peers.make_budget(70000, 25, 10), "clustering_steps_done": 2740},
        "torch_threads": 1,
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [2.0, 2.0, 2.0],
        "detail": {"acc_by_refresh": refreshes or []},
    }
    if head is not None:
        run["dec_labels"] = {"acc": head, "nmi": 0.0, "ari": 0.0}
    return run


def _file(tmp_path: Path, seed: int, runs: list[dict]) -> Path:
    source = {
        "kind": "peers-seed",
        "machine": {"cpu": "test cpu", "cores": 2, "torch_threads": 1, "torch": "2.x", "lightning": "2.x"},
        "command": f"python benchmarks/peers.py --seed-list {seed}",
        "settings": {"budget": peers.make_budget(70000, 25, 10), "threads": 1, "clustpy": "0.0.3"},
        "data": {"n": 70000, "d": 784},
        "runs": runs,
    }
    path = tmp_path / f"peers_s{seed}.json"
    path.write_text(json.dumps(source))
    return path


def _files(tmp_path: Path) -> list[Path]:
    # ours_dec: ACC 0.86, wall 650; ClustPy DEC: labels_ 0.81, DEC head 0.83 (the better), wall 650
    # ours_best: ACC 0.94, wall 1100; ClustPy IDEC: 0.87 (head 0.85), wall 550; at 550 s ours had 0.90 / 0.92
    seed0 = [
        _run("ours_dec", 0, 0.85, 600.0),
        _run("clustpy_dec", 0, 0.80, 500.0, head=0.82),
        _run("ours_best", 0, 0.95, 1200.0, refreshes=[[1, 500.0, 0.90], [141, 600.0, 0.91]]),
        _run("clustpy_idec", 0, 0.88, 550.0, head=0.85),
    ]
    seed1 = [
        _run("clustpy_dec", 1, 0.82, 800.0, head=0.84),
        _run("ours_dec", 1, 0.87, 700.0),
        _run("clustpy_idec", 1, 0.86, 550.0, head=0.85),
        _run("ours_best", 1, 0.93, 1000.0, refreshes=[[1, 540.0, 0.92], [141, 640.0, 0.93]]),
    ]
    return [_file(tmp_path, 0, seed0), _file(tmp_path, 1, seed1)]


def test_budget_is_epochs_of_274_steps() -> None:
    b = peers.make_budget(70000, 25, 10)
    assert (b["steps_per_epoch"], b["pretrain_steps"], b["clustering_steps"]) == (274, 6850, 2740)


def test_order_alternates_by_seed() -> None:
    assert peers.run_order(0)[0].startswith("ours") and peers.run_order(1)[0].startswith("clustpy")
    assert sorted(peers.run_order(0)) == sorted(peers.run_order(1)) == sorted(peers.METHODS)


def test_acc_at_a_wall_time() -> None:
    run = {"acc": 0.95, "wall_s": 1200.0, "detail": {"acc_by_refresh": [[1, 500.0, 0.90], [141, 600.0, 0.91]]}}
    assert peers.acc_at(run, 550.0) == 0.90
    assert peers.acc_at(run, 650.0) == 0.91
    assert peers.acc_at(run, 400.0) is None  # still pretraining
    assert peers.acc_at(run, 1300.0) == 0.95  # finished by then


def test_merge_computes_means_and_verdicts(tmp_path: Path) -> None:
    summary = peers.main(["--merge", *map(str, _files(tmp_path)), "--out-dir", str(tmp_path), "--name", "out"])
    m = summary["methods"]
    assert m["ours_dec"]["acc_mean"] == pytest.approx(0.86)
    assert m["clustpy_dec"]["acc_mean"] == pytest.approx(0.81)
    assert m["clustpy_dec"]["acc_compared"] == pytest.approx(0.83)  # the better of labels_ and the DEC head
    assert m["ours_best"]["wall_s_mean"] == pytest.approx(1100.0)

    plain, best = summary["verdicts"]  # ours_best against ClustPy IDEC is also best against best: no third line
    assert len(summary["verdicts"]) == 2
    assert best["pair"] == "IDEC, also the best of each" and best["text"].startswith("IDEC, also the best of each: ")
    assert (plain["ours"], plain["peer"]) == ("ours_dec", "clustpy_dec")
    assert plain["acc_diff"] == pytest.approx(0.03)
    assert plain["wall_ratio"] == pytest.approx(1.0)
    assert plain["ahead_at_equal_wall"] is True
    assert "(+0.030)" in plain["text"] and "ratio 1.00" in plain["text"]

    assert best["acc_diff"] == pytest.approx(0.07)
    assert best["wall_ratio"] == pytest.approx(2.0)
    assert best["ours_acc_at_peer_wall_mean"] == pytest.approx(0.91)
    assert best["ahead_at_equal_wall"] is True
    assert "(+0.070)" in best["text"] and "ratio 2.00" in best["text"] and "ACC 0.910" in best["text"]

    md = (tmp_path / "out.md").read_text()
    assert "| 1 | 1 | ClustPy DEC | 0.820 |" in md  # seed 1 ran ClustPy first
    assert "| ours, plain DEC | 0, 1 | 0.860 ± 0.010 |" in md
    assert plain["text"] in md and best["text"] in md
    assert "`make bench-peers`" in md
    saved = json.loads((tmp_path / "out.json").read_text())
    assert "acc_mean" not in saved  # not a quality-benchmark file (tests/test_results_table.py)
    assert saved["verdicts"][0]["text"] == plain["text"]


def test_slower_and_still_pretraining_at_the_peer_wall_time_is_not_ahead(tmp_path: Path) -> None:
    runs = [
        _run("ours_best", 0, 0.95, 1200.0, refreshes=[[1, 900.0, 0.90]]),
        _run("clustpy_idec", 0, 0.88, 550.0, head=0.85),
        _run("clustpy_dec", 0, 0.90, 500.0, head=0.96),  # ClustPy's best: a third verdict line
    ]
    summary = peers.summarize([json.loads(_file(tmp_path, 0, runs).read_text())])
    assert [(v["ours"], v["peer"]) for v in summary["verdicts"]] == [
        ("ours_best", "clustpy_idec"),
        ("ours_best", "clustpy_dec"),
    ]
    idec, best = summary["verdicts"]
    assert idec["ahead_at_equal_wall"] is False and idec["ours_acc_at_peer_wall_mean"] is None
    assert "still pretraining" in idec["text"]
    assert best["acc_diff"] == pytest.approx(-0.01) and best["ahead_at_equal_wall"] is False
    assert "NOT ahead: less or equal ACC" in best["text"]


def test_a_seed_and_method_in_two_files_is_refused(tmp_path: Path) -> None:
    a = _file(tmp_path, 0, [_run("ours_dec", 0, 0.85, 600.0)])
    source = json.loads(a.read_text())
    with pytest.raises(ValueError, match="more than one file"):
        peers.summarize([source, source])


def test_best_of_each_pairs_our_best_run_with_theirs(tmp_path: Path) -> None:
    runs = [
        _run("ours_dec", 0, 0.96, 900.0),
        _run("clustpy_dec", 0, 0.85, 800.0, head=0.84),
        _run("ours_best", 0, 0.92, 1500.0),
        _run("clustpy_idec", 0, 0.88, 600.0, head=0.87),
    ]
    summary = peers.summarize([json.loads(_file(tmp_path, 0, runs).read_text())])
    assert [v["pair"] for v in summary["verdicts"]] == ["Plain DEC", "IDEC", "Best of each"]
    best = summary["verdicts"][2]
    assert (best["ours"], best["peer"]) == ("ours_dec", "clustpy_idec")
    assert best["acc_diff"] == pytest.approx(0.08) and best["wall_ratio"] == pytest.approx(1.5)
    assert best["ahead_at_equal_wall"] is False  # slower, and no refreshes recorded before 600 s
    assert "ACC 0.960 vs 0.880 (+0.080)" in best["text"] and "(ratio 1.50)" in best["text"]


def test_the_matched_start_pair_gets_its_own_verdict(tmp_path: Path) -> None:
    """Our k-means-start arm is held against ClustPy's DEC with 20 restarts, not against the graph-start arm."""
    runs = [
        _run("ours_dec_kmeans", 0, 0.88, 700.0),
        _run("clustpy_dec_n20", 0, 0.78, 600.0, head=0.79),
    ]
    summary = peers.summarize([json.loads(_file(tmp_path, 0, runs).read_text())])
    (pair,) = summary["verdicts"]
    assert (pair["ours"], pair["peer"]) == ("ours_dec_kmeans", "clustpy_dec_n20")
    assert pair["acc_diff"] == pytest.approx(0.88 - 0.79)
    assert pair["pair"] == "Plain DEC, both from k-means with 20 restarts"


def test_a_start_only_method_differs_from_its_config_in_the_start() -> None:
    import yaml

    text = (peers.REPO / "configs" / "mnist_fast.yaml").read_text()
    changed = yaml.safe_load(peers.with_start(text, "kmeans"))
    original = yaml.safe_load(text)
    init = next(cb for cb in changed["trainer"]["callbacks"] if cb["class_path"].endswith("KMeansInit"))
    assert init["init_args"]["init"] == "kmeans"
    init["init_args"]["init"] = "graph"
    assert changed == original  # nothing else moved


def test_clustpy_at_its_own_defaults_is_a_separate_run_of_100_plus_150_epochs(monkeypatch, tmp_path: Path) -> None:
    """The arm outside the budget: not in a default run, ClustPy's own epochs, compared with our plain DEC."""
    import sys
    import types

    import numpy as np

    seen: list[dict] = []

    class FakeDEC:
        clustering_loss_weight = 1.0

        def __init__(self, **kwargs) -> None:
            seen.append(kwargs)

        def fit(self, x):
            self.labels_ = self.dec_labels_ = np.arange(len(x)) % 2
            return self

    clustpy, deep = types.ModuleType("clustpy"), types.ModuleType("clustpy.deep")  # ClustPy is an optional extra
    clustpy.__version__, clustpy.deep, deep.DEC, deep.IDEC = "fake", deep, FakeDEC, FakeDEC
    monkeypatch.setitem(sys.modules, "clustpy", clustpy)
    monkeypatch.setitem(sys.modules, "clustpy.deep", deep)
    monkeypatch.setattr(peers, "load_mnist", lambda _: (np.zeros((700, 4), "float32"), np.arange(700) % 2))
    budget = peers.make_budget(700, 25, 10)
    assert "clustpy_dec_default" not in peers.DEFAULT_METHODS

    own = peers.run_clustpy("clustpy_dec_default", 0, None, budget)
    assert (seen[-1]["pretrain_epochs"], seen[-1]["clustering_epochs"]) == (100, 150)
    assert own["budget"]["clustering_steps_done"] == 150 * 3 and own["acc"] == pytest.approx(1.0)
    assert own["detail"]["epochs"] == "ClustPy's own defaults"
    peers.run_clustpy("clustpy_dec_default", 0, None, budget, smoke=True)
    assert (seen[-1]["pretrain_epochs"], seen[-1]["clustering_epochs"]) == (25, 10)  # a smoke test stays short
    peers.run_clustpy("clustpy_dec", 0, None, budget, device="cuda")
    assert (seen[-1]["pretrain_epochs"], seen[-1]["device"]) == (25, "cuda")

    seed0 = [_run("ours_dec", 0, 0.90, 600.0), {**_run("clustpy_dec_default", 0, 0.85, 3000.0), "position": 1}]
    files = [_file(tmp_path, 0, seed0), _file(tmp_path, 1, [_run("ours_dec", 1, 0.70, 900.0)])]
    summary = peers.summarize([json.loads(f.read_text()) for f in files])
    (pair,) = [v for v in summary["verdicts"] if v["peer"] == "clustpy_dec_default"]
    assert pair["pair"] == "Plain DEC, ClustPy at its own epochs" and pair["seeds"] == [0]  # paired by seed
    assert pair["acc_diff"] == pytest.approx(0.05) and pair["wall_ratio"] == pytest.approx(0.2)
    assert "(seed 0 only)" in pair["text"]


def test_our_idec_arm_pretrains_the_same_steps_as_clustpy(monkeypatch, tmp_path: Path) -> None:
    """No greedy layer-wise phase in the IDEC arm: 25 epochs of end-to-end steps on both sides."""
    import benchmarks.quality

    calls: list[list[str]] = []

    def fake_run_seed(config, seed, data_dir, overrides, workdir):
        calls.append(overrides)
        return {
            "acc": 0.9,
            "nmi": 0.8,
            "ari": 0.7,
            "wall_s": {"total": 10.0},
            "pretrain_steps": 6850,
            "dec_steps": 2740,
            "stopped_by_tol": False,
            "objective": "idec",
            "baseline": {"acc": 0.8},
            "refreshes": 20,
            "acc_by_refresh": [],
        }

    monkeypatch.setattr(benchmarks.quality, "run_seed", fake_run_seed)
    budget = peers.make_budget(70000, 25, 10)
    peers.run_ours("ours_best", 0, None, budget, [], tmp_path, device="cuda")
    args = calls[-1]
    assert args[args.index("--pretrain.finetune_steps") + 1] == "6850"
    assert args[args.index("--pretrain.layerwise_steps") + 1] == "0"
    assert args[args.index("--trainer.accelerator") + 1] == "gpu"
    peers.run_ours("ours_dec", 0, None, budget, ["--trainer.max_steps", "5"], tmp_path)
    assert "--pretrain.layerwise_steps" not in calls[-1] and "--trainer.accelerator" not in calls[-1]
    assert calls[-1][-2:] == ["--trainer.max_steps", "5"]  # the caller's extra arguments come last and win


def test_plain_dec_lead_splits_into_start_restarts_and_the_rest(tmp_path: Path) -> None:
    """Paired on the seeds all four plain arms ran; the three parts add up to the lead."""
    runs0 = [
        _run("ours_dec", 0, 0.96, 700.0),
        _run("clustpy_dec", 0, 0.78, 600.0, head=0.80),  # ClustPy's better labeling counts: 0.80
        _run("ours_dec_kmeans", 0, 0.90, 700.0),
        _run("clustpy_dec_n20", 0, 0.83, 600.0),
    ]
    runs1 = [_run("ours_dec", 1, 0.50, 700.0), _run("clustpy_dec", 1, 0.40, 600.0)]  # not all four: left out
    summary = peers.summarize([json.loads(_file(tmp_path, s, r).read_text()) for s, r in ((0, runs0), (1, runs1))])
    split = summary["lead_split"]
    assert split["seeds"] == [0]
    assert split["lead"] == pytest.approx(0.16)
    assert split["our_start"] == pytest.approx(0.06)
    assert split["clustpy_single_restart"] == pytest.approx(0.03)
    assert split["rest_at_matched_start"] == pytest.approx(0.07)
    assert "+0.160 ACC = +0.060 from our graph start" in peers.markdown(summary)
    assert peers.summarize([json.loads(_file(tmp_path, 1, runs1).read_text())])["lead_split"] is None
