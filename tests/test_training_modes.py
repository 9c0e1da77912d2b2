"""Training with each loss mode: BCE on the full grid or on sampled negatives, BPR and margin triplets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from hybridmf import HybridMF
from hybridmf.config import FitConfig
from hybridmf.data.datamodule import InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import make_split
from hybridmf.training import build_datamodule, model_loss

REPOSITORY = Path(__file__).resolve().parents[1]

# (model loss, data module options) of each way to train.
LOSS_MODES = {
    "bce-full": ("bce", {"negatives": "full"}),
    "bce-sampled": ("bce", {"negatives": "sampled", "neg_ratio": 2}),
    "bpr": ("bpr", {"triplets": True, "neg_ratio": 2}),
    "margin": ("margin", {"triplets": True, "neg_ratio": 2}),
}


def _block_data(n_rows: int = 8, n_cols: int = 6) -> InteractionData:
    """Two blocks: rows of the first half have exactly the first half of the columns, and so on."""
    pairs = [(r, c) for r in range(n_rows) for c in range(n_cols) if (r < n_rows // 2) == (c < n_cols // 2)]
    return InteractionData(
        rows=pd.DataFrame({"id": [f"r{i}" for i in range(n_rows)], "name": [f"row {i}" for i in range(n_rows)]}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(n_cols)], "name": [f"col {i}" for i in range(n_cols)]}),
        pairs=np.array(pairs, dtype=np.int64),
    )


@pytest.mark.parametrize("mode", sorted(LOSS_MODES))
def test_loss_mode_ranks_blocks_and_reloads(mode: str, tmp_path: Path):
    """Each mode learns the block matrix exactly, and its checkpoint reproduces the scores."""
    loss, options = LOSS_MODES[mode]
    data = _block_data()
    split = make_split(data.pairs, data.n_rows, "warm", val_fraction=0.0, seed=0)
    pl.seed_everything(0, verbose=False)
    model = HybridMF(data.n_rows, data.n_cols, k=4, loss=loss, pos_weight=1.0, optimizer="adam", lr=0.05)
    datamodule = InteractionDataModule(data, split, batch_size=16, seed=0, **options)
    trainer = pl.Trainer(max_epochs=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=datamodule)
    path = tmp_path / f"{mode}.ckpt"
    trainer.save_checkpoint(path)

    scores = model.eval().score_rows(torch.arange(data.n_rows))  # (R, C)
    reloaded = HybridMF.load_from_checkpoint(path, map_location="cpu").eval()

    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[data.pairs[:, 0], data.pairs[:, 1]] = True
    lowest_positive = scores.masked_fill(~positive, float("inf")).min(dim=1).values  # (R,)
    highest_unknown = scores.masked_fill(positive, float("-inf")).max(dim=1).values  # (R,)
    assert bool((lowest_positive > highest_unknown).all())
    assert reloaded.hparams.loss == loss
    assert torch.equal(reloaded.score_rows(torch.arange(data.n_rows)), scores)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, ("bce", "full")),
        ({"negatives": "sampled"}, ("bce", "sampled")),
        ({"loss": "triplet"}, ("bpr", "triplet")),
        ({"loss": "triplet", "triplet": "margin", "negatives": "sampled"}, ("margin", "triplet")),
    ],
)
def test_config_selects_loss_and_examples(flags, expected):
    config = FitConfig(**flags, neg_ratio=3, neg_sampling="popularity")
    data = _block_data()
    split = make_split(data.pairs, data.n_rows, "warm", val_fraction=0.25, seed=0)

    datamodule = build_datamodule(config, data, split)

    assert (model_loss(config), datamodule.mode) == expected
    assert datamodule.neg_ratio == 3
    assert datamodule.neg_sampling == "popularity"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("flags", "model_loss_name", "examples"),
    [
        (["--loss", "triplet"], "bpr", "triplet"),
        (["--loss", "triplet", "--triplet", "margin", "--margin", "1"], "margin", "triplet"),
        (["--negatives", "sampled", "--neg-ratio", "4"], "bce", "sampled"),
    ],
    ids=["bpr", "margin", "sampled"],
)
def test_fit_script_loss_modes(tiny_mef_dir: Path, tmp_path: Path, flags, model_loss_name, examples):
    out = tmp_path / "run"
    metrics = _load_script("fit").main(
        ["--config", "none", "--features", "none", "--data-dir", str(tiny_mef_dir), "--max-epochs", "2",
         "--batch-size", "32", "--val-fraction", "0.2", "--optimizer", "adam", "--out", str(out), "--no-progress", *flags]
    )

    written = json.loads((out / "metrics.json").read_text())
    assert written["model_loss"] == model_loss_name
    assert written["training_examples"] == examples
    assert 0.0 <= written["auroc"] <= 1.0
    assert HybridMF.load_from_checkpoint(metrics["checkpoint"], map_location="cpu").hparams.loss == model_loss_name
