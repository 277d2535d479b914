"""Choosing K (DEC paper, sec. 5.5): generalizability, the recommendation rule, input checks, CLI and estimator."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dec_lightning import DEC
from dec_lightning.cli.main import main, run_cli
from dec_lightning.data.indexed import IndexedDataset
from dec_lightning.data.validation import ConfigError
from dec_lightning.select_k import (
    KScore,
    SelectKResult,
    check_ks,
    dec_loss,
    generalizability,
    parse_k_range,
    recommend_k,
    split_dataset,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(REPO_ROOT / "configs" / "digits.yaml")
TINY = (
    "--encoder.init_args.dims", "[64, 32, 10]", "--pretrain.layerwise_steps", "0", "--pretrain.finetune_steps", "150",
    "--trainer.max_steps", "30", "--trainer.enable_progress_bar", "false",
)  # fmt: skip


# ----------------------------------------------------------------------------- generalizability


def hand_kl(q: list[list[float]]) -> float:
    """KL(P || Q) averaged over rows, P = (q^2 / f) normalised per row, f = column sums (DEC eqs. 2-3), by hand."""
    f = [sum(row[j] for row in q) for j in range(len(q[0]))]
    total = 0.0
    for row in q:
        w = [row[j] ** 2 / f[j] for j in range(len(row))]
        p = [v / sum(w) for v in w]
        total += sum(p[j] * math.log(p[j] / row[j]) for j in range(len(row)))
    return total / len(q)


def test_generalizability_matches_a_hand_computation() -> None:
    q_train = [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]
    q_holdout = [[0.6, 0.4], [0.5, 0.5]]
    g, loss_train, loss_holdout = generalizability(
        torch.tensor(q_train, dtype=torch.float64), torch.tensor(q_holdout, dtype=torch.float64)
    )
    # the first row by hand: f = (1.8, 1.2); w = (0.81/1.8, 0.01/1.2) = (0.45, 0.008333); p = (0.981818, 0.018182)
    p = (0.45 / 0.458333, 0.008333 / 0.458333)
    first_row = p[0] * math.log(p[0] / 0.9) + p[1] * math.log(p[1] / 0.1)
    assert first_row == pytest.approx(0.05444, abs=1e-4)
    assert loss_train == pytest.approx(hand_kl(q_train), rel=1e-6)
    assert loss_holdout == pytest.approx(hand_kl(q_holdout), rel=1e-6)
    assert g == pytest.approx(hand_kl(q_train) / hand_kl(q_holdout), rel=1e-6)
    assert (loss_train, loss_holdout, g) == pytest.approx((0.060993, 0.0049409, 12.3445), rel=1e-4)
    # P of the held-out split comes from its own Q: with the training split's f = (1.8, 1.2) it would be 0.01007
    assert loss_holdout != pytest.approx(0.010068, rel=0.1)


def test_confident_assignments_have_low_loss_and_uniform_ones_none() -> None:
    """Sharper Q -> P closer to Q; a uniform Q is its own P (loss 0, so G is undefined: NaN, not a crash)."""
    confident = torch.tensor([[0.99, 0.01], [0.01, 0.99]])
    unsure = torch.tensor([[0.6, 0.4], [0.4, 0.6]])
    assert dec_loss(confident) < dec_loss(unsure)
    uniform = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    assert dec_loss(uniform) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(generalizability(unsure, uniform)[0])


# ----------------------------------------------------------------------------- the rule


def test_recommend_k_is_the_k_before_the_sharpest_drop() -> None:
    ks = [6, 7, 8, 9, 10, 11, 12]
    g = [0.95, 0.94, 0.93, 0.92, 0.60, 0.58, 0.55]  # the paper's shape: a sharp drop from 9 to 10
    assert recommend_k(ks, g) == 9
    assert recommend_k(ks, [0.9, 0.5, 0.9, 0.5, 0.9, 0.9, 0.9]) == 6  # ties: the smallest K
    assert recommend_k([2, 4, 8], [0.8, 0.7, 0.4]) == 4  # consecutive K *tried*, not K+1
    assert recommend_k([3, 4, 5], [0.7, 0.8, 0.9]) == 5  # G never drops: the highest G
    assert recommend_k([3, 4, 5, 6], [0.9, math.nan, 0.5, 0.4]) == 5  # NaN pairs are skipped
    with pytest.raises(ValueError, match="one G per K"):
        recommend_k([3, 4], [0.5])
    # the printed summary names the drop behind the pick, so a drop within noise shows as such
    scores = [KScore(k, v, 0.1, 0.1, 0.5 - k / 100, math.nan, math.nan, 10, 1.0) for k, v in zip(ks, g, strict=True)]
    summary = SelectKResult(scores, recommend_k(ks, g)).summary()
    assert summary.startswith("recommended K=9 (rule: the K just before the sharpest drop of generalizability")
    assert summary.endswith("G 0.920 at K=9 -> 0.600 at K=10; highest silhouette at K=6")


# ----------------------------------------------------------------------------- input checks


def test_k_ranges_parse() -> None:
    assert parse_k_range("5:15") == list(range(5, 16))
    assert parse_k_range(" 4 : 12 : 4 ") == [4, 8, 12]
    assert parse_k_range("10,4,4,8") == [4, 8, 10]
    assert parse_k_range(range(2, 5)) == [2, 3, 4]
    assert parse_k_range(np.array([3, 5])) == [3, 5]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1:5", "must be >= 2"),
        ("0,3", "must be >= 2"),
        ("7", "at least two K values"),
        ("7:7", "at least two K values"),
        (7, "at least two K values"),
        ([], "at least two K values"),
        ("15:5", "START <= STOP"),
        ("5:15:0", "STEP >= 1"),
        ("5-15", "not understood"),
        ("a:b", "not understood"),
        ("", "not understood"),
        ([3, 4.5], "must be integers"),
    ],
)
def test_bad_k_ranges_are_refused(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_k_range(spec)


def test_k_larger_than_a_split_is_refused() -> None:
    check_ks([2, 20], n_train=80, n_holdout=20)
    with pytest.raises(ConfigError, match=r"K=21 is more than the samples of the held-out split \(20\)"):
        check_ks([2, 21], n_train=80, n_holdout=20)
    with pytest.raises(ConfigError, match=r"K=11 is more than the samples of the training split \(10\)"):
        check_ks([2, 11], n_train=10, n_holdout=90)


def test_split_is_seeded_disjoint_and_reindexed() -> None:
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    dataset = IndexedDataset(x, np.arange(100) % 3)
    train, holdout = split_dataset(dataset, 0.25, seed=0)
    assert (len(train), len(holdout)) == (75, 25)
    rows = torch.cat([train.x[:, 0], holdout.x[:, 0]]).long() // 2
    assert sorted(rows.tolist()) == list(range(100))  # every sample once
    assert torch.equal(holdout.y, rows[75:] % 3)  # labels follow their rows
    again, _ = split_dataset(dataset, 0.25, seed=0)
    other, _ = split_dataset(dataset, 0.25, seed=1)
    assert torch.equal(again.x, train.x) and not torch.equal(other.x, train.x)
    for bad in (0, 1, 1.5, -0.1, "0.2"):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            split_dataset(dataset, bad, seed=0)
    with pytest.raises(ConfigError, match="empty split"):
        split_dataset(IndexedDataset(x[:3]), 0.1, seed=0)


# ----------------------------------------------------------------------------- the command


def test_cli_writes_one_row_per_k_and_the_recommendation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "select_k"
    cli = run_cli(["select-k", "--config", DIGITS, "--k", "3:6", *TINY, "--output_dir", str(out)])
    with open(out / "select_k.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["k"]) for r in rows] == [3, 4, 5, 6]
    g = [float(r["generalizability"]) for r in rows]
    assert all(0.3 < v < 3 for v in g)
    for r in rows:  # G is the ratio of the two losses written beside it
        assert float(r["generalizability"]) == pytest.approx(
            float(r["loss_train"]) / float(r["loss_holdout"]), rel=1e-4
        )
        assert -1 <= float(r["silhouette"]) <= 1 and 0 < float(r["acc"]) <= 1 and 0 <= float(r["nmi"]) <= 1
        assert int(r["steps"]) == 30
    picked = [int(r["k"]) for r in rows if r["recommended"] == "1"]
    assert picked == [recommend_k([3, 4, 5, 6], g)] == [cli.result.recommended_k]
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith(f"recommended K={picked[0]} (rule: the K just before the sharpest drop")
    assert sum(line.startswith("K=") for line in lines) == 4  # one progress line per K
    # TensorBoard: one scalar per K, K as the step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out))
    events.Reload()
    steps = [e.step for e in events.Scalars("select_k/generalizability")]
    assert steps == [3, 4, 5, 6]
    assert [e.value for e in events.Scalars("select_k/generalizability")] == pytest.approx(g, rel=1e-4)
    assert events.Scalars("select_k/recommended_k")[0].value == picked[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--k", "1:4"), "K values must be >= 2"),
        (("--k", "5"), "at least two K values"),
        (("--k", "five:ten"), "not understood"),
        (("--k", "3:400"), "K=400 is more than the samples of the held-out split (359)"),
        (("--holdout", "1.5"), "strictly between 0 and 1"),
        (("--ckpt_path", "DEC.ckpt"), "takes no --ckpt_path"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["select-k", "--config", DIGITS, *TINY, *args, "--output_dir", str(tmp_path / "out")])
    assert str(exit_info.value).startswith("dec-lightning: error: ") and message in str(exit_info.value)
    assert not (tmp_path / "out").exists()  # refused before any training or writing


# ----------------------------------------------------------------------------- the estimator


def test_estimator_select_k(tmp_path: Path) -> None:
    x, y = load_digits(return_X_y=True)
    dec = DEC(hidden_dims=(32,), embedding_dim=5, pretrain_steps=60, cluster_steps=20, update_interval=10, n_init=2)
    result = dec.select_k(x[:600] / 16.0, y[:600], ks=[3, 5], holdout=0.3, csv_path=tmp_path / "k.csv")
    assert result.ks == [3, 5] and result.recommended_k in (3, 5)
    assert len((tmp_path / "k.csv").read_text().splitlines()) == 1 + 2
    assert all(s.steps == 20 and not math.isnan(s.acc) for s in result.scores)
    assert not hasattr(dec, "module_")  # choosing K does not fit the estimator
    dec.set_params(log_dir=tmp_path / "logs")
    again = dec.select_k(x[:600] / 16.0, ks=[3, 5], holdout=0.3)  # seeded: the same table without labels
    assert [s.generalizability for s in again.scores] == pytest.approx([s.generalizability for s in result.scores])
    assert all(math.isnan(s.acc) for s in again.scores)
    assert list((tmp_path / "logs" / "select_k").glob("version_0/events.out.tfevents.*"))  # the table, K as step
    with pytest.raises(ConfigError, match="must be >= 2"):
        dec.select_k(x[:100], ks="1:3")
    with pytest.raises(ConfigError, match="more than the samples"):
        dec.select_k(x[:100], ks="2:50", holdout=0.2)
