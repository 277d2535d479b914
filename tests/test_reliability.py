"""Reliability: clear errors on bad input, numerical safety, degenerate clusters, exact resume, determinism.

Everything runs on scikit-learn's bundled digits (1797 x 64) with a 64-32-10 encoder, so
the whole file takes seconds on one CPU thread.
"""

from __future__ import annotations

import functools
import runpy
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.datasets import load_digits
from torch.utils.data import DistributedSampler

import dec_lightning
from dec_lightning.callbacks import CentroidReinit, KMeansInit, TargetDistributionRefresh
from dec_lightning.cli.main import main, run_cli
from dec_lightning.data import ArrayDataModule, DigitsDataModule, load_array_file
from dec_lightning.data.base import EpochShuffleSampler
from dec_lightning.data.validation import (
    ConfigError,
    DataValidationError,
    DECInputError,
    MissingFileError,
    require_file,
    validate_arrays,
)
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import (
    DEC,
    AutoencoderPretraining,
    kl_divergence,
    load_encoder_weights,
    soft_assignment,
    target_distribution,
)

torch.set_num_threads(1)

DIMS = [64, 32, 10]
K = 10
BATCH = 256
STEPS_PER_EPOCH = -(-1797 // BATCH)  # 8, the last one partial
PACKAGE_DIR = Path(dec_lightning.__file__).parent
DIGITS_CONFIG = str(PACKAGE_DIR.parent / "configs" / "digits.yaml")
QUICK_REFRESH = str(PACKAGE_DIR.parent / "tests" / "configs" / "digits_quick_refresh.yaml")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().data / 16.0).astype(np.float32)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoder weights from a short pretraining, saved once for every clustering test."""
    L.seed_everything(0)
    encoder = MLPEncoder(DIMS)
    module = AutoencoderPretraining(encoder, finetune_steps=100, optimizer=lambda p: torch.optim.Adam(p, 1e-3))
    _trainer(max_steps=100).fit(module, datamodule=DigitsDataModule(batch_size=BATCH))
    path = tmp_path_factory.mktemp("pretrain") / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    return path


def _trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _clustering(pretrained: Path, seed: int = 0, reinit: bool = True, **dec_kwargs) -> tuple[DEC, list[L.Callback]]:
    L.seed_everything(seed)
    model = DEC(MLPEncoder(DIMS), n_clusters=K, pretrained=str(pretrained), **dec_kwargs)
    # update_interval 5 does not divide the 8 steps of an epoch: refreshes straddle epoch boundaries
    callbacks = [KMeansInit(init="kmeans", n_init=3), TargetDistributionRefresh(update_interval=5)]
    if reinit:
        callbacks.append(CentroidReinit(n_init=3))
    return model, callbacks


def assert_clear_error(excinfo: pytest.ExceptionInfo, kind: type[Exception], *fragments: str) -> None:
    """One user-facing error: the right type, the key facts in the message, raised by our own checks."""
    err = excinfo.value
    assert isinstance(err, kind) and isinstance(err, DECInputError), repr(err)
    message = str(err)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # no chained exception is printed under it ...
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    # ... and it comes from a check in this package, not from deep inside torch or numpy
    assert PACKAGE_DIR in Path(str(excinfo.traceback[-1].path)).parents


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("x", "fragments"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), ["1 feature values are NaN, infinite"]),
        (np.array([[0.0, np.inf], [-np.inf, 2.0]]), ["2 feature values are NaN, infinite"]),
        (np.array([[1e300, 0.0], [1.0, 2.0]]), ["beyond float32's range"]),
        (np.zeros(5), ["must be 2-D", "shape (5,)", "reshape"]),
        (np.zeros((4, 8, 8)), ["must be 2-D", "shape (4, 8, 8)", "flatten"]),
        (np.array([["a", "b"], ["c", "d"]]), ["real numbers", "<U1"]),
        (np.array([[1, None], [2, 3]], dtype=object), ["real numbers", "object"]),
        (np.zeros((2, 2), dtype=complex), ["real numbers", "complex"]),
        (np.zeros((0, 5)), ["empty input", "(0, 5)"]),
        (np.zeros((5, 0)), ["empty input", "(5, 0)"]),
    ],
)
def test_bad_features_give_one_clear_error(x: np.ndarray, fragments: list[str]) -> None:
    with pytest.raises(DataValidationError) as excinfo:
        ArrayDataModule(x, batch_size=2).setup("fit")
    assert_clear_error(excinfo, DataValidationError, "ArrayDataModule(data=<array>)", *fragments)


def test_nan_in_sparse_features_is_caught() -> None:
    import scipy.sparse as sp

    x = sp.random(20, 5, density=0.5, format="csr", random_state=0)
    x.data[3] = np.nan
    with pytest.raises(DataValidationError) as excinfo:
        validate_arrays(x)
    assert_clear_error(excinfo, DataValidationError, "1 feature values are NaN")


@pytest.mark.parametrize(
    ("y", "fragments"),
    [
        (np.arange(9), ["labels of shape (9,) for 10 samples"]),
        (np.full(10, 0.5), ["labels must be integers", "float64"]),
        (np.r_[np.zeros(9), np.nan], ["labels must be integers", "NaN"]),
        (np.r_[np.zeros(9), -3], ["-1 for unknown", "-3"]),
    ],
)
def test_bad_labels_give_one_clear_error(y: np.ndarray, fragments: list[str]) -> None:
    with pytest.raises(DataValidationError) as excinfo:
        ArrayDataModule(np.zeros((10, 3)), labels=y).setup("fit")
    assert_clear_error(excinfo, DataValidationError, *fragments)


def test_valid_labels_pass_and_keep_unknowns() -> None:
    x, y = validate_arrays(np.ones((4, 2), dtype=np.float64), np.array([[0.0], [1.0], [-1.0], [2.0]]))
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(y, [0, 1, -1, 2])


@pytest.mark.parametrize(
    ("text", "kwargs", "fragments"),
    [
        ("a,b,name\n1,2,x\n3,4,y\n", {}, ["not a numeric table", "could not convert string 'x'", "column 3"]),
        ("1,2,3\n4,,6\n", {}, ["not a numeric table", "impute missing values"]),
        ("1,2,3\n4,5\n", {}, ["not a numeric table", "number of columns changed"]),
        ("a,b,c\n", {}, ["no data rows"]),
        ("", {}, ["no data rows"]),
        ("1,2,3\n4,5,6\n", {"label_column": 5}, ["label_column=5", "3 columns"]),
        ("a,b\n1,2\n", {"label_column": "y"}, ["no column named 'y'", "['a', 'b']"]),
    ],
)
def test_bad_csv_gives_one_clear_error(tmp_path: Path, text: str, kwargs: dict, fragments: list[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    with pytest.raises(DataValidationError) as excinfo:
        ArrayDataModule(str(path), **kwargs).setup("fit")
    assert_clear_error(excinfo, DataValidationError, str(path), *fragments)


def test_csv_with_header_and_label_column_loads(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("f1,f2,label\n0.5,1.5,1\n2.5,3.5,0\n")
    datamodule = ArrayDataModule(str(path), label_column="label")
    datamodule.setup("fit")
    assert datamodule.input_dim == 2
    np.testing.assert_array_equal(datamodule.dataset.y.numpy(), [1, 0])


def test_unreadable_files_give_one_clear_error(tmp_path: Path) -> None:
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([1, "a", None], dtype=object), allow_pickle=True)
    with pytest.raises(DataValidationError) as excinfo:
        load_array_file(objects)
    assert_clear_error(excinfo, DataValidationError, str(objects), "cannot read as .npy")

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(DataValidationError) as excinfo:
        load_array_file(garbage)
    assert_clear_error(excinfo, DataValidationError, str(garbage), "cannot read as .npz")

    other = tmp_path / "data.parquet"
    other.write_bytes(b"")
    with pytest.raises(DataValidationError) as excinfo:
        load_array_file(other)
    assert_clear_error(excinfo, DataValidationError, "unsupported file type '.parquet'")


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError) as excinfo:
        ArrayDataModule(str(missing)).setup("fit")
    assert_clear_error(excinfo, MissingFileError, "data file not found", str(missing), "data.init_args.data")

    with pytest.raises(FileNotFoundError) as excinfo:
        ArrayDataModule(np.zeros((3, 2)), labels=str(missing)).setup("fit")
    assert_clear_error(excinfo, MissingFileError, "labels file not found", "data.init_args.labels")

    with pytest.raises(FileNotFoundError) as excinfo:
        require_file(tmp_path, "MNIST training images", "set DEC_DATA_DIR to the folder holding MNIST/raw")
    assert_clear_error(excinfo, MissingFileError, "a directory, not a file", "set DEC_DATA_DIR")

    model = DEC(MLPEncoder(DIMS), n_clusters=K, pretrained=str(missing))
    with pytest.raises(FileNotFoundError) as excinfo:
        _trainer(max_steps=1).fit(model, datamodule=DigitsDataModule())
    assert_clear_error(excinfo, MissingFileError, "pretrained encoder not found", "dec-lightning pretrain")


def test_checkpoint_with_pickled_objects_is_refused_with_a_working_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = MLPEncoder(DIMS)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    path = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"optimizer": functools.partial(torch.optim.Adam)}}, path)
    with pytest.raises(ValueError) as excinfo:
        load_encoder_weights(MLPEncoder(DIMS), path)
    assert_clear_error(excinfo, ConfigError, str(path), "functools.partial", "not loaded for safety")
    # the hint's command really extracts the encoder weights
    command = str(excinfo.value).split('python -c "', 1)[1].rstrip('"')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resave.py").write_text(command)
    runpy.run_path(str(tmp_path / "resave.py"))
    restored = MLPEncoder(DIMS)
    load_encoder_weights(restored, tmp_path / "encoder.pt")
    for key, value in encoder.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_n_clusters_below_two_names_the_config_key() -> None:
    with pytest.raises(ValueError) as excinfo:
        DEC(MLPEncoder(DIMS), n_clusters=1)
    assert_clear_error(excinfo, ConfigError, "model.n_clusters must be >= 2", "got 1")


def test_more_clusters_than_samples_fails_before_training(digits: np.ndarray) -> None:
    model = DEC(MLPEncoder(DIMS), n_clusters=K)
    trainer = _trainer(max_steps=5, callbacks=[KMeansInit(init="kmeans", n_init=1), TargetDistributionRefresh(2)])
    with pytest.raises(ValueError) as excinfo:
        trainer.fit(model, datamodule=ArrayDataModule(digits[:7], batch_size=4))
    assert_clear_error(excinfo, ConfigError, "model.n_clusters=10", "only 7 samples")
    assert trainer.global_step == 0


def test_input_dim_mismatch_names_the_encoder_key(digits: np.ndarray) -> None:
    model = DEC(MLPEncoder(DIMS), n_clusters=K)
    trainer = _trainer(max_steps=5, callbacks=[KMeansInit(init="kmeans", n_init=1), TargetDistributionRefresh(2)])
    with pytest.raises(ValueError) as excinfo:
        trainer.fit(model, datamodule=ArrayDataModule(digits[:, :20]))
    assert_clear_error(excinfo, ConfigError, "20 features", "expects 64", "encoder.init_args.dims[0]")
    assert trainer.global_step == 0


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "1 feature values are NaN"),  # raised in the data module during fit
        (["--model.n_clusters", "1"], "model.n_clusters must be >= 2"),  # raised while building the model
        (["--data.batch_size", "0"], "data.init_args.batch_size must be >= 1"),  # wrapped by jsonargparse
    ],
)
def test_cli_prints_input_errors_as_one_line(tmp_path: Path, pretrained: Path, extra: list[str], fragment: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,nan\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "encoder:\n  class_path: dec_lightning.encoders.MLPEncoder\n  init_args:\n    dims: [2, 4, 2]\n"
        f"trainer:\n  logger: false\n  enable_checkpointing: false\n  default_root_dir: {tmp_path}\n"
    )
    args = ["cluster", "--config", str(config), "--data", "ArrayDataModule", "--data.data", str(bad)]
    with pytest.raises(SystemExit) as excinfo:
        main([*args, "--model.n_clusters", "2", "--model.pretrained", str(pretrained), *extra])
    message = str(excinfo.value.code)
    assert message.startswith("dec-lightning: error: ") and fragment in message
    assert "\n" not in message and "Traceback" not in message


def _digits_cli_args(command: str, *extra: str, steps: int = 8) -> list[str]:
    """configs/digits.yaml shrunk to seconds (64-32-10 encoder, a few steps); logs under ``runs/`` in the cwd."""
    return [
        command,
        "--config",
        DIGITS_CONFIG,
        "--config",
        QUICK_REFRESH,
        "--encoder.init_args.dims",
        str(DIMS),
        "--pretrain.layerwise_steps",
        "0",
        "--pretrain.finetune_steps",
        "8",
        "--trainer.max_steps",
        str(steps),
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")
@pytest.mark.parametrize(
    ("command", "extra", "fragments"),
    [
        ("run", ["--encoder.init_args.dims", "[20, 500, 500, 2000, 10]"], ["64 features", "expects 20"]),
        ("pretrain", ["--encoder.init_args.dims", "[20, 10]"], ["64 features", "expects 20"]),
        ("run", ["--model.n_clusters", "5000"], ["model.n_clusters=5000", "only 1797 samples"]),
        ("cluster", ["--model.n_clusters", "5000", "--model.pretrained", "PRETRAINED"], ["only 1797 samples"]),
        ("cluster", ["--model.pretrained", "missing.pt"], ["pretrained encoder not found"]),
    ],
)
def test_refused_cli_run_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pretrained: Path,
    command: str,
    extra: list[str],
    fragments: list[str],
) -> None:
    """Bad input is refused before any logger or checkpoint folder exists: no empty ``runs/.../version_N`` left."""
    monkeypatch.chdir(tmp_path)
    args = _digits_cli_args(command, *(str(pretrained) if e == "PRETRAINED" else e for e in extra))
    with pytest.raises(DECInputError) as excinfo:
        run_cli(args)
    for fragment in fragments:
        assert fragment in str(excinfo.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == []


class _Payload:
    """Pickles as a call that leaves a marker file: proof of whether a load ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")
