"""Tests of the training batches of InteractionDataModule and EpochBatches in every mode."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from hybridmf.data.datamodule import EpochBatches, InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import PositiveSet, popularity_weights
from hybridmf.data.splits import make_split

MODES = ("full", "sampled", "triplet")


def _data(n_rows: int = 20, n_cols: int = 15, seed: int = 0) -> InteractionData:
    """Random positives, about a third of the grid, with at least two per row."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_rows, n_cols)) < 0.3
    mask[np.arange(n_rows), rng.integers(0, n_cols, n_rows)] = True
    mask[np.arange(n_rows), (np.arange(n_rows) + 1) % n_cols] = True
    return InteractionData(
        rows=pd.DataFrame({"id": [f"r{i}" for i in range(n_rows)], "name": [f"row {i}" for i in range(n_rows)]}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(n_cols)], "name": [f"col {i}" for i in range(n_cols)]}),
        pairs=np.argwhere(mask).astype(np.int64),
    )


def _module(mode: str, split_kind: str = "cold", **kwargs) -> InteractionDataModule:
    data = _data()
    split = make_split(data.pairs, data.n_rows, split_kind, val_fraction=0.25, seed=0)
    options = {"batch_size": 16, "seed": 3, "neg_ratio": 2} | kwargs
    if mode == "triplet":
        options["triplets"] = True
    else:
        options["negatives"] = mode
    module = InteractionDataModule(data, split, **options)
    module.setup("fit")
    return module


def _epoch(module: InteractionDataModule) -> dict[str, torch.Tensor]:
    """Concatenate the training batches of the current epoch."""
    batches = list(module.train_dataloader())
    return {name: torch.cat([batch[name] for batch in batches]) for name in batches[0]}


def _pairs(rows: torch.Tensor, cols: torch.Tensor) -> Counter:
    return Counter(zip(rows.tolist(), cols.tolist()))


def _train_pairs(module: InteractionDataModule) -> Counter:
    pairs = module.split.train_pairs
    return Counter(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))


# One process


def test_full_mode_lists_grid_of_training_rows():
    module = _module("full")
    cold_rows = set(module.split.cold_rows.tolist())
    train_rows = [row for row in range(module.data.n_rows) if row not in cold_rows]

    epoch = _epoch(module)

    assert sorted(epoch) == ["col", "label", "row"]
    assert epoch["label"].dtype == torch.float32
    expected = Counter((row, col) for row in train_rows for col in range(module.data.n_cols))
    assert _pairs(epoch["row"], epoch["col"]) == expected
    assert torch.equal(epoch["label"].bool(), module.train_positives.contains(epoch["row"], epoch["col"]))
    assert len(cold_rows) > 0
    assert not np.isin(epoch["row"].numpy(), list(cold_rows)).any()


@pytest.mark.parametrize("neg_sampling", ["uniform", "popularity"])
@pytest.mark.parametrize("split_kind", ["warm", "cold"])
def test_sampled_mode_positives_and_negatives(neg_sampling, split_kind):
    module = _module("sampled", split_kind, neg_sampling=neg_sampling, neg_ratio=3)
    n_train = len(module.split.train_pairs)

    epoch = _epoch(module)

    assert sorted(epoch) == ["col", "label", "row"]
    assert epoch["row"].shape == epoch["col"].shape == epoch["label"].shape == (n_train * 4,)
    assert epoch["row"].dtype == epoch["col"].dtype == torch.int64
    positive = epoch["label"] == 1
    assert int(positive.sum()) == n_train
    assert int((epoch["label"] == 0).sum()) == 3 * n_train
    assert _pairs(epoch["row"][positive], epoch["col"][positive]) == _train_pairs(module)
    assert not module.train_positives.contains(epoch["row"][~positive], epoch["col"][~positive]).any()
    assert not np.isin(epoch["row"].numpy(), module.split.cold_rows).any()


