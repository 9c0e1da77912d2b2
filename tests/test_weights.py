"""Confidence weights of the training pairs: data, splits, batches, losses and a fit from a file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from hybridmf import HybridMF
from hybridmf.config import FitConfig
from hybridmf.data.datamodule import EpochBatches, GridBatch, InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import inner_split, make_split
from hybridmf.evaluation.protocols import protocol_folds
from hybridmf.training import run_fit


def _entities(prefix: str, count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(count)], "name": [f"{prefix} {i}" for i in range(count)]})


def _weighted_data(n_rows: int = 8, n_cols: int = 6, seed: int = 0) -> InteractionData:
    """Random positives, two or more per row, each with its own weight k / 4 for k = 1, 2, ..."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < 0.3
    mask[np.arange(n_rows), np.arange(n_rows) % n_cols] = True
    mask[np.arange(n_rows), (np.arange(n_rows) + 1) % n_cols] = True
    pairs = np.argwhere(mask).astype(np.int64)  # (P, 2) sorted row-major
    weights = (np.arange(1, len(pairs) + 1) / 4).astype(np.float32)  # (P,) distinct, so a mix-up shows
    return InteractionData(_entities("r", n_rows), _entities("c", n_cols), pairs, weights=weights)


def _weight_of(data: InteractionData) -> dict[tuple[int, int], float]:
    return {(int(row), int(col)): float(weight) for (row, col), weight in zip(data.pairs, data.weights)}


def _expected_weights(weight_of: dict, rows: torch.Tensor, cols: torch.Tensor, labels: torch.Tensor | None) -> list[float]:
    """Weight of each example: the positive's weight, 1 for an unknown pair."""
    is_positive = [True] * len(rows) if labels is None else (labels > 0).tolist()
    return [
        weight_of[(row, col)] if positive else 1.0
        for row, col, positive in zip(rows.tolist(), cols.tolist(), is_positive)
    ]


# ---------------------------------------------------------------------------------------
# Weights in the data set, the positive set and the splits
# ---------------------------------------------------------------------------------------


def test_positive_set_sorts_weights_with_pairs():
    positives = PositiveSet(np.array([[2, 0], [0, 1], [0, 0]]), n_rows=3, n_cols=2, weights=np.array([3.0, 2.0, 0.5]))

    assert positives.pairs().tolist() == [[0, 0], [0, 1], [2, 0]]
    assert positives.weights.tolist() == [0.5, 2.0, 3.0]
    assert positives.pair_weights(torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0])).tolist() == [2.0, 1.0, 3.0]
    assert positives.dense_weights(torch.tensor([2, 1, 0])).tolist() == [[3.0, 1.0], [1.0, 1.0], [0.5, 2.0]]


def test_positive_set_without_weights_is_all_ones():
    positives = PositiveSet(np.array([[0, 1]]), n_rows=2, n_cols=2)

    assert positives.weights is None
    assert positives.pair_weights(torch.tensor([0, 1]), torch.tensor([1, 1])).tolist() == [1.0, 1.0]
    assert positives.dense_weights(torch.tensor([0])).tolist() == [[1.0, 1.0]]


@pytest.mark.parametrize(
    ("pairs", "weights", "message"),
    [
        ([[0, 0], [0, 0]], [1.0, 2.0], r"pairs must be unique when weights are given, got 1 repeated pair"),
        ([[0, 0], [1, 1]], [1.0], r"weights must have one value per pair, shape \(2,\), got \(1,\)"),
        ([[0, 0], [1, 1]], [1.0, 0.0], r"weights must be finite and positive, got 0\.0 at position 1"),
        ([[0, 0], [1, 1]], [np.inf, 1.0], r"finite and positive, got inf at position 0 \(1 invalid"),
    ],
)
def test_positive_set_invalid_weights_raise(pairs, weights, message):
    with pytest.raises(ValueError, match=message):
        PositiveSet(np.array(pairs), n_rows=2, n_cols=2, weights=np.array(weights))


def test_pair_weights_follow_query_order():
    data = _weighted_data()
    weight_of = _weight_of(data)
    query = data.pairs[::-1][::3]  # (N, 2) a subset in another order

    assert data.pair_weights(query).tolist() == [weight_of[(row, col)] for row, col in query.tolist()]


