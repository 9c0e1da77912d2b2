"""Tests of negative sampling and of the epoch builders."""

import sys
from collections import Counter

import numpy as np
import pytest
import torch

from hybridmf.data import sampling
from hybridmf.data.sampling import (
    PositiveSet,
    full_grid_epoch,
    make_generator,
    popularity_weights,
    sample_negatives,
    sampled_epoch,
    triplet_epoch,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def dense_positives() -> PositiveSet:
    """40 rows × 50 columns where each row has 45 random positives (90 %) and 5 negatives."""
    rng = np.random.default_rng(1)
    n_rows, n_cols, per_row = 40, 50, 45
    cols = np.concatenate([rng.choice(n_cols, per_row, replace=False) for _ in range(n_rows)])
    rows = np.repeat(np.arange(n_rows), per_row)
    return PositiveSet(np.stack([rows, cols], axis=1), n_rows=n_rows, n_cols=n_cols)


@pytest.fixture
def sparse_positives() -> PositiveSet:
    """30 rows × 20 columns with about 25 % positives and at least one positive per row."""
    rng = np.random.default_rng(2)
    mask = rng.random((30, 20)) < 0.25
    mask[np.arange(30), rng.integers(0, 20, 30)] = True
    return PositiveSet(np.argwhere(mask), n_rows=30, n_cols=20)


def _pair_counter(rows: torch.Tensor, cols: torch.Tensor) -> Counter:
    return Counter(zip(rows.tolist(), cols.tolist()))


# sample_negatives


@pytest.mark.parametrize("max_rounds", [0, 1, 10])
@pytest.mark.parametrize("weighted", [False, True])
def test_negatives_never_positive_dense(dense_positives, max_rounds, weighted):
    weights = popularity_weights(dense_positives) if weighted else None
    rows = torch.arange(dense_positives.n_rows).repeat(5_000)  # (200_000,)

    negatives = sample_negatives(rows, dense_positives, _generator(), weights, max_rounds=max_rounds)

    assert negatives.shape == rows.shape
    assert negatives.dtype == torch.int64
    assert not dense_positives.contains(rows, negatives).any()
    assert int(negatives.min()) >= 0
    assert int(negatives.max()) < dense_positives.n_cols


@pytest.mark.parametrize("max_rounds", [0, 10])
def test_negatives_uniform_over_complement(dense_positives, max_rounds):
    row = 3
    rows = torch.full((50_000,), row)

    negatives = sample_negatives(rows, dense_positives, _generator(), max_rounds=max_rounds)

    start, end = dense_positives.indptr[row], dense_positives.indptr[row + 1]
    row_positives = set(dense_positives.indices[start:end].tolist())
    complement = sorted(set(range(dense_positives.n_cols)) - row_positives)
    frequencies = torch.bincount(negatives, minlength=dense_positives.n_cols).double() / len(rows)
    assert sorted(torch.nonzero(frequencies).flatten().tolist()) == complement
    # Each of the 5 negatives has probability 0.2; the standard error is 0.0018.
    for column in complement:
        assert abs(float(frequencies[column]) - 0.2) < 0.015


@pytest.mark.parametrize("max_rounds", [0, 10])
def test_negatives_follow_column_weights(max_rounds):
    # Column 0 is positive in rows 1..100, column 1 in rows 1..10, column 2 in row 1 only.
    pairs = [[row, 0] for row in range(1, 101)] + [[row, 1] for row in range(1, 11)] + [[1, 2]]
    positives = PositiveSet(np.array(pairs), n_rows=101, n_cols=6)
    weights = popularity_weights(positives, alpha=0.75)
    rows = torch.zeros(100_000, dtype=torch.int64)  # row 0 has no positives

    negatives = sample_negatives(rows, positives, _generator(), weights, max_rounds=max_rounds)

    expected = weights / weights.sum()
    frequencies = torch.bincount(negatives, minlength=6).double() / len(rows)
    # The largest standard error is sqrt(0.25 / 100_000) = 0.0016.
    assert torch.allclose(frequencies, expected, atol=0.01)


def test_popularity_weighting_shifts_draws():
    pairs = [[row, 0] for row in range(1, 101)] + [[1, 1]]
    positives = PositiveSet(np.array(pairs), n_rows=101, n_cols=10)
    rows = torch.zeros(50_000, dtype=torch.int64)

    uniform = sample_negatives(rows, positives, _generator())
    weighted = sample_negatives(rows, positives, _generator(), popularity_weights(positives, alpha=1.0))

    # Uniform: 1/10 for every column. Weighted by counts (100, 1, and 0.5 for 8 columns):
    # 100 / 105 for column 0.
    assert abs(float((uniform == 0).double().mean()) - 0.1) < 0.01
    assert abs(float((weighted == 0).double().mean()) - 100 / 105) < 0.01


def test_weighted_negatives_exclude_row_positives():
    # Row 0 owns the popular column 0, so its negatives follow the weights of columns 1..3.
    positives = PositiveSet(np.array([[0, 0], [1, 0], [2, 0], [1, 1]]), n_rows=3, n_cols=4)
    weights = torch.tensor([100.0, 1.0, 2.0, 1.0])
    rows = torch.zeros(40_000, dtype=torch.int64)

    negatives = sample_negatives(rows, positives, _generator(), weights, max_rounds=0)

    frequencies = torch.bincount(negatives, minlength=4).double() / len(rows)
    assert torch.allclose(frequencies, torch.tensor([0.0, 0.25, 0.5, 0.25], dtype=torch.float64), atol=0.015)


def test_zero_weight_column_never_drawn(dense_positives):
    weights = torch.ones(dense_positives.n_cols)
    rows = torch.arange(dense_positives.n_rows).repeat(1_000)
    row_negatives = [
        sorted(set(range(dense_positives.n_cols)) - set(dense_positives.indices[start:end].tolist()))
        for start, end in zip(dense_positives.indptr[:-1].tolist(), dense_positives.indptr[1:].tolist())
    ]
    # Give weight 0 to the first negative of every row; each row keeps 4 drawable columns.
    zero_columns = sorted({negatives[0] for negatives in row_negatives})
    weights[zero_columns] = 0.0
    assert not any(set(negatives) <= set(zero_columns) for negatives in row_negatives)

    negatives = sample_negatives(rows, dense_positives, _generator(), weights, max_rounds=2)

    assert not np.isin(negatives.numpy(), zero_columns).any()
    assert not dense_positives.contains(rows, negatives).any()


def test_single_negative_in_wide_row():
    n_cols = 100_000
    missing = 73_219
    cols = np.setdiff1d(np.arange(n_cols), [missing])
    positives = PositiveSet(np.stack([np.zeros_like(cols), cols], axis=1), n_rows=1, n_cols=n_cols)

    negatives = sample_negatives(torch.zeros(1_000, dtype=torch.int64), positives, _generator())

    assert negatives.unique().tolist() == [missing]


def test_row_with_all_positives_raises():
    positives = PositiveSet(np.array([[0, 0], [1, 0], [1, 1], [1, 2], [2, 1]]), n_rows=3, n_cols=3)

    with pytest.raises(ValueError, match=r"row 1: all 3 columns are positives of the row \(1 such row"):
        sample_negatives(torch.tensor([0, 1, 2]), positives, _generator())
    with pytest.raises(ValueError, match=r"row 1"):
        sampled_epoch(positives, 1, _generator())
    with pytest.raises(ValueError, match=r"row 1"):
        triplet_epoch(positives, _generator())
    # Row 1 is only a problem when a negative is requested for it.
    rows = torch.tensor([0, 2, 0, 2])
    negatives = sample_negatives(rows, positives, _generator())
    assert not positives.contains(rows, negatives).any()


def test_row_without_weighted_negatives_raises():
    positives = PositiveSet(np.array([[0, 0], [0, 1], [1, 0]]), n_rows=2, n_cols=3)
    weights = torch.tensor([1.0, 1.0, 0.0])

    with pytest.raises(ValueError, match=r"row 0: all 2 columns with a weight above 0 are positives"):
        sample_negatives(torch.tensor([1, 0]), positives, _generator(), weights)
    assert sample_negatives(torch.tensor([1, 1]), positives, _generator(), weights).tolist() == [1, 1]


@pytest.mark.parametrize(
    ("column_weights", "bad_column"),
    [(None, 1), (torch.tensor([1.0, 1.0, 0.0, 1.0]), 2)],
    ids=["positive-column", "zero-weight-column"],
)
def test_complement_draw_failure_raises(monkeypatch, column_weights, bad_column):
    positives = PositiveSet(np.array([[0, 0], [0, 1]]), n_rows=1, n_cols=4)

    # Simulate rounding that puts every exact draw on a positive or a weight-0 column.
    def draw_bad_column(rows, positives, weights, generator):
        return torch.full_like(rows, bad_column)

    monkeypatch.setattr(sampling, "_draw_from_complement", draw_bad_column)

    with pytest.raises(RuntimeError, match=r"weight 0 for 2 entries \(first row 0\) after 3 passes"):
        sample_negatives(torch.tensor([0, 0]), positives, _generator(), column_weights, max_rounds=0)


def test_empty_rows_gives_empty_negatives(dense_positives):
    negatives = sample_negatives(torch.zeros(0, dtype=torch.int64), dense_positives, _generator())

    assert negatives.shape == (0,)


def test_negatives_with_no_positives():
    positives = PositiveSet(np.zeros((0, 2), dtype=np.int64), n_rows=2, n_cols=4)

    negatives = sample_negatives(torch.tensor([0, 1, 1]), positives, _generator(), max_rounds=0)

    assert negatives.shape == (3,)
    assert int(negatives.max()) < 4


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rows": torch.tensor([0, 3])}, ValueError, r"rows must lie in \[0, 3\), got the range \[0, 3\]"),
        ({"rows": torch.tensor([-1])}, ValueError, r"got the range \[-1, -1\]"),
        ({"rows": torch.tensor([[0]])}, ValueError, r"rows must be 1-D .* \(1, 1\)"),
        ({"rows": torch.tensor([0.0])}, TypeError, r"rows must be an integer tensor, got dtype torch\.float32"),
        ({"rows": [0, 1]}, TypeError, r"rows must be a torch\.Tensor, got list"),
        ({"generator": 0}, TypeError, r"generator must be a torch\.Generator, got int"),
        ({"generator": None}, TypeError, r"got NoneType"),
        ({"column_weights": torch.ones(2)}, ValueError, r"column_weights must have shape \(4,\), got \(2,\)"),
        ({"column_weights": torch.tensor([1.0, -1.0, 1.0, 1.0])}, ValueError, r"got the minimum -1\.0"),
        ({"column_weights": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, ValueError, r"finite, got 1 inf or NaN"),
        ({"column_weights": torch.zeros(4)}, ValueError, r"at least one value above 0"),
        ({"max_rounds": -1}, ValueError, r"max_rounds must be an integer greater than or equal to 0, got -1"),
        ({"max_rounds": 2.5}, ValueError, r"max_rounds .* got 2\.5"),
    ],
)
def test_sample_negatives_invalid_input_raises(kwargs, error, message):
    positives = PositiveSet(np.array([[0, 0], [1, 1]]), n_rows=3, n_cols=4)
    arguments = {"rows": torch.tensor([0, 1]), "positives": positives, "generator": _generator()} | kwargs

    with pytest.raises(error, match=message):
        sample_negatives(**arguments)