def test_resume_refuses_a_checkpoint_that_pickles_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cluster --ckpt_path``: the checkpoint Lightning wrote resumes; one that pickles an object is refused unread."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    cli = run_cli(_digits_cli_args("run"))
    checkpoint = Path(cli.trainer.checkpoint_callback.best_model_path)
    saved = torch.load(checkpoint, weights_only=True)  # what Lightning writes holds no pickled code
    resumed = run_cli(_digits_cli_args("cluster", "--ckpt_path", str(checkpoint), steps=16))
    assert resumed.trainer.global_step == 16 > saved["global_step"]

    marker = tmp_path / "code_ran"
    saved["hyper_parameters"]["payload"] = _Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(saved, evil)
    monkeypatch.chdir(second)
    args = _digits_cli_args("cluster", "--ckpt_path", str(evil), steps=16)
    with pytest.raises(ConfigError) as excinfo:
        run_cli(args)
    assert_clear_error(excinfo, ConfigError, str(evil), "pickled Python objects", "not loaded for safety")
    with pytest.raises(SystemExit) as exit_info:  # the console entry point: one line, no traceback
        main(args)
    assert str(exit_info.value.code).startswith("dec-lightning: error: ") and "\n" not in str(exit_info.value.code)
    assert not marker.exists()
    assert list(second.iterdir()) == []  # refused before any logger or checkpoint folder was made
    # the test is not vacuous: an unsafe load of that file does run the payload
    torch.load(evil, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------- numerical safety


def test_q_and_p_stay_finite_for_large_inputs_and_far_centres(digits: np.ndarray, pretrained: Path) -> None:
    encoder = MLPEncoder(DIMS)
    encoder.load_state_dict(torch.load(pretrained))
    model = DEC(encoder, n_clusters=K)
    x = torch.from_numpy(digits * 1000)
    with torch.no_grad():
        z = model.embed(x)
        model.centers.copy_(z[torch.arange(K) * 100])
        model.centers[3] = z.mean(0) + 1e6  # a centre far from all data: an empty cluster
    q = model(x)
    p = target_distribution(q)
    assert z.abs().max() > 1e3  # the embedding really is large
    for t in (q, p):
        assert torch.isfinite(t).all()
        torch.testing.assert_close(t.sum(1), torch.ones(len(x)))
    assert q[:, 3].max() < 1e-6 and p[:, 3].max() < 1e-6  # the far cluster is empty, not NaN
    assert (q.argmax(1) != 3).all()
    loss = kl_divergence(p.detach(), q)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(param.grad).all() for param in model.parameters())


