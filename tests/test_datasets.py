"""MNIST, USPS and Reuters DataModules on the real files (skipped when absent), plus offline logic."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dec_lightning.data import (
    ArrayDataModule,
    MNISTDataModule,
    ReutersDataModule,
    USPSDataModule,
    build_reuters10k,
)
from dec_lightning.data.reuters import REUTERS10K_FILE

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DEC_DATA_DIR", REPO.parent / "shared" / "data"))
CONFIGS = REPO / "configs"


def _need(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} absent: set DEC_DATA_DIR to the folder holding MNIST/, usps/ and reuters/")
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mnist() -> MNISTDataModule:
    _need("MNIST", "raw", "train-images-idx3-ubyte")
    dm = MNISTDataModule(DATA_DIR)
    dm.setup()
    return dm


# ---------------------------------------------------------------- MNIST


def test_mnist_is_train_plus_test_scaled_to_unit_interval(mnist: MNISTDataModule) -> None:
    ds = mnist.dataset
    assert ds.x.shape == (70000, 784) and mnist.input_dim == 784
    assert ds.x.dtype == torch.float32
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    # train comes first: its label counts are MNIST's published ones
    assert torch.bincount(ds.y[:60000]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(ds.y[60000:]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # x / 255: every pixel is a multiple of 1/255
    pixels = ds.x[:100] * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-4)


def test_mnist_batches_yield_x_y_index(mnist: MNISTDataModule) -> None:
    x, y, index = next(iter(mnist.predict_dataloader()))
    assert x.shape == (256, 784) and torch.equal(index, torch.arange(256))
    assert torch.equal(y, mnist.dataset.y[:256])


def test_mnist_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    dm = MNISTDataModule(tmp_path)
    dm.prepare_data()  # download=False: must not try the network
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="download=True"):
        dm.setup()


def test_short_fit_on_mnist_subset_beats_chance(mnist: MNISTDataModule) -> None:
    """Pretrain a small autoencoder and run DEC on 2000 digits: far above the 0.11 of chance."""
    from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh, ToleranceStopping
    from dec_lightning.encoders import MLPEncoder
    from dec_lightning.modules import DEC, AutoencoderPretraining

    L.seed_everything(0)
    ds = mnist.dataset
    dm = ArrayDataModule(ds.x[:2000].numpy(), labels=ds.y[:2000].numpy(), batch_size=128)
    quiet = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    quiet["enable_model_summary"] = False
    encoder = MLPEncoder([784, 256, 64, 10])
    pretrain = AutoencoderPretraining(encoder, finetune_steps=400, optimizer=lambda p: torch.optim.Adam(p, 1e-3))
    L.Trainer(max_steps=400, **quiet).fit(pretrain, datamodule=dm)
    dec = DEC(encoder, n_clusters=10)
    callbacks = [
        KMeansInit(init="kmeans", n_init=5),
        TargetDistributionRefresh(update_interval=16),
        ToleranceStopping(0.001),
    ]
    L.Trainer(max_steps=160, callbacks=callbacks, **quiet).fit(dec, datamodule=dm)
    assert dec.scores["acc"] > 0.4, dec.scores
    assert dec.scores["nmi"] > 0.35, dec.scores


# ---------------------------------------------------------------- USPS


@pytest.fixture(scope="module")
def usps() -> USPSDataModule:
    _need("usps", "usps.bz2")
    dm = USPSDataModule(DATA_DIR / "usps")
    dm.setup()
    return dm


def test_usps_is_9298_digits_in_unit_interval(usps: USPSDataModule) -> None:
    ds = usps.dataset
    assert ds.x.shape == (9298, 256)
    assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert torch.bincount(ds.y[:7291]).tolist() == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
    assert torch.bincount(ds.y[7291:]).tolist() == [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


def test_usps_finds_files_under_a_shared_data_root() -> None:
    _need("usps", "usps.bz2")
    assert USPSDataModule(DATA_DIR).folder == DATA_DIR / "usps"


def test_usps_h5_gives_the_same_data_as_the_libsvm_files(usps: USPSDataModule, tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    h5 = _need("usps", "usps.h5")
    (tmp_path / "usps.h5").symlink_to(h5)
    x_h5, y_h5 = USPSDataModule(tmp_path).load_arrays()
    assert x_h5.shape == (9298, 256)
    np.testing.assert_array_equal(y_h5, usps.dataset.y.numpy())
    np.testing.assert_allclose(x_h5, usps.dataset.x.numpy(), atol=1e-6)


def test_usps_missing_files_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"usps\.bz2"):
        USPSDataModule(tmp_path).setup()


# ---------------------------------------------------------------- Reuters


def test_reuters21578_is_sparse_4_class_tfidf() -> None:
    _need("reuters", "reuters21578_4cls_tfidf2000.npz")
    dm = ReutersDataModule(DATA_DIR)
    dm.setup()
    ds = dm.dataset
    assert ds.x.shape == (7044, 2000) and sp.issparse(ds.x)  # never densified whole
    assert torch.bincount(ds.y).tolist() == [3922, 2359, 404, 359]  # earn, acq, crude, trade
    # DEC's scaling: unit-L2 tf-idf rows times sqrt(2000)
    norms = np.sqrt(np.asarray(ds.x.multiply(ds.x).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, np.sqrt(2000), rtol=1e-4)
    x, _y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (256, 2000) and x.layout == torch.strided
    np.testing.assert_allclose(x.numpy(), ds.x[index.numpy()].toarray())


def test_reuters21578_unscaled_rows_have_unit_norm() -> None:
    _need("reuters", "reuters21578_4cls_tfidf2000.npz")
    x, _ = ReutersDataModule(DATA_DIR, scale=False).load_arrays()
    np.testing.assert_allclose(sp.linalg.norm(x, axis=1), 1.0, rtol=1e-6)


def test_reuters10k_reads_decs_pickled_dict(tmp_path: Path) -> None:
    (tmp_path / "reuters").mkdir()
    rng = np.random.default_rng(0)
    data = {"data": rng.random((30, 2000)).astype(np.float32), "label": rng.integers(0, 4, (30, 1))}
    np.save(tmp_path / "reuters" / REUTERS10K_FILE, data)
    dm = ReutersDataModule(tmp_path, variant="reuters10k")
    x, y = dm.load_arrays()
    np.testing.assert_array_equal(x, data["data"])  # already scaled by DEC: not rescaled
    np.testing.assert_array_equal(y, data["label"].ravel())


def test_reuters_missing_files_and_bad_variant(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="rcv1"):
        ReutersDataModule(tmp_path, variant="reuters10k").load_arrays()
    with pytest.raises(FileNotFoundError, match=REUTERS10K_FILE.replace(".", r"\.") + "|build_reuters21578"):
        ReutersDataModule(tmp_path).load_arrays()
    with pytest.raises(ValueError, match="variant"):
        ReutersDataModule(tmp_path, variant="reuters")


def _fake_rcv1(n: int = 400, d: int = 60, seed: int = 0, density: float = 0.3):
    """A tiny RCV1 look-alike: log-tf-idf rows and hierarchical multi-label topics."""
    rng = np.random.default_rng(seed)
    names = ["C15", "CCAT", "E21", "ECAT", "G15", "GCAT", "M14", "MCAT"]
    target = np.zeros((n, len(names)), dtype=np.int8)
    top = rng.integers(0, 4, n)  # 0..3 -> CCAT, GCAT, MCAT, ECAT
    for i, t in enumerate(top):
        target[i, [1, 5, 7, 3][t]] = 1
    target[::7, 3] = 1  # every 7th document also has ECAT: two top-level topics
    target[::11, [1, 3, 5, 7]] = 0  # every 11th has none of them
    target[::5, 0] = 1  # sub-topics do not matter
    # column j appears in a document with probability decreasing in j: low j = frequent terms
    x = sp.random(n, d, density=density, random_state=seed, format="csr")
    x = x.multiply(rng.random((n, d)) < np.linspace(0.95, 0.05, d)).tocsr()
    return x, sp.csr_matrix(target), names


def test_build_reuters10k_selects_like_dec() -> None:
    x, target, names = _fake_rcv1()
    dense_t = target.toarray()
    xs, y = build_reuters10k(x, target, names, n_samples=100, n_features=20, seed=3)
    assert xs.shape == (100, 20) and sp.issparse(xs)
    # only documents with exactly one of the four, labelled in DEC's order CCAT, GCAT, MCAT, ECAT
    tops = dense_t[:, [1, 5, 7, 3]]
    eligible = np.flatnonzero(tops.sum(axis=1) == 1)
    assert len(eligible) < len(x.indptr) - 1
    # the 20 kept terms are the 20 of highest document frequency among eligible documents
    df = np.bincount(x[eligible].indices, minlength=x.shape[1])
    terms = np.sort(np.argsort(-df, kind="stable")[:20])
    assert df[terms].min() >= np.delete(df, terms).max()
    # rows are the chosen documents restricted to those terms, unit L2 times sqrt(20)
    matched = 0
    sub = x[eligible][:, terms].toarray()
    sub_norm = sub / np.maximum(np.linalg.norm(sub, axis=1, keepdims=True), 1e-12) * np.sqrt(20)
    for row, label in zip(xs.toarray(), y, strict=True):
        hits = np.flatnonzero(np.abs(sub_norm - row).max(axis=1) < 1e-5)
        assert len(hits) >= 1
        assert label in tops[eligible[hits]].argmax(axis=1)
        matched += 1
    assert matched == 100
    norms = np.linalg.norm(xs.toarray(), axis=1)
    np.testing.assert_allclose(norms[norms > 0], np.sqrt(20), rtol=1e-5)
    unscaled, _ = build_reuters10k(x, target, names, n_samples=100, n_features=20, seed=3, scale=False)
    np.testing.assert_allclose(unscaled.toarray() * np.sqrt(20), xs.toarray(), rtol=1e-5)
    # seeded: same seed, same set; another seed, another draw
    xs2, y2 = build_reuters10k(x, target, names, n_samples=100, n_features=20, seed=3)
    assert (xs2 != xs).nnz == 0 and np.array_equal(y, y2)
    xs3, _ = build_reuters10k(x, target, names, n_samples=100, n_features=20, seed=4)
    assert (xs3 != xs).nnz > 0


def test_build_reuters10k_refuses_impossible_requests() -> None:
    x, target, names = _fake_rcv1()
    with pytest.raises(ValueError, match="exactly one"):
        build_reuters10k(x, target, names, n_samples=10_000, n_features=20)
    with pytest.raises(ValueError, match="CCAT"):
        build_reuters10k(x, target, [n.replace("CCAT", "XCAT") for n in names], n_samples=10, n_features=5)


def test_rcv1_variant_builds_from_fetch_rcv1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sklearn.datasets
    from sklearn.utils import Bunch

    x, target, names = _fake_rcv1(n=14000, d=2100, density=0.02)
    calls = []

    def fake_fetch_rcv1(data_home=None, download_if_missing=True):
        calls.append((data_home, download_if_missing))
        return Bunch(data=x, target=target, target_names=np.array(names, dtype=object))

    monkeypatch.setattr(sklearn.datasets, "fetch_rcv1", fake_fetch_rcv1)
    dm = ReutersDataModule(tmp_path, variant="rcv1", scale=False)
    dm.prepare_data()
    assert calls == []  # no download unless asked
    xs, y = dm.load_arrays()
    assert calls == [(str(tmp_path / "rcv1"), False)]
    assert xs.shape == (10000, 2000) and set(np.unique(y)) == {0, 1, 2, 3}
    norms = sp.linalg.norm(xs, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)
    ReutersDataModule(tmp_path, variant="rcv1", download=True).prepare_data()
    assert calls[-1] == (str(tmp_path / "rcv1"), True)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["mnist", "mnist_fast", "usps", "usps_fast", "reuters", "reuters_fast"])
def test_config_builds_and_keeps_decs_hyperparameters(name: str, tmp_path: Path) -> None:
    """Each config parses and instantiates, its encoder fits its data, and it keeps DEC's hyperparameters."""
    import yaml

    from dec_lightning.cli.common import DECLightningCLI
    from dec_lightning.modules import DEC

    dataset = name.split("_")[0]
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    args = ["--config", str(CONFIGS / f"{name}.yaml"), "--data.init_args.data_dir", str(tmp_path)]
    cli = DECLightningCLI(DEC, L.LightningDataModule, subclass_mode_data=True, run=False, args=args)
    assert cli.datamodule.name == dataset and cli.datamodule.data_dir == tmp_path  # data is loaded lazily
    assert cli.model.encoder.dims == [{"mnist": 784, "usps": 256, "reuters": 2000}[dataset], 500, 500, 2000, 10]
    assert cli.model.n_clusters == {"mnist": 10, "usps": 10, "reuters": 4}[dataset]
    assert cfg["data"]["init_args"]["batch_size"] == 256
    assert cfg["model"]["optimizer"]["init_args"] == {"lr": 0.01, "momentum": 0.9}
    callbacks = {c["class_path"].rsplit(".", 1)[1]: c.get("init_args") for c in cfg["trainer"]["callbacks"]}
    assert callbacks["ToleranceStopping"]["tol"] == 0.001
    assert callbacks["KMeansInit"]["n_init"] == 20
    assert (
        callbacks["TargetDistributionRefresh"]["update_interval"] == {"mnist": 140, "usps": 30, "reuters": 30}[dataset]
    )
    pre = cfg["pretrain"]
    if name.endswith("_fast"):
        assert pre["layerwise_steps"] == 0 and pre["finetune_steps"] > 0
    else:
        assert (pre["layerwise_steps"], pre["finetune_steps"], pre["dropout"]) == (50000, 100000, 0.2)
        assert (pre["lr_decay_steps"], pre["lr_decay"], pre["optimizer"]["init_args"]["lr"]) == (20000, 0.1, 0.1)