def test_sampling_leaves_global_rng_untouched(sparse_positives):
    torch.manual_seed(123)
    state = torch.get_rng_state()

    sampled_epoch(sparse_positives, 2, _generator(), popularity_weights(sparse_positives))
    triplet_epoch(sparse_positives, _generator())
    full_grid_epoch(sparse_positives, _generator())

    assert torch.equal(torch.get_rng_state(), state)


# Epoch builders


def test_full_grid_epoch_lists_every_cell(sparse_positives):
    rows, cols, labels = full_grid_epoch(sparse_positives, _generator())

    n_cells = sparse_positives.n_rows * sparse_positives.n_cols
    assert rows.shape == cols.shape == labels.shape == (n_cells,)
    assert labels.dtype == torch.float32
    assert torch.equal(torch.sort(rows * sparse_positives.n_cols + cols).values, torch.arange(n_cells))
    assert int(labels.sum()) == len(sparse_positives)
    assert torch.equal(labels.bool(), sparse_positives.contains(rows, cols))
    assert not torch.equal(rows * sparse_positives.n_cols + cols, torch.arange(n_cells))


def test_full_grid_epoch_of_some_rows(sparse_positives):
    rows = torch.tensor([7, 2, 19])

    grid_rows, cols, labels = full_grid_epoch(sparse_positives, _generator(), rows)

    n_cols = sparse_positives.n_cols
    assert grid_rows.shape == cols.shape == labels.shape == (3 * n_cols,)
    assert _pair_counter(grid_rows, cols) == Counter((row, col) for row in (7, 2, 19) for col in range(n_cols))
    assert torch.equal(labels.bool(), sparse_positives.contains(grid_rows, cols))


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        (torch.tensor([1, 1, 2]), ValueError, r"rows must not repeat a row, got 3 rows of which 2 are distinct"),
        (torch.tensor([30]), ValueError, r"rows must lie in \[0, 30\), got the range \[30, 30\]"),
        (torch.tensor([1.0]), TypeError, r"rows must be an integer tensor"),
    ],
)
def test_full_grid_epoch_invalid_rows_raise(sparse_positives, rows, error, message):
    with pytest.raises(error, match=message):
        full_grid_epoch(sparse_positives, _generator(), rows)