@pytest.mark.parametrize("neg_sampling", ["uniform", "popularity"])
@pytest.mark.parametrize("split_kind", ["warm", "cold"])
def test_triplet_mode_positives_exact(neg_sampling, split_kind):
    module = _module("triplet", split_kind, neg_sampling=neg_sampling, neg_ratio=2)
    n_train = len(module.split.train_pairs)

    epoch = _epoch(module)

    assert sorted(epoch) == ["neg", "pos", "row"]
    assert epoch["row"].shape == epoch["pos"].shape == epoch["neg"].shape == (n_train * 2,)
    expected = Counter({pair: 2 for pair in _train_pairs(module)})
    assert _pairs(epoch["row"], epoch["pos"]) == expected
    assert not module.train_positives.contains(epoch["row"], epoch["neg"]).any()
    assert not np.isin(epoch["row"].numpy(), module.split.cold_rows).any()


@pytest.mark.parametrize("mode", MODES)
def test_batches_have_batch_size(mode):
    module = _module(mode, batch_size=7)

    sizes = [len(batch["row"]) for batch in module.train_dataloader()]

    assert all(size == 7 for size in sizes[:-1])
    assert 1 <= sizes[-1] <= 7


def test_popularity_sampling_passes_weights():
    uniform = _module("sampled").train_dataloader().dataset
    weighted = _module("sampled", neg_sampling="popularity").train_dataloader().dataset

    assert uniform.column_weights is None
    assert torch.equal(weighted.column_weights, popularity_weights(weighted.positives))


def test_validation_chunks_same_in_every_mode():
    chunks = {mode: list(_module(mode, "warm", eval_chunk_rows=6).val_dataloader()) for mode in MODES}

    reference = chunks["full"]
    assert len(reference) == 4  # 20 rows in chunks of 6
    for mode in ("sampled", "triplet"):
        assert len(chunks[mode]) == len(reference)
        for chunk, expected in zip(chunks[mode], reference):
            assert sorted(chunk) == sorted(expected)
            for name in expected:
                assert torch.equal(chunk[name], expected[name])


# Epochs and seeds


@pytest.mark.parametrize("mode", MODES)
def test_epochs_deterministic_per_seed(mode):
    first = _module(mode).train_dataloader()
    again = _module(mode).train_dataloader()
    other_seed = _module(mode, seed=4).train_dataloader()

    epoch_0 = dict(first.dataset.tensors)
    first.sampler.set_epoch(1)
    epoch_1 = dict(first.dataset.tensors)
    first.sampler.set_epoch(0)

    for name, tensor in epoch_0.items():
        assert torch.equal(first.dataset.tensors[name], tensor)
        assert torch.equal(again.dataset.tensors[name], tensor)
    assert any(not torch.equal(epoch_1[name], tensor) for name, tensor in epoch_0.items())
    assert any(not torch.equal(other_seed.dataset.tensors[name], tensor) for name, tensor in epoch_0.items())


@pytest.mark.parametrize("mode", ["sampled", "triplet"])
def test_negatives_redrawn_each_epoch(mode):
    batches = _module(mode).train_dataloader().dataset
    key = "col" if mode == "sampled" else "neg"

    def negatives_by_positive(tensors):
        if mode == "sampled":
            negative = tensors["label"] == 0
            return sorted(zip(tensors["row"][negative].tolist(), tensors["col"][negative].tolist()))
        return sorted(zip(tensors["row"].tolist(), tensors["pos"].tolist(), tensors[key].tolist()))

    epoch_0 = negatives_by_positive(batches.tensors)
    batches.set_epoch(1)

    assert negatives_by_positive(batches.tensors) != epoch_0


# Two simulated processes


def _two_ranks(mode: str, positives: PositiveSet, rows: torch.Tensor, **kwargs):
    return [
        EpochBatches(positives, rows, batch_size=8, seed=0, mode=mode, rank=rank, world_size=2, **kwargs).tensors
        for rank in (0, 1)
    ]


def test_full_mode_ranks_share_grid():
    data = _data()
    positives = PositiveSet(data.pairs[data.pairs[:, 0] >= 2], data.n_rows, data.n_cols)
    rows = torch.arange(2, data.n_rows)  # rows 0 and 1 are held out, as in a cold split

    first, second = _two_ranks("full", positives, rows)

    cells = [_pairs(shard["row"], shard["col"]) for shard in (first, second)]
    assert not set(cells[0]) & set(cells[1])
    assert cells[0] + cells[1] == Counter((row, col) for row in rows.tolist() for col in range(data.n_cols))
    assert len(first["row"]) == len(second["row"])