def test_gradients_finite_when_a_point_sits_on_a_centre() -> None:
    # k-means puts a singleton cluster's centre exactly on its point: distance 0
    z = torch.randn(40, 10, requires_grad=True)
    centers = z[:5].detach().clone().requires_grad_(True)
    q = soft_assignment(z, centers)
    kl_divergence(target_distribution(q.detach()), q).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(centers.grad).all()


def test_training_on_inputs_scaled_by_1000_stays_finite(digits: np.ndarray, pretrained: Path) -> None:
    seen: list[tuple[float, bool, bool]] = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            q = module(batch[0])
            seen.append(
                (float(outputs["loss"]), bool(torch.isfinite(q).all()), bool(torch.isfinite(module.target).all()))
            )

    model, callbacks = _clustering(pretrained, reinit=False)
    _trainer(max_steps=20, callbacks=[*callbacks, Watch()]).fit(model, datamodule=ArrayDataModule(digits * 1000))
    assert len(seen) == 20
    assert all(np.isfinite(loss) and q_ok and p_ok for loss, q_ok, p_ok in seen)
    assert torch.isfinite(model.centers).all()


# ---------------------------------------------------------------- degenerate clusters


def _q_with_sizes(sizes: list[int]) -> torch.Tensor:
    """Soft assignments whose argmax gives clusters of the given sizes."""
    labels = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return torch.nn.functional.one_hot(labels, len(sizes)).float() * 0.9 + 0.1 / len(sizes)


