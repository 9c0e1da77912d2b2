"""Shared fixtures: a tiny synthetic data set in the MEF file layout, a model trained on it, and the real MEF copy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def find_mef_dir() -> Path | None:
    """Return the real MEF copy from HYBRIDMF_DATA_DIR or ../shared/data/mef, if present."""
    candidates = [os.environ.get("HYBRIDMF_DATA_DIR"), REPOSITORY.parent / "shared" / "data" / "mef"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "data" / "association.txt").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mef_dir() -> Path:
    """The real MEF data; tests that use it are skipped when it is absent."""
    found = find_mef_dir()
    if found is None:
        pytest.skip("MEF data not found: set HYBRIDMF_DATA_DIR or place a copy at ../shared/data/mef")
    return found


def write_mef_layout(root: Path, n_drugs: int = 12, n_adrs: int = 10, seed: int = 0) -> Path:
    """Write a block-structured data set in the MEF file layout under ``root``.

    Drugs and ADRs form two blocks; a drug has most ADRs of its own block and none of the
    other, so a model that learns the blocks ranks held-out pairs first.
    """
    generator = np.random.default_rng(seed)
    (root / "data").mkdir(parents=True, exist_ok=True)
    smiles = ["CCO", "CCN", "c1ccccc1", "CC(=O)O", "CCCC", "CCOC"]
    drugs = [
        f"-{100 + i}\tDB{i:05d}\t\"\"\tdrug{i}\t{smiles[i % len(smiles)]}" for i in range(n_drugs)
    ]
    adrs = [f"C{i:07d}\tadr {i}" for i in range(n_adrs)]
    pairs = []
    for i in range(n_drugs):
        block = range(0, n_adrs // 2) if i < n_drugs // 2 else range(n_adrs // 2, n_adrs)
        for j in block:
            if generator.random() < 0.8:
                pairs.append(f"-{100 + i}\tC{j:07d}")
    (root / "data" / "drug.txt").write_text("\n".join(drugs) + "\n")
    (root / "data" / "adr.txt").write_text("\n".join(adrs) + "\n")
    (root / "data" / "association.txt").write_text("\n".join(pairs) + "\n")
    return root


@pytest.fixture()
def tiny_mef_dir(tmp_path: Path) -> Path:
    """A small synthetic data set in the MEF layout, in a temporary directory."""
    return write_mef_layout(tmp_path / "mef")


@pytest.fixture(scope="session")
def final_run(tmp_path_factory) -> tuple[Path, Path]:
    """A model trained on every pair of the synthetic data set (2 epochs), as ``(checkpoint, data dir)``."""
    from hybridmf.config import FitConfig
    from hybridmf.training import run_fit

    data_dir = write_mef_layout(tmp_path_factory.mktemp("final-data"))
    out = tmp_path_factory.mktemp("final-run")
    config = FitConfig(
        data_dir=str(data_dir), val_fraction=0, max_epochs=2, batch_size=32, out=str(out), progress=False, accelerator="cpu"
    )
    metrics = run_fit(config)
    return Path(metrics["checkpoint"]), data_dir


def write_checkpoint(model, path: Path) -> Path:
    """Save a model built in a test as a checkpoint that ``HybridMF.load_from_checkpoint`` reads."""
    import pytorch_lightning as pl
    import torch

    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": pl.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def fingerprint_featurizer(n_bits: int, radius: int = 2) -> dict:
    """Featurizer settings of a model whose only row features are Morgan bits plus the missing flag."""
    return {
        "row": [{"source": "fingerprint", "width": n_bits + 1, "offset": 0}],
        "col": [],
        "fingerprint_radius": radius,
        "fingerprint_bits": n_bits,
    }


@pytest.fixture()
def run_fresh_python() -> Callable[[str], str]:
    """A function that runs Python source in a new interpreter and returns its standard output.

    A fresh process keeps measurements such as the peak resident set size free of what
    earlier tests allocated. The function fails the test when the script exits non-zero.
    """

    def run(source: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(source)],
            capture_output=True,
            text=True,
            cwd=REPOSITORY,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run