@pytest.mark.parametrize("mode", ["sampled", "triplet"])
@pytest.mark.parametrize("n_pairs", [60, 61])
def test_sampled_ranks_split_positives(mode, n_pairs):
    """An odd count repeats one positive on the second rank, so both ranks run as many batches."""
    data = _data()
    pairs = data.pairs[:n_pairs]
    positives = PositiveSet(pairs, data.n_rows, data.n_cols)
    share_size = -(-n_pairs // 2)
    examples_per_positive = 3 if mode == "sampled" else 2

    first, second = _two_ranks(mode, positives, torch.arange(data.n_rows), neg_ratio=2)

    shares = []
    for shard in (first, second):
        if mode == "sampled":
            positive = shard["label"] == 1
            shares.append(set(_pairs(shard["row"][positive], shard["col"][positive])))
        else:
            shares.append(set(_pairs(shard["row"], shard["pos"])))
    assert len(first["row"]) == share_size * examples_per_positive
    assert len(second["row"]) == share_size * examples_per_positive
    assert len(shares[0]) == len(shares[1]) == share_size
    assert shares[0] | shares[1] == set(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
    assert len(shares[0] & shares[1]) == n_pairs % 2


def test_full_mode_odd_grid_padded():
    positives = PositiveSet(np.array([[0, 1], [2, 0]]), n_rows=3, n_cols=3)

    first, second = _two_ranks("full", positives, torch.arange(3))

    cells = [set(_pairs(shard["row"], shard["col"])) for shard in (first, second)]
    assert len(first["row"]) == len(second["row"]) == 5
    assert cells[0] | cells[1] == {(row, col) for row in range(3) for col in range(3)}
    assert len(cells[0] & cells[1]) == 1


@pytest.mark.parametrize("mode", ["sampled", "triplet"])
def test_ranks_draw_different_negatives(mode):
    """All positives lie in one row, so the ranks' negatives differ only if their generators do."""
    pairs = np.stack([np.zeros(100, dtype=np.int64), np.arange(0, 200, 2)], axis=1)
    positives = PositiveSet(pairs, n_rows=1, n_cols=1000)

    first, second = _two_ranks(mode, positives, torch.tensor([0]), neg_ratio=2)

    key = "col" if mode == "sampled" else "neg"
    assert first[key].shape == second[key].shape
    assert not torch.equal(first[key], second[key])
    for shard in (first, second):
        rows = shard["row"] if mode == "triplet" else shard["row"][shard["label"] == 0]
        negatives = shard[key] if mode == "triplet" else shard[key][shard["label"] == 0]
        assert not positives.contains(rows, negatives).any()


def test_one_rank_of_one_is_whole_epoch():
    data = _data()
    positives = PositiveSet(data.pairs, data.n_rows, data.n_cols)

    whole = EpochBatches(positives, torch.arange(data.n_rows), batch_size=8, seed=0, mode="triplet", neg_ratio=1)

    assert _pairs(whole.tensors["row"], whole.tensors["pos"]) == Counter(
        zip(data.pairs[:, 0].tolist(), data.pairs[:, 1].tolist())
    )


# Invalid options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "grid"}, r"mode must be one of \('full', 'sampled', 'triplet'\), got 'grid'"),
        ({"batch_size": 0}, r"batch_size must be an integer greater than or equal to 1, got 0"),
        ({"seed": -1}, r"seed must be an integer greater than or equal to 0, got -1"),
        ({"world_size": 0}, r"world_size must be an integer greater than or equal to 1, got 0"),
        ({"rank": 2, "world_size": 2}, r"rank must lie in \[0, world_size\) = \[0, 2\), got 2"),
        ({"neg_ratio": 0}, r"neg_ratio must be an integer greater than or equal to 1, got 0"),
        ({"rows": torch.tensor([0, 1])}, r"row 2 has training positives but is not among the training rows \(1 such"),
    ],
)
def test_epoch_batches_invalid_options_raise(kwargs, message):
    positives = PositiveSet(np.array([[0, 0], [1, 1], [2, 2]]), n_rows=3, n_cols=4)
    arguments = {"positives": positives, "rows": torch.arange(3), "batch_size": 2, "seed": 0} | kwargs

    with pytest.raises(ValueError, match=message):
        EpochBatches(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"negatives": "all"}, ValueError, r"negatives must be one of \('full', 'sampled'\), got 'all'"),
        ({"neg_sampling": "zipf"}, ValueError, r"neg_sampling must be one of \('uniform', 'popularity'\), got 'zipf'"),
        ({"neg_ratio": 0}, ValueError, r"neg_ratio must be an integer greater than or equal to 1, got 0"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an integer greater than or equal to 1, got 0"),
        ({"eval_chunk_rows": 0}, ValueError, r"eval_chunk_rows must be an integer greater than or equal to 1"),
        ({"triplets": "yes"}, TypeError, r"triplets must be a bool, got str"),
    ],
)
def test_datamodule_invalid_options_raise(kwargs, error, message):
    data = _data()
    split = make_split(data.pairs, data.n_rows, "warm", val_fraction=0.25, seed=0)

    with pytest.raises(error, match=message):
        InteractionDataModule(data, split, **kwargs)