def test_empty_and_near_empty_clusters_warn_once_per_change() -> None:
    model = DEC(MLPEncoder([4, 3]), n_clusters=4)  # near-empty: fewer than 0.1 * N / K samples
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.update_target(_q_with_sizes([100, 100, 100, 100]))  # balanced: silent
        assert caught == [] and model.min_cluster_size == 0.25
        model.update_target(_q_with_sizes([150, 146, 100, 4]))  # 4 < 0.1 * 400 / 4 = 10
        assert len(caught) == 1
        assert "1 of 4 clusters are near-empty" in str(caught[0].message) and "3: 4" in str(caught[0].message)
        assert model.min_cluster_size == pytest.approx(4 / 400)
        model.update_target(_q_with_sizes([150, 146, 100, 4]))  # same state: not repeated
        assert len(caught) == 1
        model.update_target(_q_with_sizes([200, 100, 100, 0]))
        assert len(caught) == 2
        assert "1 of 4 clusters are empty [3]" in str(caught[1].message)
        assert "CentroidReinit" in str(caught[1].message)
        assert model.min_cluster_size == 0.0
        assert torch.isfinite(model.target).all()


def test_near_empty_fraction_is_validated() -> None:
    with pytest.raises(ValueError) as excinfo:
        DEC(MLPEncoder([4, 3]), n_clusters=2, near_empty_fraction=1.5)
    assert_clear_error(excinfo, ConfigError, "model.near_empty_fraction")


