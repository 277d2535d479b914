"""The notebooks run top to bottom (nbclient, a real Jupyter kernel) with their settings shrunk to seconds.

Each notebook has one cell tagged ``parameters``; a cell inserted after it overrides those
settings (as papermill does), so the notebooks show realistic values and the tests stay fast.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the [dev] extra (nbformat, nbclient, ipykernel)")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the [dev] extra (nbformat, nbclient, ipykernel)")

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
SMALL = {"HIDDEN_DIMS": (64,), "PRETRAIN_STEPS": 150, "CLUSTER_STEPS": 100}


def run_notebook(name: str, overrides: dict[str, Any], cwd: Path, monkeypatch) -> tuple[Any, str]:
    """Execute a notebook in ``cwd``; return it and the text of all its stream outputs."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # installed with nbclient

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:  # the [dev] extra brings ipykernel, which provides it
        pytest.skip("no python3 Jupyter kernel; install the [dev] extra (ipykernel)")
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, cell in enumerate(book.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    settings = "\n".join(f"{key} = {value!r}" for key, value in overrides.items())
    book.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(settings))
    # the kernel is a new process: it must import this checkout, on one thread
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    client = nbclient.NotebookClient(
        book, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    text = "".join(
        output.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )
    return book, text


def test_quick_start(tmp_path, monkeypatch) -> None:
    _, text = run_notebook("01_quick_start.ipynb", {**SMALL, "N_INIT": 5}, tmp_path, monkeypatch)
    scores = re.search(r"digits: ACC=(\d\.\d+) NMI=(\d\.\d+) ARI=(\d\.\d+)", text)
    assert scores, text
    acc, nmi, _ = (float(v) for v in scores.groups())
    assert acc > 0.5 and nmi > 0.4  # 10 classes: chance is ~0.1-0.2
    sizes = re.search(r"cluster sizes: \[([\d\s]+)\]", text)
    assert sizes and sum(int(v) for v in sizes.group(1).split()) == 1797
    assert "DEC clustering summary" in text and "pretrain fine-tune" in text  # VERBOSE = True in the notebook
    assert (tmp_path / "digits_dec.pt").is_file()
    assert list((tmp_path / "runs" / "quickstart" / "cluster").glob("version_0/events.out.tfevents.*"))


def test_own_data(tmp_path, monkeypatch) -> None:
    _, text = run_notebook("02_own_data.ipynb", SMALL, tmp_path, monkeypatch)
    assert "wrote an example there" in text
    acc = re.search(r"against the label column: ACC=(\d\.\d+)", text)
    assert acc and float(acc.group(1)) > 0.9, text  # three well separated groups
    result = np.loadtxt(tmp_path / "my_data_clusters.csv", delimiter=",", skiprows=1)
    assert result.shape == (600, 3)
    np.testing.assert_array_equal(result[:, 0], np.arange(600))
    assert set(result[:, 1].astype(int)) <= {0, 1, 2}
    assert ((1 / 3 <= result[:, 2]) & (result[:, 2] <= 1)).all()  # the max of 3 probabilities
    assert "sparse input gives the same clusters" in text


def test_tensorboard_run(tmp_path, monkeypatch) -> None:
    from PIL import Image

    book, text = run_notebook("03_tensorboard_run.ipynb", SMALL, tmp_path, monkeypatch)
    table = re.findall(r"^\s*(\d+)\s+(\d\.\d{4})\s+(\d\.\d{4})\s+(-?\d\.\d{4})\s+(nan|\d\.\d{4})$", text, re.MULTILINE)
    assert [int(row[0]) for row in table] == [0, 30, 60, 90]  # one row per refresh of P
    assert "1797 embeddings of dimension 10; metadata columns ['cluster', 'label']" in text
    sizes = re.search(r"at step 90: (\{.*\})", text)
    assert sizes and sum(eval(sizes.group(1)).values()) == 1797
    images = [o for c in book.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3  # confusion matrix, scatter by cluster, scatter by class
    scatter = np.asarray(Image.open(tmp_path / "embedding_pca.png").convert("RGB"))
    colours = {tuple(p) for p in scatter.reshape(-1, 3)}
    assert (0x1F, 0x77, 0xB4) in colours and (0xFF, 0x7F, 0x0E) in colours  # points of clusters 0 and 1
    assert (tmp_path / "embedding_pca_classes.png").is_file()