@pytest.mark.parametrize("builder", ["sampled", "triplet"])
def test_epoch_subset_uses_only_those_positives(dense_positives, builder):
    subset = torch.tensor([0, 5, 44, 45, 1799])
    pairs = dense_positives.pairs()[subset]  # (5, 2)
    expected = Counter({pair: 2 for pair in zip(pairs[:, 0].tolist(), pairs[:, 1].tolist())})

    if builder == "sampled":
        rows, cols, labels = sampled_epoch(dense_positives, 2, _generator(), subset=subset)
        positive = labels == 1
        assert _pair_counter(rows[positive], cols[positive]) == Counter({pair: 1 for pair in expected})
        negative_rows, negatives = rows[~positive], cols[~positive]
    else:
        rows, pos_cols, negatives = triplet_epoch(dense_positives, _generator(), n_negatives=2, subset=subset)
        assert _pair_counter(rows, pos_cols) == expected
        negative_rows = rows

    assert len(negatives) == 10
    assert not dense_positives.contains(negative_rows, negatives).any()


@pytest.mark.parametrize(
    ("subset", "error", "message"),
    [
        (torch.tensor([0, 600]), ValueError, r"subset must lie in \[0, 600\), got the range \[0, 600\]"),
        (torch.tensor([[0]]), ValueError, r"subset must be 1-D with shape \(N,\), got shape \(1, 1\)"),
        (torch.tensor([True]), TypeError, r"subset must be an integer tensor, got dtype torch\.bool"),
        ([0, 1], TypeError, r"subset must be a torch\.Tensor, got list"),
    ],
)
def test_epoch_invalid_subset_raises(subset, error, message):
    positives = PositiveSet(np.array([[row, col] for row in range(30) for col in range(20)]), n_rows=30, n_cols=40)

    with pytest.raises(error, match=message):
        sampled_epoch(positives, 1, _generator(), subset=subset)
    with pytest.raises(error, match=message):
        triplet_epoch(positives, _generator(), subset=subset)