def test_centroid_reinit_recovers_an_emptied_cluster(pretrained: Path) -> None:
    lost = 4
    sizes_after_sabotage: list[torch.Tensor] = []

    class EmptyACluster(L.Callback):
        """At the end of the first epoch, throw one centre far away and refresh P: it empties."""

        def on_train_epoch_end(self, trainer, module) -> None:
            if trainer.current_epoch == 0:
                with torch.no_grad():
                    module.centers[lost] += 1e4
                refresh.refresh(trainer, module)
                sizes_after_sabotage.append(torch.bincount(module.labels, minlength=K))

    model, callbacks = _clustering(pretrained)
    refresh = callbacks[1]
    trainer = _trainer(max_epochs=2, callbacks=[*callbacks, EmptyACluster()])
    with pytest.warns(UserWarning, match=rf"clusters are empty \[{lost}\]"):
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=BATCH))
    assert sizes_after_sabotage[0][lost] == 0
    assert callbacks[2].reinit_count == 1
    final_sizes = torch.bincount(model.labels, minlength=K)
    assert (final_sizes > 0).all(), final_sizes
    assert trainer.callback_metrics["cluster/min_size"] > 0


# ---------------------------------------------------------------- determinism and exact resume


def test_epoch_shuffle_sampler_depends_only_on_seed_and_epoch() -> None:
    data = range(100)
    a, b = EpochShuffleSampler(data, seed=3), EpochShuffleSampler(data, seed=3)
    first = list(a)
    torch.rand(1000)  # global RNG use must not matter: it is not in checkpoints
    assert list(b) == first and sorted(first) == list(range(100))
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    # a DistributedSampler, so Lightning keeps it under DDP instead of substituting its own
    assert isinstance(a, DistributedSampler)
    assert list(EpochShuffleSampler(data, seed=4)) != first


def test_epoch_shuffle_sampler_resumes_at_the_run_position() -> None:
    """Under a trainer the order is placed by the batches drawn so far: batch b is batch b mod B of epoch b // B."""
    seen = [0]
    sampler = EpochShuffleSampler(range(10), seed=3, batch_size=4, batches_seen=lambda: seen[0])  # B = 3
    epochs = {}
    for e in (0, 1):
        plain = EpochShuffleSampler(range(10), seed=3)
        plain.set_epoch(e)
        epochs[e] = list(plain)
    assert list(sampler) == epochs[0]
    seen[0] = 1
    assert list(sampler) == epochs[0][4:]  # resumed after one batch: the rest of epoch 0
    seen[0] = 3
    assert list(sampler) == epochs[1]
    seen[0] = 5
    assert list(sampler) == epochs[1][8:]  # the last, partial batch of epoch 1