# Memory


LARGE_DATAMODULE_SCRIPT = """
import resource
import sys

import numpy as np
import pandas as pd
import psutil
import torch

from hybridmf.data.datamodule import EpochBatches, InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import make_split

n_rows, n_cols, n_pairs = 200_000, 50_000, 1_000_000
rng = np.random.default_rng(0)
keys = np.unique(rng.integers(0, n_rows, n_pairs) * n_cols + rng.integers(0, n_cols, n_pairs))
data = InteractionData(
    rows=pd.DataFrame({"id": np.arange(n_rows), "name": ""}),
    cols=pd.DataFrame({"id": np.arange(n_cols), "name": ""}),
    pairs=np.stack([keys // n_cols, keys % n_cols], axis=1),
)
split = make_split(data.pairs, n_rows, "cold", val_fraction=0.1, seed=0)
baseline = psutil.Process().memory_info().rss

module = InteractionDataModule(data, split, batch_size=250_000, negatives="sampled", neg_ratio=1, eval_chunk_rows=64)
module.setup("fit")
loader = module.train_dataloader()
sizes = [tensor.numel() for tensor in loader.dataset.tensors.values()]
n_batches = sum(1 for _ in loader)
chunk = next(iter(module.val_dataloader()))
del loader
train_rows = torch.as_tensor(split.train_rows(n_rows))
triplets = EpochBatches(
    module.train_positives, train_rows, 250_000, seed=0, mode="triplet", rank=1, world_size=2, neg_ratio=1
)
sizes += [tensor.numel() for tensor in triplets.tensors.values()]

# ru_maxrss is in KiB on Linux and in bytes on macOS.
unit = 1 if sys.platform == "darwin" else 1024
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
print(len(split.train_pairs), max(sizes), n_batches, tuple(chunk["candidates"].shape) == (64, n_cols), peak - baseline)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the resource module is Unix-only")
def test_sampled_datamodule_memory_independent_of_grid(run_fresh_python):
    """A 200,000 × 50,000 grid has 10**10 cells, so a dense bool mask alone would need 10 GB.

    The script runs in a fresh interpreter so that the peak resident set size is not an
    earlier test's peak.
    """
    pytest.importorskip("psutil")
    output = run_fresh_python(LARGE_DATAMODULE_SCRIPT)

    n_train, largest, n_batches, chunk_shape_ok, peak_growth = output.split()
    n_train, largest, n_batches, peak_growth = int(n_train), int(largest), int(n_batches), int(peak_growth)
    assert 850_000 < n_train < 950_000
    assert largest == 2 * n_train
    assert n_batches == -(-2 * n_train // 250_000)
    assert chunk_shape_ok == "True"
    assert peak_growth < 2**30, f"peak memory grew by {peak_growth / 2**20:.0f} MiB"
