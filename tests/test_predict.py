"""``dec-lightning predict``: a trained checkpoint assigns new data, written atomically."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from dec_lightning.cli import predict as predict_module
from dec_lightning.cli.main import main, run_cli
from dec_lightning.cli.predict import ASSIGNMENTS_FILE, SOFT_ASSIGNMENTS_FILE, write_predictions
from dec_lightning.data.validation import ConfigError, DECInputError, MissingFileError
from dec_lightning.files import atomic_write, atomic_write_all, current_umask
from dec_lightning.modules import DEC

torch.set_num_threads(1)

CONFIG = """\
seed_everything: 0
encoder:
  class_path: dec_lightning.encoders.MLPEncoder
  init_args:
    dims: [64, 32, 10]
data:
  class_path: dec_lightning.data.DigitsDataModule
  init_args:
    batch_size: 256
pretrain:
  finetune_steps: 60
  optimizer:
    class_path: torch.optim.Adam
    init_args:
      lr: 0.001
model:
  n_clusters: 10
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 24
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: dec_lightning.callbacks.KMeansInit
      init_args:
        n_init: 3
    - class_path: dec_lightning.callbacks.TargetDistributionRefresh
      init_args:
        update_interval: 5
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, DEC]:
    """``(config, DEC checkpoint, trained model)`` from one short ``dec-lightning run``."""
    root = tmp_path_factory.mktemp("run")
    config = root / "config.yaml"
    config.write_text(CONFIG.format(root=root))
    cli = run_cli(["run", "--config", str(config)])
    checkpoint = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert checkpoint.is_file()
    return config, checkpoint, cli.model


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target


