"""Unit tests of the warm and cold splits."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmf.data.splits import make_split

PAIRS = np.array([[r, c] for r in range(20) for c in range(15) if (r + c) % 3 == 0], dtype=np.int64)


def _keys(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, pairs.tolist()))


@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_split_is_disjoint_and_complete(kind):
    split = make_split(PAIRS, 20, kind, val_fraction=0.2, seed=3)

    assert not _keys(split.train_pairs) & _keys(split.val_pairs)
    assert _keys(split.train_pairs) | _keys(split.val_pairs) == _keys(PAIRS)


def test_warm_split_holds_out_fraction_of_pairs():
    split = make_split(PAIRS, 20, "warm", val_fraction=0.2, seed=3)

    assert len(split.val_pairs) == round(0.2 * len(PAIRS))
    assert split.val_rows.tolist() == list(range(20))


def test_cold_split_hides_every_pair_of_held_out_rows():
    split = make_split(PAIRS, 20, "cold", val_fraction=0.25, seed=3)

    assert len(split.val_rows) == 5
    assert not np.isin(split.train_pairs[:, 0], split.val_rows).any()
    assert set(split.val_pairs[:, 0].tolist()) == set(split.val_rows.tolist())
    assert not np.isin(split.train_rows(20), split.val_rows).any()


def test_split_is_reproducible_from_seed():
    first = make_split(PAIRS, 20, "warm", 0.2, seed=7)
    again = make_split(PAIRS, 20, "warm", 0.2, seed=7)
    other = make_split(PAIRS, 20, "warm", 0.2, seed=8)

    assert np.array_equal(first.val_pairs, again.val_pairs)
    assert not np.array_equal(first.val_pairs, other.val_pairs)


def test_zero_fraction_holds_out_nothing():
    split = make_split(PAIRS, 20, "warm", 0.0, seed=0)

    assert not split.has_validation
    assert len(split.train_pairs) == len(PAIRS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "random"}, r"split kind must be one of \('warm', 'cold'\), got 'random'"),
        ({"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\), got 1.0"),
        ({"val_fraction": -0.1}, r"val_fraction must lie in \[0, 1\), got -0.1"),
    ],
)
def test_invalid_split_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_split(PAIRS, 20, **kwargs)