def test_sampled_epoch_positives_and_negatives(sparse_positives):
    neg_ratio = 3

    rows, cols, labels = sampled_epoch(sparse_positives, neg_ratio, _generator())

    n_positives = len(sparse_positives)
    assert rows.shape == cols.shape == labels.shape == (n_positives * (1 + neg_ratio),)
    assert rows.dtype == cols.dtype == torch.int64
    assert labels.dtype == torch.float32
    positive = labels == 1
    assert int(positive.sum()) == n_positives
    assert int((labels == 0).sum()) == n_positives * neg_ratio
    pairs = sparse_positives.pairs()
    assert _pair_counter(rows[positive], cols[positive]) == _pair_counter(pairs[:, 0], pairs[:, 1])
    assert not sparse_positives.contains(rows[~positive], cols[~positive]).any()
    # Each row gets neg_ratio negatives per positive.
    negative_row_counts = torch.bincount(rows[~positive], minlength=sparse_positives.n_rows)
    assert torch.equal(negative_row_counts, neg_ratio * sparse_positives.row_counts)
    # The positives are shuffled among the negatives, not stacked first.
    assert not bool(positive[:n_positives].all())


def test_sampled_epoch_weighted(dense_positives):
    rows, cols, labels = sampled_epoch(dense_positives, 2, _generator(), popularity_weights(dense_positives))

    assert torch.equal(dense_positives.contains(rows, cols), labels.bool())