def test_pair_weights_reject_unknown_pair():
    data = _weighted_data()
    unknown = next((row, col) for row in range(data.n_rows) for col in range(data.n_cols) if (row, col) not in _weight_of(data))

    with pytest.raises(ValueError, match=rf"known pairs of interactions, got \({unknown[0]}, {unknown[1]}\) at position 1"):
        data.pair_weights(np.array([data.pairs[0], unknown]))


def test_pair_weights_none_without_weights():
    data = InteractionData(_entities("r", 2), _entities("c", 2), np.array([[0, 1]]))

    assert data.pair_weights(np.array([[0, 1]])) is None


def test_transpose_keeps_weight_of_each_pair():
    data = _weighted_data()

    flipped = data.transpose()

    assert _weight_of(flipped) == {(col, row): weight for (row, col), weight in _weight_of(data).items()}
    assert flipped.transpose().weights.tolist() == data.weights.tolist()


@pytest.mark.parametrize("split_kind", ["warm", "cold"])
def test_split_training_pairs_keep_weights(split_kind: str):
    data = _weighted_data()
    split = make_split(data.pairs, data.n_rows, split_kind, val_fraction=0.25, seed=1)
    module = InteractionDataModule(data, split, batch_size=8)
    module.setup("fit")

    train = module.train_positives.pairs()
    expected = [_weight_of(data)[(row, col)] for row, col in train.tolist()]
    assert module.train_positives.weights.tolist() == expected
    assert len(train) == len(split.train_pairs)
    assert module.val_positives.weights is None


@pytest.mark.parametrize("protocol", ["warm", "cold-drug", "cold-adr"])
def test_fold_and_inner_split_keep_weights(protocol: str):
    """Every fold's inner training pairs carry the weights of the original pairs, transposed for cold-adr."""
    data = _weighted_data()
    original = _weight_of(data)
    view, folds = protocol_folds(data, protocol, n_folds=2, seed=0)

    for fold in folds:
        inner = inner_split(fold, view.n_rows, val_fraction=0.3, seed=0)
        module = InteractionDataModule(view, inner, batch_size=8)
        module.setup("fit")

        pairs = module.train_positives.pairs().tolist()
        if protocol == "cold-adr":
            expected = [original[(col, row)] for row, col in pairs]
        else:
            expected = [original[(row, col)] for row, col in pairs]
        assert len(pairs) == len(inner.train_pairs)
        assert module.train_positives.weights.tolist() == expected


# ---------------------------------------------------------------------------------------
# Weights in the training batches
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "sampled", "triplet"])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_epoch_batches_weights_aligned_in_every_share(mode: str, world_size: int):
    data = _weighted_data()
    weight_of = _weight_of(data)
    positives = PositiveSet(data.pairs, data.n_rows, data.n_cols, data.weights)

    for rank in range(world_size):
        tensors = EpochBatches(
            positives, torch.arange(data.n_rows), batch_size=8, seed=2, mode=mode, rank=rank,
            world_size=world_size, neg_ratio=2,
        ).tensors

        if mode == "triplet":
            expected = _expected_weights(weight_of, tensors["row"], tensors["pos"], None)
        else:
            expected = _expected_weights(weight_of, tensors["row"], tensors["col"], tensors["label"])
        assert tensors["weight"].dtype == torch.float32
        assert tensors["weight"].tolist() == expected


@pytest.mark.parametrize("world_size", [1, 3])
def test_grid_batch_weights_aligned_in_every_share(world_size: int):
    data = _weighted_data()
    weight_of = _weight_of(data)
    positives = PositiveSet(data.pairs, data.n_rows, data.n_cols, data.weights)

    for rank in range(world_size):
        batch = GridBatch(positives, torch.arange(data.n_rows), rank, world_size)[0]

        for position, row in enumerate(batch["rows"].tolist()):
            expected = [weight_of.get((row, col), 1.0) for col in range(data.n_cols)]
            assert batch["weights"][position].tolist() == expected