def _soft_assignments(model: DEC, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _read_assignments(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    with path.open() as f:
        rows = list(csv.reader(f))
    table = np.array(rows[1:], dtype=np.float64)
    return rows[0], table[:, 0].astype(int), table[:, 1].astype(int), table[:, 2].astype(np.float32)


def test_predict_round_trip_on_the_training_data(trained, digits, tmp_path: Path) -> None:
    config, checkpoint, model = trained
    x, _ = digits
    cli = run_cli(["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path)])

    header, index, labels, max_probability = _read_assignments(tmp_path / ASSIGNMENTS_FILE)
    q = np.load(tmp_path / SOFT_ASSIGNMENTS_FILE)
    expected = _soft_assignments(model, x)
    assert header == ["index", "label", "max_probability"]
    np.testing.assert_array_equal(index, np.arange(len(x)))
    assert q.shape == (len(x), 10) and q.dtype == np.float32
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_array_equal(labels, model.labels.numpy())  # the run's own final assignment
    np.testing.assert_array_equal(max_probability, q.max(axis=1))  # exact: %.9g round-trips float32
    # digits has labels, so the predict run scores itself like the training run did
    assert cli.predictions.scores == pytest.approx(model.scores)
    assert sorted(os.listdir(tmp_path)) == [ASSIGNMENTS_FILE, SOFT_ASSIGNMENTS_FILE]  # no temporary files left


def test_predict_new_data_from_a_csv(trained, digits, tmp_path: Path) -> None:
    config, checkpoint, model = trained
    rows = digits[0][100:150][::-1]
    data = tmp_path / "new.csv"
    np.savetxt(data, rows, delimiter=",", header=",".join(f"px{i}" for i in range(64)), comments="")
    out = tmp_path / "out"
    args = ["--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(out)]
    cli = run_cli(["predict", *args, "--data", "ArrayDataModule", "--data.data", str(data)])

    _, index, labels, max_probability = _read_assignments(out / ASSIGNMENTS_FILE)
    expected = _soft_assignments(model, np.ascontiguousarray(rows))
    np.testing.assert_array_equal(index, np.arange(50))
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose(max_probability, expected.max(axis=1), atol=1e-6)
    np.testing.assert_allclose(np.load(out / SOFT_ASSIGNMENTS_FILE).sum(axis=1), 1.0, atol=1e-5)
    assert cli.predictions.scores == {}  # no labels in the file


@pytest.mark.parametrize(
    ("case", "kind", "fragments"),
    [
        ("n_clusters", ConfigError, ["holds 10 clusters", "model.n_clusters is 5"]),
        (
            "pretraining",
            ConfigError,
            ["not a DEC clustering checkpoint", "pretraining checkpoint", "--model.pretrained"],
        ),
        ("missing", MissingFileError, ["DEC checkpoint not found", "dec-lightning cluster"]),
        ("garbage", ConfigError, ["cannot read as a checkpoint"]),
        ("features", ConfigError, ["20 features", "encoder.init_args.dims[0]"]),
    ],
)
def test_predict_errors_are_clear(trained, digits, tmp_path: Path, case: str, kind: type, fragments: list[str]) -> None:
    config, checkpoint, _ = trained
    extra: list[str] = []
    if case == "n_clusters":
        extra = ["--model.n_clusters", "5"]
    elif case == "pretraining":  # the layout of an `AutoencoderPretraining` checkpoint
        checkpoint = tmp_path / "pretrain.ckpt"
        encoder = {f"encoder.layers.0.{k}": v for k, v in torch.nn.Linear(64, 32).state_dict().items()}
        decoder = {f"decoder.layers.0.{k}": v for k, v in torch.nn.Linear(32, 64).state_dict().items()}
        torch.save({"state_dict": {**encoder, **decoder}, "hyper_parameters": {"dropout": 0.2}}, checkpoint)
    elif case == "missing":
        checkpoint = tmp_path / "nope.ckpt"
    elif case == "garbage":
        checkpoint = tmp_path / "garbage.ckpt"
        checkpoint.write_bytes(b"garbage")
    elif case == "features":
        data = tmp_path / "narrow.csv"
        np.savetxt(data, digits[0][:30, :20], delimiter=",")
        extra = ["--data", "ArrayDataModule", "--data.data", str(data)]
    args = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(kind) as excinfo:
        run_cli(args + extra)
    assert isinstance(excinfo.value, DECInputError)
    for fragment in fragments:
        assert fragment in str(excinfo.value)
    assert not (tmp_path / "o" / ASSIGNMENTS_FILE).exists()
    with pytest.raises(SystemExit) as exit_info:  # the console entry point prints it as one line
        main(args + extra)
    assert str(exit_info.value.code).startswith("dec-lightning: error: ")


def test_real_pretraining_checkpoint_is_refused_clearly(trained, tmp_path: Path) -> None:
    config, _, _ = trained
    checkpoint = next((config.parent / "pretrain").rglob("*.ckpt"))
    args = ["predict", "--config", str(config), "--ckpt_path", str(checkpoint), "--output_dir", str(tmp_path)]
    with pytest.raises(ConfigError) as excinfo:
        run_cli(args)
    # "pickled" while AutoencoderPretraining pickles its optimizer factory into the checkpoint
    assert "pretraining checkpoint" in str(excinfo.value) or "pickled Python objects" in str(excinfo.value)


def test_failed_write_leaves_previous_outputs_and_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    q = np.full((4, 2), 0.5, dtype=np.float32)
    q[:, 0] += np.array([0.1, -0.1, 0.2, -0.2], dtype=np.float32)
    q[:, 1] = 1 - q[:, 0]
    csv_path, npy_path = write_predictions(tmp_path, np.arange(4), q)
    before = (csv_path.read_bytes(), npy_path.read_bytes())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o666 & ~umask

    def broken_save(f, array, **kwargs) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(predict_module.np, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            write_predictions(tmp_path, np.arange(4), np.flip(q, axis=1))
    assert (csv_path.read_bytes(), npy_path.read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) == [ASSIGNMENTS_FILE, SOFT_ASSIGNMENTS_FILE]
    # the second file fails (3 indices for 4 rows) after the first was written: neither is replaced
    with pytest.raises(ValueError, match="zip"):
        write_predictions(tmp_path, np.arange(3), np.flip(q, axis=1))
    assert (csv_path.read_bytes(), npy_path.read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) == [ASSIGNMENTS_FILE, SOFT_ASSIGNMENTS_FILE]
    write_predictions(tmp_path, np.arange(4), np.flip(q, axis=1))
    np.testing.assert_array_equal(np.load(npy_path), np.flip(q, axis=1))


def test_atomic_write_fsyncs_and_keeps_the_old_file_when_writing_fails(tmp_path: Path, fsync_log: list[str]) -> None:
    path = tmp_path / "out.bin"
    synced = fsync_log
    atomic_write(path, lambda f: f.write(b"old"))
    assert path.read_bytes() == b"old"
    assert synced == ["file", "dir"]  # the content, then the rename

    def fails_midway(f) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails_midway)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]  # no temporary file left
    # several files: the second fails after the first was fully written, so neither is replaced
    other = tmp_path / "other.bin"
    with pytest.raises(OSError, match="disk full"):
        atomic_write_all([(other, lambda f: f.write(b"new")), (path, fails_midway)])
    assert path.read_bytes() == b"old" and not other.exists()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_writes_never_touch_the_process_umask(tmp_path: Path, monkeypatch) -> None:
    """os.umask can only read the mask by setting it, racing with other threads: the writers must not call it."""
    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027

        def forbidden(mask: int) -> int:
            raise AssertionError("os.umask called")

        with monkeypatch.context() as patch:
            patch.setattr(os, "umask", forbidden)
            csv_path, npy_path = write_predictions(tmp_path, np.arange(2), np.full((2, 2), 0.5, dtype=np.float32))
            atomic_write(tmp_path / "one.bin", lambda f: f.write(b"x"))
        for path in (csv_path, npy_path, tmp_path / "one.bin"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 less the umask, as open() gives
    finally:
        os.umask(previous)
    assert current_umask() == previous
