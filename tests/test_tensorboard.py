"""What a DEC run writes to TensorBoard, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from dec_lightning import DEC
from dec_lightning.callbacks import KMeansInit, TargetDistributionRefresh, TensorBoardViews
from dec_lightning.callbacks.tensorboard_views import confusion_counts, confusion_image, confusion_markdown
from dec_lightning.encoders import MLPEncoder
from dec_lightning.modules import DEC as DECModule
from dec_lightning.modules.assignment import soft_assignment
from tests.conftest import BLOBS_K, BLOBS_N, blobs_arrays

INTERVAL, STEPS = 5, 40


def accumulator(run_dir: Path) -> EventAccumulator:
    # size 0 keeps every event of every kind (the default keeps e.g. only the last histogram)
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One estimator fit logging to TensorBoard; tol=0 so it runs all STEPS steps."""
    log_dir = tmp_path_factory.mktemp("tb")
    x, y = blobs_arrays()
    est = DEC(
        n_clusters=BLOBS_K,
        hidden_dims=(32,),
        embedding_dim=4,
        pretrain_steps=30,
        cluster_steps=STEPS,
        update_interval=INTERVAL,
        tol=0.0,
        n_init=3,
        batch_size=32,
        accelerator="cpu",
        log_dir=log_dir,
    ).fit(x, y)
    return est, x, y, log_dir / "cluster" / "version_0", log_dir / "pretrain" / "version_0"


def test_scalars_one_point_per_refresh(run) -> None:
    est, _, _, cluster_dir, pretrain_dir = run
    acc = accumulator(cluster_dir)
    refreshes = list(range(0, STEPS, INTERVAL))
    for name in ("acc", "nmi", "ari"):
        events = acc.Scalars(f"cluster/{name}")
        assert [e.step for e in events] == refreshes
        assert all(-1 <= e.value <= 1 for e in events)
    # the first refresh has nothing to compare with
    assert [e.step for e in acc.Scalars("cluster/delta_label")] == refreshes[1:]
    assert acc.Scalars("cluster/loss")
    for name in ("acc", "nmi", "ari"):
        (final,) = acc.Scalars(f"final/{name}")
        assert final.step == STEPS and final.value == pytest.approx(est.scores_[name], abs=1e-6)
    assert accumulator(pretrain_dir).Scalars("pretrain/loss")


def test_cluster_size_histogram_at_every_refresh(run) -> None:
    _, _, _, cluster_dir, _ = run
    histograms = accumulator(cluster_dir).Histograms("cluster/sizes")
    assert [h.step for h in histograms] == list(range(0, STEPS, INTERVAL))
    for h in histograms:
        value = h.histogram_value
        assert value.num == BLOBS_N and sum(value.bucket) == BLOBS_N
        assert 0 <= value.min <= value.max <= BLOBS_K - 1
        assert sum(c > 0 for c in value.bucket) <= BLOBS_K  # one bin per cluster


def test_confusion_matrix_image_and_table_match_the_final_labels(run) -> None:
    est, _, y, cluster_dir, _ = run
    acc = accumulator(cluster_dir)
    (event,) = acc.Images("final/confusion_matrix")
    assert event.step == STEPS
    pixels = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    counts, classes, clusters = confusion_counts(est.labels_, y)
    np.testing.assert_array_equal(pixels, confusion_image(counts, classes, clusters))
    (text,) = acc.Tensors("final/confusion_table/text_summary")
    assert confusion_markdown(counts, classes, clusters) in text.tensor_proto.string_val[0].decode()