def test_batches_without_weights_have_no_weight_key():
    data = InteractionData(_entities("r", 3), _entities("c", 3), np.array([[0, 1], [1, 2], [2, 0]]))
    positives = PositiveSet(data.pairs, data.n_rows, data.n_cols)

    for mode in ("full", "sampled", "triplet"):
        assert "weight" not in EpochBatches(positives, torch.arange(3), batch_size=4, seed=0, mode=mode).tensors
    assert sorted(GridBatch(positives, torch.arange(3))[0]) == ["labels", "rows"]


# ---------------------------------------------------------------------------------------
# Weighted loss of the model on the grid and on batches
# ---------------------------------------------------------------------------------------

# Two rows and three columns, with the known pairs (0, 1) of weight 2 and (1, 0) of weight 0.5.
TOY_PAIRS = np.array([[0, 1], [1, 0]])
TOY_WEIGHTS = np.array([2.0, 0.5])


def _loss_and_gradients(model: HybridMF, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model._shared_step(batch, "train")
    loss.backward()
    return loss.detach(), {name: parameter.grad.clone() for name, parameter in model.named_parameters() if parameter.grad is not None}


def _hand_loss(logits: list[list[float]], pos_weight: float) -> float:
    """The weighted BCE of the toy grid from its logits, written out pair by pair."""
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    terms = [
        softplus(logits[0][0]),  # unknown pair: -log(1 - σ(x)), weight 1
        pos_weight * 2.0 * softplus(-logits[0][1]),  # known pair of weight 2: -log σ(x)
        softplus(logits[0][2]),
        pos_weight * 0.5 * softplus(-logits[1][0]),  # known pair of weight 0.5
        softplus(logits[1][1]),
        softplus(logits[1][2]),
    ]
    return sum(terms) / 6


@pytest.mark.parametrize("options", [{"head": "dot"}, {"head": "mlp", "head_hidden": (4,), "bias": True, "l2": 0.1}])
def test_grid_and_batched_weighted_loss_match_hand_value(options: dict):
    torch.manual_seed(0)
    model = HybridMF(n_rows=2, n_cols=3, k=2, pos_weight=3.0, **options)
    positives = PositiveSet(TOY_PAIRS, n_rows=2, n_cols=3, weights=TOY_WEIGHTS)
    pairs = EpochBatches(positives, torch.arange(2), batch_size=6, seed=0).tensors
    grid = GridBatch(positives, torch.arange(2))[0]
    with torch.no_grad():
        logits = model.score_rows(torch.arange(2)).double().tolist()  # (2, 3)
        penalty = options.get("l2", 0.0) * float(model._penalty(torch.arange(2), torch.arange(3)))

    pair_loss, pair_gradients = _loss_and_gradients(model, pairs)
    grid_loss, grid_gradients = _loss_and_gradients(model, grid)

    expected = _hand_loss(logits, pos_weight=3.0) + penalty
    assert pair_loss.item() == pytest.approx(expected, rel=1e-6)
    assert grid_loss.item() == pytest.approx(expected, rel=1e-6)
    assert grid_gradients.keys() == pair_gradients.keys()
    for name, gradient in pair_gradients.items():
        torch.testing.assert_close(grid_gradients[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_weight_two_on_grid_equals_doubled_pos_weight():
    torch.manual_seed(0)
    model = HybridMF(n_rows=2, n_cols=3, k=2, pos_weight=3.0)
    doubled = HybridMF(n_rows=2, n_cols=3, k=2, pos_weight=6.0)
    doubled.load_state_dict(model.state_dict())
    weighted = GridBatch(PositiveSet(TOY_PAIRS, 2, 3, weights=np.array([2.0, 2.0])), torch.arange(2))[0]
    plain = GridBatch(PositiveSet(TOY_PAIRS, 2, 3), torch.arange(2))[0]

    weighted_loss, weighted_gradients = _loss_and_gradients(model, weighted)
    plain_loss, plain_gradients = _loss_and_gradients(doubled, plain)

    assert torch.equal(weighted_loss, plain_loss)
    for name, gradient in plain_gradients.items():
        torch.testing.assert_close(weighted_gradients[name], gradient, rtol=1e-6, atol=1e-8, msg=name)


@pytest.mark.parametrize("loss", ["bpr", "margin"])
def test_triplet_batch_weighted_by_positive(loss: str):
    torch.manual_seed(0)
    model = HybridMF(n_rows=2, n_cols=3, k=2, loss=loss, margin=5.0)
    positives = PositiveSet(TOY_PAIRS, n_rows=2, n_cols=3, weights=TOY_WEIGHTS)
    batch = EpochBatches(positives, torch.arange(2), batch_size=8, seed=0, mode="triplet", neg_ratio=2).tensors
    with torch.no_grad():
        logits = model.score_rows(torch.arange(2)).double()  # (2, 3)

    differences = (logits[batch["row"], batch["neg"]] - logits[batch["row"], batch["pos"]]).tolist()  # (4,)
    if loss == "bpr":
        terms = [math.log1p(math.exp(difference)) for difference in differences]
    else:
        terms = [max(0.0, 5.0 + difference) for difference in differences]
    expected = sum(weight * term for weight, term in zip(batch["weight"].tolist(), terms)) / len(terms)

    assert sorted(batch["weight"].tolist()) == [0.5, 0.5, 2.0, 2.0]
    assert model._shared_step(batch, "train").item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------
# Training with weights
# ---------------------------------------------------------------------------------------


def _train(data: InteractionData, mode: dict, loss: str = "bce") -> torch.Tensor:
    """Train a small model on every pair of ``data`` and return its ``(R, C)`` scores."""
    split = make_split(data.pairs, data.n_rows, "warm", val_fraction=0.0, seed=0)
    pl.seed_everything(0, verbose=False)
    model = HybridMF(data.n_rows, data.n_cols, k=3, loss=loss, pos_weight=2.0, optimizer="adam", lr=0.05)
    module = InteractionDataModule(data, split, seed=0, **mode)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(model, datamodule=module)
    with torch.no_grad():
        return model.eval().score_rows(torch.arange(data.n_rows))


@pytest.mark.parametrize(
    ("mode", "loss"),
    [
        ({"batch_size": 1000}, "bce"),
        ({"batch_size": 16}, "bce"),
        ({"negatives": "sampled", "neg_ratio": 2, "batch_size": 8}, "bce"),
        ({"triplets": True, "neg_ratio": 2, "batch_size": 8}, "bpr"),
        ({"triplets": True, "neg_ratio": 2, "batch_size": 8}, "margin"),
    ],
)
def test_unit_weights_train_like_no_weights(mode: dict, loss: str):
    """Weights of 1 give bit-identical training: the weighted path adds nothing else."""
    data = _weighted_data()
    unit = InteractionData(data.rows, data.cols, data.pairs, weights=np.ones(data.n_pairs, dtype=np.float32))
    plain = InteractionData(data.rows, data.cols, data.pairs)

    assert torch.equal(_train(unit, mode, loss), _train(plain, mode, loss))


def test_fit_from_csv_weight_column_changes_scores(tmp_path: Path):
    """A heavy weight on one pair raises its score above what the same file trains without weights."""
    lines = ["row_id,col_id,confidence"]
    for row in range(6):
        for col in range(5):
            if (row + col) % 3 == 0:
                lines.append(f"d{row},a{col},{8 if (row, col) == (0, 0) else 1}")
    interactions = tmp_path / "interactions.csv"
    interactions.write_text("\n".join(lines) + "\n")

    scores = {}
    for label, weight_column in (("weighted", "confidence"), ("plain", None)):
        config = FitConfig(
            interactions=str(interactions), weight_column=weight_column, val_fraction=0, max_epochs=3,
            pos_weight=1.0, optimizer="adam", lr=0.05, out=str(tmp_path / label), progress=False, accelerator="cpu",
        )
        checkpoint = run_fit(config)["checkpoint"]
        model = HybridMF.load_from_checkpoint(checkpoint, map_location="cpu").eval()
        with torch.no_grad():
            scores[label] = model.score_rows(torch.arange(6))  # (6, 5)

    assert scores["weighted"][0, 0] > scores["plain"][0, 0]
    assert not torch.equal(scores["weighted"], scores["plain"])
