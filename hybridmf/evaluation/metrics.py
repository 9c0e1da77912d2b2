"""Ranking and classification metrics for score matrices over (row, column) pairs.

A scorer (the model or a baseline) produces, for a chunk of R rows (drugs), a dense
``scores`` matrix of shape ``(R, C)``. ``candidates`` marks the pairs under evaluation
(every pair that is not a training positive), and ``positives`` marks the held-out
positives, which must be a subset of the candidates. Pairs outside ``candidates`` never
enter any metric, whatever their score.

Two families of metrics are computed:

* Pooled metrics treat all candidate pairs of all rows as one binary problem: ``auroc``
  and ``aupr`` (exact, through torchmetrics, or estimated on a bounded sample of pairs
  with ``RankingEvaluator(pooled_sample=...)``) and ``accuracy`` at a logit threshold.
* Per-row metrics rank each row's candidates and average over rows: ``row_auroc``,
  ``row_aupr``, ``ndcg@k``, ``hr@k``, ``precision@k``, ``recall@k`` and ``mrr``.

Ties. Baselines such as popularity give many candidates the same integer score, so the
order among tied scores matters. Each per-row ranking metric except AP is the expected
value over a uniformly random order of tied candidates. This is what a tie counting one
half means for AUROC, and it is sklearn's tie-averaged NDCG (``ignore_ties=False``). For
``hr@k``, ``precision@k``, ``recall@k`` and ``mrr`` it replaces the arbitrary order that
``torch.topk`` or ``argsort`` would pick. Without ties every metric reduces to its usual
definition. Row AP follows sklearn's ``average_precision_score``, which steps at
distinct thresholds, so a tied group is retrieved all at once.

Why not torchmetrics' retrieval metrics. ``RetrievalMetric`` (torchmetrics 1.9) groups
the flattened inputs by an ``indexes`` tensor and loops over the groups in Python, one
small computation per row. It scores a group with a single class as 0 instead of
skipping it, and it orders ties by ``topk``/``argsort``. Its AP, precision, recall and
reciprocal rank also drop every positive whose score is not above 0, which breaks them
for logits. Here every per-row metric is
computed for all rows of a chunk at once: each row's candidate scores are sorted, and
``torch.searchsorted`` counts, for every candidate, the candidates and positives of its
row that score at least as high and strictly higher. AUROC, AP, NDCG and hits@k follow
from these counts. HR and MRR follow from the tie group of each row's best positive.

Logits. ``binary_auroc`` and ``binary_average_precision`` apply a sigmoid to inputs
outside [0, 1]. In float32 that maps every logit above about 17 to 1.0 and creates
false ties, and popularity counts above 16 collapse the same way. The pooled scores are
therefore replaced by their dense ranks scaled into [0, 1] before the call, which keeps
the order and the ties exactly.

tests/test_metrics.py checks these functions against scikit-learn (``roc_auc_score``,
``average_precision_score``, ``ndcg_score``), against enumeration of every order of
tied candidates, and against torchmetrics' retrieval functions on data without ties.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
)

logger = logging.getLogger(__name__)

__all__ = ["RankingEvaluator", "evaluate_scores"]


def _check_k(k: int, argument: str = "k") -> int:
    """Return ``k`` after checking that it is an integer of at least 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{argument} must be an integer >= 1, got {k!r} of type {type(k).__name__}")
    if k < 1:
        raise ValueError(f"{argument} must be an integer >= 1, got {k}")
    return int(k)


def _check_threshold(threshold: float | None) -> float | None:
    """Return ``threshold`` as a float, or None, after rejecting non-numbers and NaN."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"threshold must be a real number or None, got {threshold!r} "
            f"of type {type(threshold).__name__}"
        )
    if math.isnan(threshold):
        raise ValueError("threshold must be a real number or None, got nan")
    return float(threshold)


def _as_tensor(value: Tensor | np.ndarray, argument: str) -> Tensor:
    """Convert a numpy array to a tensor and reject every other non-tensor type."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"{argument} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _check_mask(mask: Tensor, argument: str) -> Tensor:
    """Return ``mask`` as a bool tensor. Integer and float masks may contain only 0 and 1."""
    if mask.dtype == torch.bool:
        return mask
    if mask.is_complex() or not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{argument} must be a bool tensor or contain only 0 and 1 (dtype {mask.dtype})")
    return mask != 0


