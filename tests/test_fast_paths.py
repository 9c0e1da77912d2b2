"""The fast training paths compute the same loss and gradients as the plain pair path."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException

from hybridmf.config import FitConfig
from hybridmf.data.datamodule import EpochBatches, GridBatch, InteractionDataModule, is_one_grid_batch
from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import make_split
from hybridmf.model.module import HybridMF
from hybridmf.model.towers import Tower
from hybridmf.training import PROGRESS_REFRESH_STEPS, build_trainer

POSITIVES = PositiveSet(np.array([[0, 1], [0, 3], [1, 0], [2, 2], [3, 1], [3, 4]]), n_rows=4, n_cols=5)


def _gradients(model: HybridMF, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model._shared_step(batch, "train")
    loss.backward()
    return loss.item(), {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


@pytest.mark.parametrize(
    "options",
    [
        {"head": "dot"},
        {"head": "dot", "bias": True, "l2": 0.1},
        {"head": "mlp", "head_hidden": (6,), "l2": 0.05},
    ],
)
def test_grid_batch_matches_pair_batch(options: dict):
    torch.manual_seed(0)
    model = HybridMF(n_rows=4, n_cols=5, k=3, **options)
    rows = torch.tensor([0, 1, 3])  # row 2 is held out, as in a cold split, so it has no positive
    positives = PositiveSet(POSITIVES.pairs()[POSITIVES.pairs()[:, 0] != 2].numpy(), n_rows=4, n_cols=5)
    pairs = EpochBatches(positives, rows, batch_size=15, seed=0).tensors
    grid = GridBatch(positives, rows)[0]

    pair_loss, pair_gradients = _gradients(model, pairs)
    grid_loss, grid_gradients = _gradients(model, grid)

    assert grid_loss == pytest.approx(pair_loss, rel=1e-6)
    assert grid_gradients.keys() == pair_gradients.keys()
    for name, gradient in pair_gradients.items():
        torch.testing.assert_close(grid_gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("weights", [None, np.array([2.0, 0.5, 1.0, 3.0, 1.0, 0.25])])
def test_grid_batch_with_id_dropout_scores_pairs(weights: np.ndarray | None):
    model = HybridMF(n_rows=4, n_cols=5, k=3, id_dropout=0.5)
    positives = PositiveSet(POSITIVES.pairs().numpy(), n_rows=4, n_cols=5, weights=weights)
    grid = GridBatch(positives, torch.arange(4))[0]
    row_major = {
        "row": torch.arange(4).repeat_interleave(5),
        "col": torch.arange(5).repeat(4),
        "label": grid["labels"].reshape(-1),
    }
    if weights is not None:
        # Row-major weights of the 4 x 5 grid, 1 off the positives of POSITIVES.
        row_major["weight"] = torch.tensor(
            [1, 2.0, 1, 0.5, 1] + [1.0, 1, 1, 1, 1] + [1, 1, 3.0, 1, 1] + [1, 1.0, 1, 1, 0.25]
        )

    torch.manual_seed(1)
    grid_loss = model._shared_step(grid, "train")
    torch.manual_seed(1)
    pair_loss = model._shared_step(row_major, "train")

    assert torch.equal(grid_loss, pair_loss)


def test_grid_batch_shards_rows():
    shards = [GridBatch(POSITIVES, torch.arange(4), rank, 3)[0]["rows"].tolist() for rank in range(3)]

    assert shards == [[0, 3], [1], [2]]


@pytest.mark.parametrize(
    ("mode", "batch_size", "world_size", "expected"),
    [("full", 20, 1, True), ("full", 19, 1, False), ("full", 10, 2, True), ("full", 9, 2, False), ("sampled", 99, 1, False)],
)
def test_one_grid_batch_needs_the_largest_share(mode: str, batch_size: int, world_size: int, expected: bool):
    assert is_one_grid_batch(mode, 4 * 5, batch_size, world_size) is expected


def _tiny_data() -> InteractionData:
    return InteractionData(
        rows=pd.DataFrame({"id": ["r0", "r1", "r2", "r3"], "name": ""}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(5)], "name": ""}),
        pairs=POSITIVES.pairs().numpy(),
    )


def _trainer(max_epochs: int, **options) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, **options)  # fmt: skip


def test_datamodule_serves_grid_batch():
    data = _tiny_data()
    split = make_split(data.pairs, 4, val_fraction=0)
    for batch_size, expected_keys in ((20, ["labels", "rows"]), (8, ["col", "label", "row"])):
        module = InteractionDataModule(data, split, batch_size=batch_size)
        module.setup("fit")

        assert sorted(next(iter(module.train_dataloader()))) == expected_keys


def test_masked_table_gather_matches_embedding_lookup():
    tower = Tower(n_entities=6, k=4)
    tower.trained[torch.tensor([1, 4])] = False
    index = torch.tensor([0, 1, 4, 4, 5])

    expected = tower.embedding(index) * tower.trained[index].unsqueeze(1)  # (5, 4)

    assert torch.equal(tower(index), expected)


def test_epoch_batches_to_moves_current_and_later_epochs():
    batches = EpochBatches(POSITIVES, torch.arange(4), batch_size=7, seed=0).to("meta")
    batches.set_epoch(1)

    assert {tensor.device.type for tensor in batches.tensors.values()} == {"meta"}


def test_trainer_updates_like_plain_loop():
    """Training under Lightning changes the parameters exactly as forward, zero_grad, backward, step."""
    data = _tiny_data()
    split = make_split(data.pairs, 4, val_fraction=0)
    torch.manual_seed(0)
    trained = HybridMF(n_rows=4, n_cols=5, k=3, bias=True, l2=0.01)
    plain = copy.deepcopy(trained)

    trainer = _trainer(max_epochs=2)
    trainer.fit(trained, datamodule=InteractionDataModule(data, split, batch_size=7, seed=0))

    optimizer = plain.configure_optimizers()
    batches = EpochBatches(POSITIVES, torch.arange(4), batch_size=7, seed=0)
    for epoch in range(2):
        batches.set_epoch(epoch)
        for index in range(len(batches)):
            loss = plain._shared_step(batches[index], "train")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    assert trainer.global_step == 2 * len(batches)
    for name, parameter in plain.named_parameters():
        assert torch.equal(trained.get_parameter(name), parameter), name


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"gradient_clip_val": 1.0}, "Automatic gradient clipping is not supported for manual optimization"),
        ({"accumulate_grad_batches": 2}, "Automatic gradient accumulation is not supported for manual optimization"),
    ],
)
def test_trainer_automatic_optimization_options_raise(options: dict, message: str):
    data = _tiny_data()
    module = InteractionDataModule(data, make_split(data.pairs, 4, val_fraction=0), batch_size=7)

    with pytest.raises(MisconfigurationException, match=message):
        _trainer(max_epochs=1, **options).fit(HybridMF(n_rows=4, n_cols=5, k=3), datamodule=module)


def test_hook_name_attribute_bypasses_module_registry():
    model = HybridMF(n_rows=4, n_cols=5, k=3)

    model._current_fx_name = "training_step"
    model.extra = torch.nn.Linear(1, 1)

    assert model.__dict__["_current_fx_name"] == "training_step"
    assert "extra" in dict(model.named_children())


@pytest.mark.parametrize(("progress", "refresh_rate"), [(True, PROGRESS_REFRESH_STEPS), (False, None)])
def test_fit_trainer_progress_bar_refresh(tmp_path: Path, progress: bool, refresh_rate: int | None):
    trainer, _ = build_trainer(FitConfig(progress=progress), tmp_path, monitor=False)

    bar = trainer.progress_bar_callback
    assert (None if bar is None else bar.refresh_rate) == refresh_rate