def test_triplet_epoch_positives_exact(sparse_positives):
    n_negatives = 3

    rows, pos_cols, neg_cols = triplet_epoch(sparse_positives, _generator(), n_negatives=n_negatives)

    assert rows.shape == pos_cols.shape == neg_cols.shape == (len(sparse_positives) * n_negatives,)
    pairs = sparse_positives.pairs()
    expected = Counter({pair: n_negatives for pair in zip(pairs[:, 0].tolist(), pairs[:, 1].tolist())})
    assert _pair_counter(rows, pos_cols) == expected
    assert sparse_positives.contains(rows, pos_cols).all()
    assert not sparse_positives.contains(rows, neg_cols).any()


def test_triplet_epoch_weighted_dense(dense_positives):
    rows, pos_cols, neg_cols = triplet_epoch(dense_positives, _generator(), popularity_weights(dense_positives))

    assert dense_positives.contains(rows, pos_cols).all()
    assert not dense_positives.contains(rows, neg_cols).any()


@pytest.mark.parametrize(
    "build",
    [
        lambda positives, generator: sampled_epoch(positives, 2, generator),
        lambda positives, generator: sampled_epoch(positives, 2, generator, popularity_weights(positives)),
        lambda positives, generator: triplet_epoch(positives, generator, n_negatives=2),
        lambda positives, generator: triplet_epoch(positives, generator, popularity_weights(positives)),
        full_grid_epoch,
    ],
    ids=["sampled", "sampled-weighted", "triplet", "triplet-weighted", "full-grid"],
)
def test_epoch_deterministic_per_seed(sparse_positives, build):
    first = build(sparse_positives, _generator(5))
    again = build(sparse_positives, _generator(5))
    other = build(sparse_positives, _generator(6))

    for tensor, repeated in zip(first, again):
        assert torch.equal(tensor, repeated)
    assert any(not torch.equal(tensor, changed) for tensor, changed in zip(first, other))


def test_epoch_with_no_positives():
    positives = PositiveSet(np.zeros((0, 2), dtype=np.int64), n_rows=2, n_cols=3)

    rows, cols, labels = sampled_epoch(positives, 2, _generator())
    triplet_rows, pos_cols, neg_cols = triplet_epoch(positives, _generator())

    assert rows.shape == cols.shape == labels.shape == (0,)
    assert triplet_rows.shape == pos_cols.shape == neg_cols.shape == (0,)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda positives: sampled_epoch(positives, 0, _generator()),
            r"neg_ratio must be an integer greater than or equal to 1, got 0",
        ),
        (lambda positives: sampled_epoch(positives, True, _generator()), r"neg_ratio .* got True"),
        (lambda positives: sampled_epoch(positives, 1.0, _generator()), r"neg_ratio .* got 1\.0"),
        (lambda positives: triplet_epoch(positives, _generator(), n_negatives=0), r"n_negatives .* got 0"),
    ],
)
def test_epoch_invalid_count_raises(sparse_positives, call, message):
    with pytest.raises(ValueError, match=message):
        call(sparse_positives)


# Generators and weights