def test_projector_holds_final_embeddings_with_cluster_and_label(run) -> None:
    est, x, y, cluster_dir, _ = run
    config = (cluster_dir / "projector_config.pbtxt").read_text()
    assert f'tensor_name: "final/embedding:{STEPS:05d}"' in config
    folder = cluster_dir / f"{STEPS:05d}" / "final%2fembedding"
    z = np.loadtxt(folder / "tensors.tsv", delimiter="\t", ndmin=2)
    rows = [line.split("\t") for line in (folder / "metadata.tsv").read_text().splitlines()]
    assert rows[0] == ["cluster", "label"]
    assert z.shape == (BLOBS_N, 4) and len(rows) == BLOBS_N + 1  # N < max_samples: all of them, in order
    np.testing.assert_allclose(z, est.transform(x), atol=1e-4)
    np.testing.assert_array_equal([int(r[0]) for r in rows[1:]], est.labels_)
    np.testing.assert_array_equal([int(r[1]) for r in rows[1:]], y)


def test_projector_sample_and_unlabelled_data(tmp_path) -> None:
    """More samples than max_samples: a seeded subset; without labels: no label column, no confusion views."""
    z = torch.randn(300, 3)
    centers = torch.randn(5, 3)
    preds = soft_assignment(z, centers).argmax(dim=1).numpy()
    writer = SummaryWriter(str(tmp_path))
    TensorBoardViews(max_samples=50, seed=3).write_final(writer, z, preds, np.full(300, -1), step=7)
    writer.close()
    folder = tmp_path / "00007" / "final%2fembedding"
    sample = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    metadata = (folder / "metadata.tsv").read_text().splitlines()
    assert sample.shape == (50, 3) and len(metadata) == 50  # no header row
    index = [int(np.argmin(np.abs(z.numpy() - row).sum(axis=1))) for row in sample]
    assert len(set(index)) == 50 and index == sorted(index)
    assert metadata == [str(preds[i]) for i in index]
    acc = accumulator(tmp_path)
    assert acc.Tags()["images"] == [] and acc.Tags()["tensors"] == []


def test_confusion_counts_order_clusters_by_their_class() -> None:
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1, -1])
    preds = np.array([2, 2, 1, 3, 3, 0, 0, 0, 1, 1])  # clusters 2->0, 3->1, 0->2; cluster 1 is extra
    counts, classes, clusters = confusion_counts(preds, target)
    assert classes == [0, 1, 2] and clusters == [2, 3, 0, 1]
    np.testing.assert_array_equal(counts, [[2, 0, 0, 1], [0, 2, 0, 0], [0, 0, 3, 0]])  # unlabelled rows left out


def test_confusion_image_colours_and_labels() -> None:
    counts = np.array([[4, 0], [1, 3]])
    image = confusion_image(counts, [0, 1], [7, 5], cell=20, scale=2)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    left, top, cell = image.shape[1] - 2 * 20 - 1, image.shape[0] - 2 * 20 - 1, 20

    def centre(i: int, j: int) -> np.ndarray:
        return image[top + i * cell + cell // 2, left + j * cell + cell // 2]

    np.testing.assert_array_equal(centre(0, 0), [8, 48, 107])  # share 1: dark blue
    np.testing.assert_array_equal(centre(0, 1), [255, 255, 255])  # share 0: white
    assert 8 < centre(1, 1)[0] < centre(1, 0)[0] < 255  # 3/4 darker than 1/4
    assert (image[:top, left:] == 0).all(axis=2).any() and (image[top:, :left] == 0).all(axis=2).any()  # ids drawn


def test_other_loggers_are_skipped(tmp_path, trainer_kwargs, blobs_datamodule) -> None:
    """With a CSV logger only, the views write nothing and training is unaffected."""
    module = DECModule(MLPEncoder([16, 8, 4]), n_clusters=BLOBS_K)
    callbacks = [KMeansInit(init="kmeans", n_init=2), TargetDistributionRefresh(update_interval=4), TensorBoardViews()]
    kwargs = {**trainer_kwargs, "logger": CSVLogger(str(tmp_path))}
    L.Trainer(max_steps=8, callbacks=callbacks, **kwargs).fit(module, blobs_datamodule)
    assert module.labels is not None and module.scores
    written = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "metrics.csv" in written
    assert not [n for n in written if n.startswith("events.out") or n.endswith((".tsv", ".pbtxt"))]
    metrics = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()
    assert "cluster/acc" in metrics[0]  # per-refresh scalars reach every logger