def _check_inputs(
    scores: Tensor | np.ndarray,
    candidates: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate one chunk and return detached scores with bool masks on the scores' device.

    Integer and bool scores become float64 and half-precision scores become float32.
    Both conversions are exact.

    Raises:
        TypeError: If an input is not a tensor or array, or ``scores`` is complex.
        ValueError: If ``scores`` is not 2-D, the shapes differ, a mask contains values
            other than 0 and 1, a positive is not a candidate, or a candidate score is NaN.
    """
    scores = _as_tensor(scores, "scores").detach()
    candidates = _as_tensor(candidates, "candidates")
    positives = _as_tensor(positives, "positives")

    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D with shape (rows, columns), got shape {tuple(scores.shape)}")
    for argument, mask in (("candidates", candidates), ("positives", positives)):
        if mask.shape != scores.shape:
            raise ValueError(
                f"{argument} has shape {tuple(mask.shape)} but scores has shape "
                f"{tuple(scores.shape)}, and both must have the same (rows, columns) shape"
            )

    if scores.is_complex():
        raise TypeError(f"scores must be real-valued, got dtype {scores.dtype}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    elif scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.to(torch.float32)

    candidates = _check_mask(candidates, "candidates").to(scores.device)
    positives = _check_mask(positives, "positives").to(scores.device)

    outside = positives & ~candidates
    if outside.any():
        row, column = (int(index) for index in outside.nonzero()[0])
        raise ValueError(
            f"positives must be a subset of candidates, but {int(outside.sum())} positive "
            f"pairs are not candidates (first at row {row}, column {column} of this chunk)"
        )

    nan_candidates = torch.isnan(scores) & candidates
    if nan_candidates.any():
        row, column = (int(index) for index in nan_candidates.nonzero()[0])
        raise ValueError(
            f"scores must be real numbers at candidate pairs, but {int(nan_candidates.sum())} are NaN "
            f"(first at row {row}, column {column} of this chunk)"
        )

    return scores, candidates, positives


def _count_at_or_above(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Count, for every entry, the masked entries of its row that score >= and > it.

    Args:
        scores: ``(R, C)`` float scores without NaN.
        mask: ``(R, C)`` bool, the entries to count.

    Returns:
        Two ``(R, C)`` int64 tensors: the count of masked entries in the same row with a
        score greater than or equal to the entry's score, and the count with a strictly
        greater score.
    """
    n_columns = scores.shape[1]
    # Unmasked entries become -inf, so they sort first and are never strictly greater.
    sorted_scores = torch.sort(scores.masked_fill(~mask, -math.inf), dim=1).values  # (R, C)
    n_masked = mask.sum(dim=1, keepdim=True)  # (R, 1)

    first_not_less = torch.searchsorted(sorted_scores, scores, side="left")  # (R, C)
    first_greater = torch.searchsorted(sorted_scores, scores, side="right")  # (R, C)

    # A -inf score is >= every -inf padding entry, and the minimum drops those entries.
    count_at_or_above = torch.minimum(n_columns - first_not_less, n_masked)  # (R, C)
    count_above = n_columns - first_greater  # (R, C)
    return count_at_or_above, count_above


def _log_binomial(n: Tensor, r: Tensor) -> Tensor:
    """Return log(n choose r) elementwise for float64 tensors with 0 <= r <= n."""
    return torch.lgamma(n + 1) - torch.lgamma(r + 1) - torch.lgamma(n - r + 1)


def _first_positive_metrics(
    scores: Tensor, candidates: Tensor, positives: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Compute expected HR@k and reciprocal rank from each row's best positive.

    The first positive in the ranking is one of the positives tied at the row's highest
    positive score s. Let a be the number of candidates scoring above s, T the number of
    candidates tied at s, and p the positives among them. Under a random order of the T
    tied candidates, the first positive sits at position J within the group with
    P(J = j) = C(T - j, p - 1) / C(T, p), for j = 1 .. T - p + 1.

    Returns:
        Two ``(R,)`` float64 tensors, HR@k and reciprocal rank. Rows without a positive
        get meaningless values that the caller must drop.
    """
    best = scores.masked_fill(~positives, -math.inf).max(dim=1, keepdim=True).values  # (R, 1)
    tied = candidates & (scores == best)  # (R, C)
    above = (candidates & (scores > best)).sum(dim=1).double()  # (R,)
    group_size = tied.sum(dim=1).double().clamp(min=1)  # (R,)
    group_positives = (tied & positives).sum(dim=1).double().clamp(min=1)  # (R,)
    group_negatives = group_size - group_positives  # (R,)

    # HR@k: m = clamp(k - a, 0, T) slots of the top k fall in the tied group, and no
    # positive is among them with probability C(T - p, m) / C(T, m).
    slots = (k - above).clamp(min=0)
    slots = torch.minimum(slots, group_size)
    log_all_negative = _log_binomial(group_negatives, slots.clamp(max=group_negatives)) - _log_binomial(
        group_size, slots
    )
    all_negative = torch.where(slots <= group_negatives, log_all_negative.exp(), 0.0)
    hit_rate = 1.0 - all_negative

    # Reciprocal rank: E[1 / (a + J)] summed over the possible positions j of J.
    max_position = int((group_negatives + 1).max().item()) if scores.shape[0] > 0 else 1
    positions = torch.arange(1, max_position + 1, dtype=torch.float64, device=scores.device)  # (J,)
    valid = positions[None, :] <= (group_negatives + 1)[:, None]  # (R, J)
    remaining = (group_size[:, None] - positions[None, :]).clamp(min=0)  # (R, J)
    choose_rest = (group_positives - 1)[:, None].expand_as(remaining)  # (R, J)
    log_probability = _log_binomial(remaining, choose_rest.minimum(remaining)) - _log_binomial(
        group_size, group_positives
    )[:, None]  # (R, J)
    reciprocal = torch.where(valid, log_probability.exp() / (above[:, None] + positions[None, :]), 0.0)
    reciprocal_rank = reciprocal.sum(dim=1)  # (R,)
    return hit_rate, reciprocal_rank


def _per_row_metrics(
    scores: Tensor, candidates: Tensor, positives: Tensor, k: int, precision_ks: tuple[int, ...] = ()
) -> dict[str, Tensor]:
    """Compute every per-row metric for one validated chunk, without a loop over rows.

    Args:
        scores: ``(R, C)`` float scores.
        candidates: ``(R, C)`` bool, the pairs under evaluation.
        positives: ``(R, C)`` bool, held-out positives, a subset of ``candidates``.
        k: Cut-off of the top-k metrics.
        precision_ks: Further cut-offs at which to count hits.

    Returns:
        ``(R,)`` float64 tensors keyed ``auroc``, ``ap``, ``ndcg``, ``hits``, ``hr``,
        ``mrr`` and ``hits@{c}`` for each ``c`` in ``precision_ks``, plus ``(R,)`` int64
        ``n_candidates`` and ``n_positives``. ``auroc`` and ``ap`` are NaN for rows without
        both a positive and a negative candidate, and the other metrics are NaN for rows
        without a positive.
    """
    n_columns = scores.shape[1]
    scores = scores.masked_fill(~candidates, 0.0)  # (R, C), drops NaN or inf outside candidates

    n_candidates = candidates.sum(dim=1)  # (R,)
    n_positives = positives.sum(dim=1)  # (R,)
    n_negatives = n_candidates - n_positives  # (R,)
    has_positive = n_positives > 0
    has_both = has_positive & (n_negatives > 0)
    safe_positives = n_positives.clamp(min=1).double()

    candidates_at_or_above, candidates_above = _count_at_or_above(scores, candidates)  # (R, C) each
    positives_at_or_above, positives_above = _count_at_or_above(scores, positives)  # (R, C) each

    # AUROC: each positive wins against lower negatives and half-wins against tied ones.
    negatives_at_or_above = candidates_at_or_above - positives_at_or_above  # (R, C)
    negatives_tied = negatives_at_or_above - (candidates_above - positives_above)  # (R, C)
    negatives_below = n_negatives[:, None] - negatives_at_or_above  # (R, C)
    wins = torch.where(positives, negatives_below.double() + 0.5 * negatives_tied, 0.0).sum(dim=1)  # (R,)
    auroc = wins / (n_positives * n_negatives).clamp(min=1)

    # AP (sklearn): mean over positives of the precision at that positive's score.
    precision_at = positives_at_or_above.double() / candidates_at_or_above.clamp(min=1)  # (R, C)
    ap = torch.where(positives, precision_at, 0.0).sum(dim=1) / safe_positives

    # A candidate's tie group occupies ranks above + 1 .. above + size.
    group_start = candidates_above  # (R, C)
    group_size = (candidates_at_or_above - candidates_above).clamp(min=1)  # (R, C)

    # NDCG@k: a positive's expected discount is the mean discount over its group's ranks.
    rank_discount = 1.0 / torch.log2(torch.arange(n_columns, dtype=torch.float64, device=scores.device) + 2.0)
    rank_discount[k:] = 0.0
    cumulative_discount = torch.cat([rank_discount.new_zeros(1), rank_discount.cumsum(dim=0)])  # (C + 1,)
    expected_discount = (
        cumulative_discount[group_start + group_size] - cumulative_discount[group_start]
    ) / group_size  # (R, C)
    dcg = torch.where(positives, expected_discount, 0.0).sum(dim=1)  # (R,)
    ideal_dcg = cumulative_discount[n_positives]  # (R,), >= 1 for rows with a positive
    ndcg = dcg / ideal_dcg.clamp(min=1.0)

    hits = _expected_hits(positives, group_start, group_size, k)  # (R,)
    more_hits = {f"hits@{cutoff}": _expected_hits(positives, group_start, group_size, cutoff) for cutoff in precision_ks}

    hit_rate, reciprocal_rank = _first_positive_metrics(scores, candidates, positives, k)

    nan = torch.tensor(math.nan, dtype=torch.float64, device=scores.device)
    return {
        "auroc": torch.where(has_both, auroc, nan),
        "ap": torch.where(has_both, ap, nan),
        "ndcg": torch.where(has_positive, ndcg, nan),
        "hits": torch.where(has_positive, hits, nan),
        "hr": torch.where(has_positive, hit_rate, nan),
        "mrr": torch.where(has_positive, reciprocal_rank, nan),
        **{name: torch.where(has_positive, values, nan) for name, values in more_hits.items()},
        "n_candidates": n_candidates,
        "n_positives": n_positives,
    }


def _expected_hits(positives: Tensor, group_start: Tensor, group_size: Tensor, k: int) -> Tensor:
    """Return each row's expected number of positives in its top k, ``(R,)`` float64.

    ``min(max(k - start, 0), size)`` of the ``size`` ranks of a tie group that starts after
    rank ``start`` lie in the top k, and each of its candidates takes that share of them.
    """
    top_k_share = torch.minimum((k - group_start).clamp(min=0), group_size).double() / group_size  # (R, C)
    return torch.where(positives, top_k_share, 0.0).sum(dim=1)  # (R,)


def _dense_rank_scale(scores: Tensor) -> Tensor:
    """Map scores to their dense ranks scaled into [0, 1], keeping order and ties.

    torchmetrics applies a sigmoid to predictions outside [0, 1], which saturates for
    large logits and counts. Distinct float64 values r / n stay distinct for n < 2**52.
    """
    unique_scores, inverse = torch.unique(scores, return_inverse=True)
    return inverse.double() / max(unique_scores.numel() - 1, 1)


# Names and order of the per-row sums and the counts in RankingEvaluator.state().
_SUM_NAMES = ("auroc", "ap", "ndcg", "hits", "recall", "hr", "mrr")
_COUNT_NAMES = ("_rows_total", "_rows_with_both", "_rows_with_positive", "_n_candidates", "_n_positives", "_n_correct")
_UINT64_MASK = (1 << 64) - 1


def _check_pooled_sample(pooled_sample: int | None) -> int | None:
    """Return ``pooled_sample`` as an int, or None, after checking that it is at least 1."""
    if pooled_sample is None:
        return None
    if isinstance(pooled_sample, bool) or not isinstance(pooled_sample, (int, np.integer)):
        raise TypeError(
            f"pooled_sample must be an integer >= 1 or None, got {pooled_sample!r} of type {type(pooled_sample).__name__}"
        )
    if pooled_sample < 1:
        raise ValueError(f"pooled_sample must be an integer >= 1 or None, got {pooled_sample}")
    return int(pooled_sample)


def _mix64(values: np.ndarray) -> np.ndarray:
    """Apply the splitmix64 finalizer to uint64 values, a bijection with well-mixed bits."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def _pair_keys(pair_ids: Tensor, seed: int) -> Tensor:
    """Hash ``(n,)`` int64 pair ids (``row * C + column``) to pseudo-random int64 keys in ``[0, 2**63)``."""
    with np.errstate(over="ignore"):
        salt = _mix64(np.array([seed & _UINT64_MASK], dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15))
        keys = _mix64(pair_ids.numpy().astype(np.uint64) ^ salt)
    return torch.from_numpy((keys >> np.uint64(1)).astype(np.int64))


class RankingEvaluator:
    """Accumulator of ranking and classification metrics over chunks of rows.

    :meth:`update` adds a chunk and :meth:`compute` returns a flat dict of floats.

    Keys of :meth:`compute`, with ``{k}`` the cut-off:

    * ``auroc``, ``aupr``: pooled over all candidate pairs seen, exact (torchmetrics
      ``binary_auroc`` and ``binary_average_precision`` with ``thresholds=None``).
      torchmetrics computes them in float32, so they agree with sklearn to about 1e-7.
    * ``accuracy``: pooled accuracy of ``scores >= threshold`` against ``positives`` over
      the candidates, or NaN when ``threshold`` is None.
    * ``row_auroc``, ``row_aupr``: mean over rows with both a positive and a negative
      candidate. ``rows_skipped`` counts the other rows.
    * ``ndcg@{k}``, ``hr@{k}``, ``precision@{k}`` (hits in the top k divided by k),
      ``recall@{k}`` (hits divided by the row's positives) and ``mrr`` (reciprocal rank of
      the first positive): mean over rows with at least one positive, counted in
      ``rows_evaluated``. Ties are averaged as the module docstring describes.
    * ``precision@{c}`` for every further cut-off ``c`` in ``precision_ks``, averaged like
      ``precision@{k}``.
    * ``n_candidates``, ``n_positives``: totals over all rows.

    A metric without any row or pair to average over is NaN.

    Memory: the per-row sums are O(1). For the pooled ``auroc`` and ``aupr`` the evaluator
    keeps every candidate's score and label, O(candidates): MEF's full 746 x 817 grid is
    about 0.6 million pairs, about 3 MB with float32 scores. ``pooled=False`` skips this
    state and reports those two keys as NaN. ``pooled_sample=N`` bounds it at N pairs:
    the pooled ``auroc`` and ``aupr`` are then computed on a uniform random sample of at
    most N candidate pairs. The estimate's standard error shrinks roughly as one over the
    square root of the positives in the sample (an approximation, not a bound).
    The sample is chosen by a hash of each pair's (row, column) and ``sample_seed``, so
    it is the same however the rows are split into chunks or processes, provided
    :meth:`update` receives the row indices.

    :meth:`state` and :meth:`merge_state` move the accumulated state between evaluators,
    for example to combine the shards of a distributed evaluation.

    Args:
        k: Cut-off for ``ndcg``, ``hr``, ``precision`` and ``recall``.
        threshold: Score at or above which a pair is predicted positive for
            ``accuracy``. The default 0.0 suits logits. Pass None for scores that are not
            logits, such as the baselines' scores.
        pooled: Whether to keep candidate scores for the pooled ``auroc`` and ``aupr``.
        precision_ks: Further cut-offs at which precision@c is reported, for a curve of
            precision against the cut-off at little extra cost.
        pooled_sample: Maximum number of candidate pairs kept for the pooled ``auroc``
            and ``aupr``, an integer of at least 1; None keeps every candidate (exact).
        sample_seed: Seed of the hash that picks the pooled sample.

    Raises:
        TypeError: If ``k``, a cut-off in ``precision_ks`` or ``pooled_sample`` is not an
            integer, or ``threshold`` is not a number or None.
        ValueError: If ``k`` or a cut-off is below 1, ``pooled_sample < 1`` or
            ``threshold`` is NaN.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[2.0, -1.0, 0.5, 3.0], [0.0, 1.0, -2.0, 0.5]])
        >>> candidates = torch.tensor([[True, True, True, False], [True, True, True, True]])
        >>> positives = torch.tensor([[False, True, True, False], [False, True, False, False]])
        >>> evaluator = RankingEvaluator(k=1)
        >>> evaluator.update(scores, candidates, positives)
        >>> metrics = evaluator.compute()
        >>> metrics["row_auroc"], metrics["mrr"], metrics["hr@1"], metrics["rows_evaluated"]
        (0.5, 0.75, 0.5, 2.0)
    """

    def __init__(
        self,
        k: int = 10,
        threshold: float | None = 0.0,
        *,
        pooled: bool = True,
        precision_ks: Sequence[int] = (),
        pooled_sample: int | None = None,
        sample_seed: int = 0,
    ) -> None:
        self.k = _check_k(k)
        self.threshold = _check_threshold(threshold)
        self.pooled = bool(pooled)
        self.precision_ks = tuple(dict.fromkeys(_check_k(cutoff, "each of precision_ks") for cutoff in precision_ks))
        self._sum_names = (*_SUM_NAMES, *(f"hits@{cutoff}" for cutoff in self.precision_ks))
        self.pooled_sample = _check_pooled_sample(pooled_sample)
        self.sample_seed = int(sample_seed)
        self.reset()

    def reset(self) -> None:
        """Clear all accumulated state."""
        self._sums = {name: 0.0 for name in self._sum_names}
        self._rows_total = 0
        self._rows_with_both = 0
        self._rows_with_positive = 0
        self._n_candidates = 0
        self._n_positives = 0
        self._n_correct = 0
        self._pooled_scores: list[Tensor] = []
        self._pooled_labels: list[Tensor] = []
        # Hash keys of the sampled pairs, in step with _pooled_scores; empty unless
        # pooled_sample is set. Keys at or above _key_cutoff can no longer be sampled.
        self._pooled_keys: list[Tensor] = []
        self._n_pooled = 0
        self._key_cutoff: int | None = None

    def update(
        self,
        scores: Tensor | np.ndarray,
        candidates: Tensor | np.ndarray,
        positives: Tensor | np.ndarray,
        rows: Tensor | np.ndarray | None = None,
    ) -> None:
        """Add one chunk of rows.

        Args:
            scores: ``(R, C)`` float scores, any real values including logits. Integer
                scores are converted to float64. Entries outside ``candidates`` are ignored
                and may be NaN or infinite.
            candidates: ``(R, C)`` bool, the pairs under evaluation.
            positives: ``(R, C)`` bool, held-out positives, which must be a subset of
                ``candidates``.
            rows: ``(R,)`` integer indices of the chunk's rows. Only ``pooled_sample``
                uses them, to pick the same pairs however the rows are chunked. When
                None, a row is identified by its position among all rows added since
                the last reset.

        Raises:
            TypeError: If an input is not a tensor or array, or ``scores`` is complex.
            ValueError: If ``scores`` is not 2-D, the shapes differ, a mask contains
                values other than 0 and 1, a positive is not a candidate, a candidate
                score is NaN, or ``rows`` does not have shape ``(R,)``.
        """
        scores, candidates, positives = _check_inputs(scores, candidates, positives)
        if rows is not None:
            rows = _as_tensor(rows, "rows").to(device="cpu", dtype=torch.int64)
            if tuple(rows.shape) != (scores.shape[0],):
                raise ValueError(
                    f"rows must have shape ({scores.shape[0]},) to match scores, got {tuple(rows.shape)}"
                )
        if self.pooled:
            self._add_pooled(scores, candidates, positives, rows)
        per_row = _per_row_metrics(scores, candidates, positives, self.k, self.precision_ks)

        has_both = ~torch.isnan(per_row["auroc"])
        has_positive = ~torch.isnan(per_row["ndcg"])
        n_positives = per_row["n_positives"].double()
        self._sums["auroc"] += per_row["auroc"][has_both].sum().item()
        self._sums["ap"] += per_row["ap"][has_both].sum().item()
        self._sums["ndcg"] += per_row["ndcg"][has_positive].sum().item()
        self._sums["hits"] += per_row["hits"][has_positive].sum().item()
        self._sums["recall"] += (per_row["hits"][has_positive] / n_positives[has_positive]).sum().item()
        self._sums["hr"] += per_row["hr"][has_positive].sum().item()
        self._sums["mrr"] += per_row["mrr"][has_positive].sum().item()
        for cutoff in self.precision_ks:
            self._sums[f"hits@{cutoff}"] += per_row[f"hits@{cutoff}"][has_positive].sum().item()

        self._rows_total += scores.shape[0]
        self._rows_with_both += int(has_both.sum())
        self._rows_with_positive += int(has_positive.sum())
        self._n_candidates += int(per_row["n_candidates"].sum())
        self._n_positives += int(per_row["n_positives"].sum())

        if self.threshold is not None:
            correct = (scores >= self.threshold) == positives  # (R, C)
            self._n_correct += int((correct & candidates).sum())

    def _add_pooled(self, scores: Tensor, candidates: Tensor, positives: Tensor, rows: Tensor | None) -> None:
        """Store the chunk's candidate scores and labels, or the part of them in the sample."""
        chunk_scores = scores[candidates]  # (n,) in row-major order
        chunk_labels = positives[candidates]  # (n,)
        if self.pooled_sample is None:
            self._pooled_scores.append(chunk_scores)
            self._pooled_labels.append(chunk_labels)
            return
        n_rows, n_columns = scores.shape
        if rows is None:
            rows = torch.arange(self._rows_total, self._rows_total + n_rows)
        row_position, column = candidates.cpu().nonzero(as_tuple=True)  # (n,), (n,) in row-major order
        keys = _pair_keys(rows[row_position] * n_columns + column, self.sample_seed)  # (n,)
        if self._key_cutoff is not None:
            keep = keys < self._key_cutoff  # (n,)
            keys = keys[keep]
            keep = keep.to(scores.device)
            chunk_scores, chunk_labels = chunk_scores[keep], chunk_labels[keep]
        self._pooled_keys.append(keys)
        self._pooled_scores.append(chunk_scores)
        self._pooled_labels.append(chunk_labels)
        self._n_pooled += len(keys)
        if self._n_pooled > 2 * self.pooled_sample:
            self._compact_pooled()

    def _compact_pooled(self) -> None:
        """Keep only the ``pooled_sample`` pairs with the smallest keys, sorted by key."""
        if self.pooled_sample is None or not self._pooled_keys:
            return
        keys = torch.cat(self._pooled_keys)  # (n,)
        order = torch.sort(keys, stable=True).indices[: self.pooled_sample]  # (min(n, N),)
        self._pooled_keys = [keys[order]]
        self._pooled_scores = [torch.cat(self._pooled_scores)[order.to(self._pooled_scores[0].device)]]
        self._pooled_labels = [torch.cat(self._pooled_labels)[order.to(self._pooled_labels[0].device)]]
        self._n_pooled = len(order)
        if self._n_pooled == self.pooled_sample:
            self._key_cutoff = int(self._pooled_keys[0][-1])

    def _pooled_arrays(self) -> tuple[Tensor, Tensor]:
        """Return the pooled ``(N,)`` scores and ``(N,)`` bool labels: every candidate, or the sample."""
        self._compact_pooled()
        return torch.cat(self._pooled_scores), torch.cat(self._pooled_labels)

    def state(self) -> dict[str, Tensor]:
        """Return the accumulated state as CPU tensors, for :meth:`merge_state` of another evaluator.

        Returns:
            ``sums`` ``(7,)`` float64 sums of the per-row metrics, ``counts`` ``(6,)``
            int64 row and pair counts, and the pooled ``scores`` ``(N,)``, ``labels``
            ``(N,)`` bool and ``keys`` ``(N,)`` int64 (empty unless ``pooled_sample``
            is set).

        Example:
            >>> import torch
            >>> scores = torch.tensor([[0.9, 0.1, 0.4], [0.2, 0.8, 0.5]])
            >>> candidates = torch.ones(2, 3, dtype=torch.bool)
            >>> positives = torch.tensor([[True, False, False], [False, False, True]])
            >>> whole, first, second = (RankingEvaluator(k=1) for _ in range(3))
            >>> whole.update(scores, candidates, positives)
            >>> first.update(scores[:1], candidates[:1], positives[:1])
            >>> second.update(scores[1:], candidates[1:], positives[1:])
            >>> first.merge_state(second.state())
            >>> first.compute() == whole.compute()
            True
        """
        scores, labels = self._pooled_arrays() if self._pooled_scores else (torch.zeros(0), torch.zeros(0, dtype=torch.bool))
        keys = torch.cat(self._pooled_keys) if self._pooled_keys else torch.zeros(0, dtype=torch.int64)
        return {
            "sums": torch.tensor([self._sums[name] for name in self._sum_names], dtype=torch.float64),
            "counts": torch.tensor([getattr(self, name) for name in _COUNT_NAMES], dtype=torch.int64),
            "scores": scores.cpu(),
            "labels": labels.cpu(),
            "keys": keys,
        }

    def merge_state(self, state: dict[str, Tensor]) -> None:
        """Add the state of another evaluator with the same settings, as :meth:`state` returns it.

        Args:
            state: The other evaluator's state.

        Raises:
            ValueError: If ``state`` lacks a key or its ``sums`` or ``counts`` have the
                wrong shape.
        """
        missing = sorted({"sums", "counts", "scores", "labels", "keys"} - set(state))
        if missing:
            raise ValueError(f"state lacks the keys {missing}; pass the dict that RankingEvaluator.state returns")
        for name, expected in (("sums", len(self._sum_names)), ("counts", len(_COUNT_NAMES))):
            if tuple(state[name].shape) != (expected,):
                raise ValueError(f"state[{name!r}] must have shape ({expected},), got {tuple(state[name].shape)}")
        for name, value in zip(self._sum_names, state["sums"].tolist()):
            self._sums[name] += value
        for name, value in zip(_COUNT_NAMES, state["counts"].tolist()):
            setattr(self, name, getattr(self, name) + value)
        if self.pooled and len(state["scores"]) > 0:
            self._pooled_scores.append(state["scores"])
            self._pooled_labels.append(state["labels"].bool())
            if self.pooled_sample is not None:
                self._pooled_keys.append(state["keys"])
                self._n_pooled += len(state["keys"])
                self._compact_pooled()

    def _compute_pooled(self) -> tuple[float, float]:
        """Return the pooled AUROC and AUPR, NaN where undefined or not stored."""
        if not self.pooled:
            return math.nan, math.nan
        if self._n_positives == 0 or self._n_positives == self._n_candidates:
            logger.warning(
                "Pooled auroc and aupr are undefined with %d positives among %d candidates, "
                "so both are NaN",
                self._n_positives,
                self._n_candidates,
            )
            return math.nan, math.nan
        scores, labels = self._pooled_arrays()  # (N,), (N,)
        if not bool(labels.any()) or bool(labels.all()):
            logger.warning(
                "Pooled auroc and aupr are undefined on a sample of %d candidates with %d positives, so both are NaN",
                len(labels),
                int(labels.sum()),
            )
            return math.nan, math.nan
        preds = _dense_rank_scale(scores)  # (N,)
        target = labels.long()  # (N,)
        auroc = binary_auroc(preds, target, thresholds=None)
        aupr = binary_average_precision(preds, target, thresholds=None)
        return float(auroc), float(aupr)

    def pooled_curves(self) -> dict[str, np.ndarray]:
        """Compute the pooled ROC and precision-recall curves over every candidate seen.

        The curves belong to the pooled ``auroc`` and ``aupr``: one point per distinct
        score (torchmetrics ``binary_roc`` and ``binary_precision_recall_curve`` with
        ``thresholds=None``), so tied candidates form one step.

        Returns:
            float64 arrays keyed ``fpr`` and ``tpr`` (ROC, from (0, 0) to (1, 1)) and
            ``precision`` and ``recall`` (recall decreasing to 0, as torchmetrics returns
            them).

        Raises:
            ValueError: If the evaluator was built with ``pooled=False``, or the
                candidates seen do not contain both a positive and a negative.

        Example:
            >>> import torch
            >>> evaluator = RankingEvaluator(k=1, threshold=None)
            >>> evaluator.update(torch.tensor([[0.9, 0.1, 0.4]]), torch.ones(1, 3, dtype=torch.bool),
            ...                  torch.tensor([[True, False, False]]))
            >>> evaluator.pooled_curves()["tpr"].tolist()
            [0.0, 1.0, 1.0, 1.0]
        """
        if not self.pooled:
            raise ValueError("pooled_curves needs the candidate scores; build the evaluator with pooled=True")
        if self._n_positives == 0 or self._n_positives == self._n_candidates:
            raise ValueError(
                f"pooled curves need both positive and negative candidates, got {self._n_positives} "
                f"positives among {self._n_candidates} candidates"
            )
        preds = _dense_rank_scale(torch.cat(self._pooled_scores))  # (N,)
        target = torch.cat(self._pooled_labels).long()  # (N,)
        fpr, tpr, _ = binary_roc(preds, target, thresholds=None)
        precision, recall, _ = binary_precision_recall_curve(preds, target, thresholds=None)
        curves = {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}
        return {name: values.double().numpy() for name, values in curves.items()}

    def compute(self) -> dict[str, float]:
        """Return the metrics over every chunk added since the last reset.

        Returns:
            A flat dict of floats with the keys listed in the class docstring. Counts
            are whole numbers stored as floats.
        """
        auroc, aupr = self._compute_pooled()
        accuracy = math.nan
        if self.threshold is not None and self._n_candidates > 0:
            accuracy = self._n_correct / self._n_candidates

        def mean(name: str, n_rows: int) -> float:
            return self._sums[name] / n_rows if n_rows > 0 else math.nan

        if self._rows_with_positive == 0:
            logger.warning("No evaluated row has a held-out positive, so the ranking metrics are NaN")
        k = self.k
        more_precision = {
            f"precision@{cutoff}": mean(f"hits@{cutoff}", self._rows_with_positive) / cutoff
            for cutoff in self.precision_ks
        }
        return {
            "auroc": auroc,
            "aupr": aupr,
            "accuracy": accuracy,
            "row_auroc": mean("auroc", self._rows_with_both),
            "row_aupr": mean("ap", self._rows_with_both),
            "rows_skipped": float(self._rows_total - self._rows_with_both),
            f"ndcg@{k}": mean("ndcg", self._rows_with_positive),
            f"hr@{k}": mean("hr", self._rows_with_positive),
            f"precision@{k}": mean("hits", self._rows_with_positive) / k,
            f"recall@{k}": mean("recall", self._rows_with_positive),
            "mrr": mean("mrr", self._rows_with_positive),
            "rows_evaluated": float(self._rows_with_positive),
            "n_candidates": float(self._n_candidates),
            "n_positives": float(self._n_positives),
            **more_precision,
        }


def evaluate_scores(
    scores: Tensor | np.ndarray,
    candidates: Tensor | np.ndarray,
    positives: Tensor | np.ndarray,
    k: int = 10,
    threshold: float | None = 0.0,
) -> dict[str, float]:
    """Evaluate one score matrix in a single call.

    Args:
        scores: ``(R, C)`` float scores.
        candidates: ``(R, C)`` bool, the pairs under evaluation.
        positives: ``(R, C)`` bool, held-out positives within ``candidates``.
        k: Cut-off of the top-k metrics.
        threshold: Logit threshold for ``accuracy``, or None to report NaN.

    Returns:
        The dict that :meth:`RankingEvaluator.compute` returns.

    Raises:
        TypeError: As :class:`RankingEvaluator` and :meth:`RankingEvaluator.update`.
        ValueError: As :class:`RankingEvaluator` and :meth:`RankingEvaluator.update`.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[0.9, 0.1, 0.4]])
        >>> candidates = torch.ones(1, 3, dtype=torch.bool)
        >>> positives = torch.tensor([[True, False, False]])
        >>> metrics = evaluate_scores(scores, candidates, positives, k=2, threshold=None)
        >>> metrics["row_auroc"], metrics["recall@2"], metrics["precision@2"]
        (1.0, 1.0, 0.5)
    """
    evaluator = RankingEvaluator(k=k, threshold=threshold)
    evaluator.update(scores, candidates, positives)
    return evaluator.compute()