def test_make_generator_streams():
    def draw(seed, epoch, rank):
        return torch.randint(10**9, (4,), generator=make_generator(seed, epoch, rank))

    assert torch.equal(draw(0, 0, 0), draw(0, 0, 0))
    assert not torch.equal(draw(0, 0, 0), draw(0, 1, 0))
    assert not torch.equal(draw(0, 0, 0), draw(0, 0, 1))
    assert not torch.equal(draw(0, 1, 0), draw(0, 0, 1))
    assert not torch.equal(draw(0, 0, 0), draw(1, 0, 0))
    # The stream shared by all processes differs from every rank's stream.
    assert torch.equal(draw(0, 1, None), draw(0, 1, None))
    assert not any(torch.equal(draw(0, 1, None), draw(0, 1, rank)) for rank in range(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, r"seed must be an integer greater than or equal to 0, got -1"),
        ({"epoch": 1.5}, r"epoch .* got 1\.5"),
        ({"rank": -2}, r"rank .* got -2"),
        ({"rank": 1.0}, r"rank .* got 1\.0"),
    ],
)
def test_make_generator_invalid_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_generator(**({"seed": 0} | kwargs))


def test_popularity_weights_values():
    pairs = [[row, 0] for row in range(8)] + [[0, 1]]
    positives = PositiveSet(np.array(pairs), n_rows=8, n_cols=3)

    weights = popularity_weights(positives)  # counts 8, 1, 0

    assert weights.dtype == torch.float64
    assert weights.tolist() == pytest.approx([8**0.75, 1.0, 0.5**0.75])
    assert popularity_weights(positives, alpha=0.0).tolist() == [1.0, 1.0, 1.0]
    assert popularity_weights(positives, alpha=1.0, floor_count=0.1).tolist() == pytest.approx([8.0, 1.0, 0.1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -0.5}, r"alpha must be a finite number greater than or equal to 0, got -0\.5"),
        ({"alpha": float("inf")}, r"alpha .* got inf"),
        ({"floor_count": 0.0}, r"floor_count must be a finite number greater than 0, got 0\.0"),
    ],
)
def test_popularity_weights_invalid_raises(sparse_positives, kwargs, message):
    with pytest.raises(ValueError, match=message):
        popularity_weights(sparse_positives, **kwargs)


# Memory


LARGE_EPOCH_SCRIPT = """
import resource
import sys

import numpy as np
import psutil
import torch

from hybridmf.data.sampling import PositiveSet, popularity_weights, sampled_epoch, triplet_epoch

n_rows, n_cols, n_pairs = 200_000, 50_000, 1_000_000
rng = np.random.default_rng(0)
positives = PositiveSet(
    np.stack([rng.integers(0, n_rows, n_pairs), rng.integers(0, n_cols, n_pairs)], axis=1), n_rows, n_cols
)
weights = popularity_weights(positives)
generator = torch.Generator().manual_seed(0)
baseline = psutil.Process().memory_info().rss

largest = 0
for tensors in (
    sampled_epoch(positives, 1, generator),
    sampled_epoch(positives, 1, generator, weights),
    triplet_epoch(positives, generator, weights),
):
    largest = max(largest, *(tensor.numel() for tensor in tensors))
    del tensors

# ru_maxrss is in KiB on Linux and in bytes on macOS.
unit = 1 if sys.platform == "darwin" else 1024
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
print(len(positives), largest, peak - baseline)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="the resource module is Unix-only")
def test_large_epochs_memory_independent_of_grid(run_fresh_python):
    """A 200,000 × 50,000 grid has 10**10 cells, so a dense bool mask alone would need 10 GB.

    The script runs in a fresh interpreter so that the peak resident set size is not an
    earlier test's peak.
    """
    pytest.importorskip("psutil")
    output = run_fresh_python(LARGE_EPOCH_SCRIPT)

    n_positives, largest, peak_growth = (int(value) for value in output.split())
    assert 990_000 < n_positives <= 1_000_000
    assert largest == 2 * n_positives
    assert largest < 200_000 * 50_000
    assert peak_growth < 2**30, f"peak memory grew by {peak_growth / 2**20:.0f} MiB"