def test_training_batches_cover_each_epoch_once(pretrained: Path) -> None:
    """In a plain run with max_steps every epoch is one full permutation, in order, ending with the partial batch."""
    seen: list[list[int]] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            seen.append(batch[2].tolist())

    dm = DigitsDataModule(batch_size=BATCH)
    model, callbacks = _clustering(pretrained, reinit=False)
    _trainer(max_steps=3 * STEPS_PER_EPOCH, callbacks=[*callbacks, Record()]).fit(model, datamodule=dm)
    assert [len(b) for b in seen] == ([BATCH] * (STEPS_PER_EPOCH - 1) + [1797 % BATCH]) * 3
    for e in range(3):
        epoch = [i for b in seen[e * STEPS_PER_EPOCH : (e + 1) * STEPS_PER_EPOCH] for i in b]
        plain = EpochShuffleSampler(range(1797), seed=0)
        plain.set_epoch(e)
        assert epoch == list(plain)  # epoch e's permutation, in order
    assert seen[0] != seen[STEPS_PER_EPOCH]  # each epoch its own order


def test_same_seed_gives_identical_labels(pretrained: Path) -> None:
    runs = []
    for seed in (0, 0, 1):
        model, callbacks = _clustering(pretrained, seed=seed)
        _trainer(max_epochs=2, callbacks=callbacks).fit(model, datamodule=DigitsDataModule(batch_size=BATCH))
        runs.append(model)
    assert torch.equal(runs[0].labels, runs[1].labels)
    assert torch.equal(runs[0].centers, runs[1].centers)
    assert torch.equal(runs[0].target, runs[1].target)
    assert not torch.equal(runs[0].centers, runs[2].centers)  # the seed matters, so the check can fail


class Crash(L.Callback):
    """Simulates a killed job in the middle of an epoch."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_from_epoch_checkpoint_reproduces_the_uninterrupted_run(
    pretrained: Path, tmp_path: Path, num_workers: int
) -> None:
    """Crash in epoch 2, resume from the end-of-epoch-1 checkpoint: the same labels as a run without a crash.

    What makes this exact: P, labels, refresh count and KMeansInit.done are in the checkpoint;
    the refresh schedule follows the restored global step; and the shuffling order depends
    only on (seed, epoch) (`EpochShuffleSampler`), not on the global RNG state, which Lightning
    does not checkpoint. Checkpoints are taken at epoch ends, Lightning's default: resuming
    from a mid-epoch one replays the epoch's first batches (Lightning warns about it).
    With worker processes the loader is built before Lightning's ``set_epoch``, so the
    data module gives the sampler the epoch itself.
    """
    epochs = 4
    reference, callbacks = _clustering(pretrained)
    _trainer(max_epochs=epochs, callbacks=callbacks).fit(
        reference, datamodule=DigitsDataModule(batch_size=BATCH, num_workers=num_workers)
    )

    crashed, callbacks = _clustering(pretrained)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True)
    crash_step = 2 * STEPS_PER_EPOCH + 3
    trainer = _trainer(
        max_epochs=epochs, enable_checkpointing=True, callbacks=[*callbacks, checkpoint, Crash(crash_step)]
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(crashed, datamodule=DigitsDataModule(batch_size=BATCH, num_workers=num_workers))
    assert crashed.refresh_count > 0 and trainer.global_step == crash_step
    path = tmp_path / f"epoch=1-step={2 * STEPS_PER_EPOCH}.ckpt"
    saved = torch.load(path, weights_only=True)  # resumable without unpickling code
    assert saved["callbacks"]["KMeansInit"] == {"done": True}
    assert saved["dec_state"]["target"].shape == (1797, K) and saved["dec_state"]["labels"].shape == (1797,)

    resumed, callbacks = _clustering(pretrained, seed=0)
    _trainer(max_epochs=epochs, callbacks=callbacks).fit(
        resumed, datamodule=DigitsDataModule(batch_size=BATCH, num_workers=num_workers), ckpt_path=path
    )
    assert resumed.refresh_count == reference.refresh_count
    assert torch.equal(resumed.labels, reference.labels)
    assert torch.equal(resumed.centers, reference.centers)
    assert torch.equal(resumed.target, reference.target)
