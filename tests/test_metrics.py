"""Tests for hybridmf.evaluation.metrics against scikit-learn, torchmetrics and brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score
from torchmetrics.functional.retrieval import (
    retrieval_auroc,
    retrieval_average_precision,
    retrieval_hit_rate,
    retrieval_normalized_dcg,
    retrieval_precision,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

from hybridmf.evaluation.metrics import RankingEvaluator, evaluate_scores

K_VALUES = [1, 5, 10]
SCORE_KINDS = ["continuous", "integer_ties", "negative_logits"]
POOLED_KEYS = {"auroc", "aupr"}


def make_chunk(
    kind: str, n_rows: int = 40, n_columns: int = 30, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build random scores with a different candidate mask per row.

    Every row keeps at least two candidates, so sklearn's ndcg_score accepts it. Row 0
    has no positive and row 1 has only positives, so both lack one class.
    """
    generator = torch.Generator().manual_seed(seed)
    if kind == "continuous":
        scores = torch.randn(n_rows, n_columns, generator=generator, dtype=torch.float64)
    elif kind == "integer_ties":
        scores = torch.randint(0, 4, (n_rows, n_columns), generator=generator).double()
    elif kind == "negative_logits":
        # Far below zero and spread widely: a float32 sigmoid maps them all to 0.
        scores = -40.0 + 15.0 * torch.randn(n_rows, n_columns, generator=generator, dtype=torch.float64)
    else:
        raise ValueError(f"unknown score kind {kind!r}")

    # Candidate share varies from 30% to 100% between rows.
    keep_share = torch.linspace(0.3, 1.0, n_rows, dtype=torch.float64)[:, None]  # (R, 1)
    candidates = torch.rand(n_rows, n_columns, generator=generator, dtype=torch.float64) < keep_share
    candidates[:, :2] = True
    positives = candidates & (torch.rand(n_rows, n_columns, generator=generator) < 0.2)
    positives[0] = False
    positives[1] = candidates[1]
    positives[2:, 0] = True  # every other row has a positive
    return scores, candidates, positives


def tie_free_ranking_metrics(labels: np.ndarray, row_scores: np.ndarray, k: int) -> dict[str, float]:
    """Compute hits, HR and reciprocal rank by sorting one row without ties."""
    order = np.argsort(-row_scores, kind="stable")
    ranked = labels[order]
    hits = float(ranked[:k].sum())
    first_rank = int(np.flatnonzero(ranked)[0]) + 1
    return {
        "hits": hits,
        "precision": hits / k,
        "recall": hits / labels.sum(),
        "hr": float(hits > 0),
        "mrr": 1.0 / first_rank,
    }


def tie_averaged_ranking_metrics(labels: np.ndarray, row_scores: np.ndarray, k: int) -> dict[str, float]:
    """Compute hits, HR and reciprocal rank averaged over all orders of tied scores.

    Per positive, its rank is uniform over its tie group's ranks, which gives hits@k.
    HR and MRR come from the best positive's group through exact binomials.
    """
    hits = 0.0
    for index in np.flatnonzero(labels):
        above = int((row_scores > row_scores[index]).sum())
        group = int((row_scores == row_scores[index]).sum())
        hits += min(max(k - above, 0), group) / group

    best = row_scores[labels].max()
    above = int((row_scores > best).sum())
    group = int((row_scores == best).sum())
    group_positives = int(labels[row_scores == best].sum())
    slots = min(max(k - above, 0), group)
    no_hit = math.comb(group - group_positives, slots) / math.comb(group, slots)
    mrr = sum(
        math.comb(group - position, group_positives - 1)
        / math.comb(group, group_positives)
        / (above + position)
        for position in range(1, group - group_positives + 2)
    )
    return {
        "hits": hits,
        "precision": hits / k,
        "recall": hits / labels.sum(),
        "hr": 1.0 - no_hit,
        "mrr": mrr,
    }


def reference_metrics(
    scores: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor, k: int, threshold: float | None
) -> dict[str, float]:
    """Compute every metric row by row with scikit-learn and plain Python."""
    scores_np, candidates_np, positives_np = scores.numpy(), candidates.numpy(), positives.numpy()
    row_auroc, row_aupr, rows_skipped = [], [], 0
    ranking = {name: [] for name in ("ndcg", "hr", "precision", "recall", "mrr")}

    for row in range(scores_np.shape[0]):
        row_scores = scores_np[row][candidates_np[row]]
        labels = positives_np[row][candidates_np[row]]
        if 0 < labels.sum() < labels.size:
            row_auroc.append(roc_auc_score(labels, row_scores))
            row_aupr.append(average_precision_score(labels, row_scores))
        else:
            rows_skipped += 1
        if labels.sum() == 0:
            continue
        ranking["ndcg"].append(ndcg_score(labels[None, :].astype(float), row_scores[None, :], k=k))
        has_ties = np.unique(row_scores).size < row_scores.size
        row_ranking = (tie_averaged_ranking_metrics if has_ties else tie_free_ranking_metrics)(
            labels, row_scores, k
        )
        for name in ("hr", "precision", "recall", "mrr"):
            ranking[name].append(row_ranking[name])

    pooled_scores = scores_np[candidates_np]
    pooled_labels = positives_np[candidates_np]
    accuracy = math.nan
    if threshold is not None:
        accuracy = float(((pooled_scores >= threshold) == pooled_labels).mean())
    return {
        "auroc": roc_auc_score(pooled_labels, pooled_scores),
        "aupr": average_precision_score(pooled_labels, pooled_scores),
        "accuracy": accuracy,
        "row_auroc": float(np.mean(row_auroc)),
        "row_aupr": float(np.mean(row_aupr)),
        "rows_skipped": float(rows_skipped),
        f"ndcg@{k}": float(np.mean(ranking["ndcg"])),
        f"hr@{k}": float(np.mean(ranking["hr"])),
        f"precision@{k}": float(np.mean(ranking["precision"])),
        f"recall@{k}": float(np.mean(ranking["recall"])),
        "mrr": float(np.mean(ranking["mrr"])),
        "rows_evaluated": float(len(ranking["ndcg"])),
        "n_candidates": float(candidates_np.sum()),
        "n_positives": float(positives_np.sum()),
    }


@pytest.mark.parametrize("kind", SCORE_KINDS)
@pytest.mark.parametrize("k", K_VALUES)
def test_metrics_match_sklearn(kind: str, k: int) -> None:
    scores, candidates, positives = make_chunk(kind)
    threshold = -40.0 if kind == "negative_logits" else 0.0

    result = evaluate_scores(scores, candidates, positives, k=k, threshold=threshold)
    expected = reference_metrics(scores, candidates, positives, k, threshold)

    assert list(result) == list(expected)
    for name, value in expected.items():
        # torchmetrics returns the pooled values in float32.
        tolerance = 1e-6 if name in POOLED_KEYS else 1e-9
        assert result[name] == pytest.approx(value, rel=tolerance, abs=1e-12), name


def test_metrics_invariant_to_score_shift() -> None:
    """Negative logits rank like any other scores: shifting all scores changes nothing."""
    scores, candidates, positives = make_chunk("continuous", seed=2)

    for k in K_VALUES:
        expected = evaluate_scores(scores.exp(), candidates, positives, k=k, threshold=None)
        shifted = evaluate_scores(scores.exp() - 100.0, candidates, positives, k=k, threshold=None)
        assert shifted == pytest.approx(expected, nan_ok=True), k


def test_single_class_rows_skipped_and_counted() -> None:
    """torchmetrics' retrieval_auroc scores a single-class row as 0, but rows_skipped counts it."""
    scores, candidates, positives = make_chunk("continuous", n_rows=6)
    result = evaluate_scores(scores, candidates, positives, k=5)

    assert result["rows_skipped"] == 2.0
    assert result["rows_evaluated"] == 5.0
    both_classes = [
        roc_auc_score(positives[row][candidates[row]].numpy(), scores[row][candidates[row]].numpy())
        for row in range(2, 6)
    ]
    assert result["row_auroc"] == pytest.approx(np.mean(both_classes), rel=1e-12)
    assert float(retrieval_auroc(scores[0][candidates[0]], positives[0][candidates[0]])) == 0.0


def test_only_single_class_rows_give_nan() -> None:
    scores = torch.tensor([[0.3, 0.1, 0.2]])
    candidates = torch.ones(1, 3, dtype=torch.bool)
    positives = torch.zeros(1, 3, dtype=torch.bool)

    result = evaluate_scores(scores, candidates, positives)

    assert math.isnan(result["row_auroc"])
    assert math.isnan(result["mrr"])
    assert math.isnan(result["auroc"])
    assert result["rows_skipped"] == 1.0
    assert result["rows_evaluated"] == 0.0


def test_empty_evaluator_returns_nan() -> None:
    result = RankingEvaluator(k=3).compute()

    assert math.isnan(result["auroc"])
    assert math.isnan(result["accuracy"])
    assert math.isnan(result["ndcg@3"])
    assert result["n_candidates"] == 0.0


@pytest.mark.parametrize("k", K_VALUES)
def test_ties_match_enumeration_of_orders(k: int) -> None:
    """Averaging the plain top-k metrics over every tie-breaking order gives our values."""
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (12, 6), generator=generator).double()
    candidates = torch.ones(12, 6, dtype=torch.bool)
    candidates[::3, 5] = False
    positives = candidates & (torch.rand(12, 6, generator=generator) < 0.35)
    positives[:, 1] = True

    per_row = {name: [] for name in ("ndcg", "hr", "precision", "recall", "mrr")}
    for row in range(scores.shape[0]):
        row_scores = scores[row][candidates[row]].numpy()
        labels = positives[row][candidates[row]].numpy()
        totals = dict.fromkeys(per_row, 0.0)
        orders = list(itertools.permutations(range(row_scores.size)))
        for tie_break in orders:
            # Sort by score descending, then by the tie-break position.
            order = sorted(range(row_scores.size), key=lambda index: (-row_scores[index], tie_break[index]))
            ranked = labels[order]
            discounts = 1.0 / np.log2(np.arange(ranked.size) + 2.0)
            ideal = discounts[: min(int(labels.sum()), k)].sum()
            hits = ranked[:k].sum()
            totals["ndcg"] += (ranked[:k] * discounts[:k]).sum() / ideal
            totals["hr"] += float(hits > 0)
            totals["precision"] += hits / k
            totals["recall"] += hits / labels.sum()
            totals["mrr"] += 1.0 / (np.flatnonzero(ranked)[0] + 1)
        for name in per_row:
            per_row[name].append(totals[name] / len(orders))

    result = evaluate_scores(scores, candidates, positives, k=k)

    assert result[f"ndcg@{k}"] == pytest.approx(np.mean(per_row["ndcg"]), rel=1e-9)
    assert result[f"hr@{k}"] == pytest.approx(np.mean(per_row["hr"]), rel=1e-9)
    assert result[f"precision@{k}"] == pytest.approx(np.mean(per_row["precision"]), rel=1e-9)
    assert result[f"recall@{k}"] == pytest.approx(np.mean(per_row["recall"]), rel=1e-9)
    assert result["mrr"] == pytest.approx(np.mean(per_row["mrr"]), rel=1e-9)


@pytest.mark.parametrize("k", K_VALUES)
def test_metrics_match_torchmetrics_without_ties(k: int) -> None:
    """torchmetrics' retrieval functions agree on rows with both classes and no ties.

    The scores are made positive because torchmetrics 1.9's retrieval AP, precision,
    recall and reciprocal rank drop every positive whose score is not above 0.
    """
    scores, candidates, positives = make_chunk("continuous", seed=5)
    scores = scores.exp()
    rows = range(2, scores.shape[0])  # rows 0 and 1 have a single class

    def mean_over_rows(function, **kwargs) -> float:
        values = [
            float(function(scores[row][candidates[row]], positives[row][candidates[row]], **kwargs))
            for row in rows
        ]
        return float(np.mean(values))

    result = evaluate_scores(scores[2:], candidates[2:], positives[2:], k=k)

    assert result["row_auroc"] == pytest.approx(mean_over_rows(retrieval_auroc), rel=1e-6)
    assert result["row_aupr"] == pytest.approx(mean_over_rows(retrieval_average_precision), rel=1e-6)
    assert result[f"ndcg@{k}"] == pytest.approx(mean_over_rows(retrieval_normalized_dcg, top_k=k), rel=1e-6)
    assert result[f"precision@{k}"] == pytest.approx(mean_over_rows(retrieval_precision, top_k=k), rel=1e-6)
    assert result[f"recall@{k}"] == pytest.approx(mean_over_rows(retrieval_recall, top_k=k), rel=1e-6)
    assert result[f"hr@{k}"] == pytest.approx(mean_over_rows(retrieval_hit_rate, top_k=k), rel=1e-6)
    assert result["mrr"] == pytest.approx(mean_over_rows(retrieval_reciprocal_rank), rel=1e-6)


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_chunked_update_equals_one_shot(kind: str) -> None:
    scores, candidates, positives = make_chunk(kind, seed=7)
    one_shot = evaluate_scores(scores, candidates, positives, k=5)

    evaluator = RankingEvaluator(k=5)
    for start, stop in [(0, 7), (7, 8), (8, 8), (8, 25), (25, 40)]:
        evaluator.update(scores[start:stop], candidates[start:stop], positives[start:stop])
    chunked = evaluator.compute()

    for name, value in one_shot.items():
        assert chunked[name] == pytest.approx(value, rel=1e-12), name


def test_reset_clears_state() -> None:
    scores, candidates, positives = make_chunk("continuous")
    evaluator = RankingEvaluator(k=5)
    evaluator.update(scores, candidates, positives)
    evaluator.reset()
    evaluator.update(scores[:10], candidates[:10], positives[:10])

    expected = evaluate_scores(scores[:10], candidates[:10], positives[:10], k=5)
    assert evaluator.compute() == pytest.approx(expected)


def test_pooled_auroc_with_large_logits() -> None:
    """binary_auroc applies a float32 sigmoid to scores outside [0, 1], which ties all
    logits above about 17. The dense-rank scaling keeps the true order."""
    scores = torch.tensor([[20.0, 25.0, 30.0, 35.0], [22.0, 27.0, 32.0, 37.0]])
    candidates = torch.ones(2, 4, dtype=torch.bool)
    positives = torch.tensor([[False, False, True, True], [False, True, False, True]])

    result = evaluate_scores(scores, candidates, positives)

    expected = roc_auc_score(positives.flatten().numpy(), scores.flatten().numpy())
    assert result["auroc"] == pytest.approx(expected)
    expected_aupr = average_precision_score(positives.flatten().numpy(), scores.flatten().numpy())
    assert result["aupr"] == pytest.approx(expected_aupr)


def test_infinite_candidate_scores_keep_order() -> None:
    finite = torch.tensor([[1e6, 0.5, -1e6, 0.2, -1e6], [1e6, 1e6, 0.0, -1e6, 0.3]], dtype=torch.float64)
    infinite = finite.clone()
    infinite[finite == 1e6] = math.inf
    infinite[finite == -1e6] = -math.inf
    candidates = torch.ones(2, 5, dtype=torch.bool)
    positives = torch.tensor([[False, True, True, False, True], [True, False, False, True, False]])

    for k in K_VALUES:
        expected = evaluate_scores(finite, candidates, positives, k=k)
        result = evaluate_scores(infinite, candidates, positives, k=k)
        assert result == pytest.approx(expected, nan_ok=True), k


def test_scores_outside_candidates_are_ignored() -> None:
    scores, candidates, positives = make_chunk("continuous")
    polluted = scores.clone()
    polluted[~candidates] = math.nan
    polluted[~candidates & (torch.arange(scores.shape[1]) % 2 == 0)] = math.inf

    assert evaluate_scores(polluted, candidates, positives) == pytest.approx(
        evaluate_scores(scores, candidates, positives), nan_ok=True
    )


def test_threshold_none_gives_nan_accuracy() -> None:
    scores, candidates, positives = make_chunk("integer_ties")

    result = evaluate_scores(scores, candidates, positives, threshold=None)

    assert math.isnan(result["accuracy"])
    assert not math.isnan(result["auroc"])


def test_pooled_false_skips_pooled_metrics() -> None:
    scores, candidates, positives = make_chunk("continuous")
    evaluator = RankingEvaluator(k=5, pooled=False)
    evaluator.update(scores, candidates, positives)
    result = evaluator.compute()

    assert math.isnan(result["auroc"])
    assert math.isnan(result["aupr"])
    assert result["row_auroc"] == pytest.approx(evaluate_scores(scores, candidates, positives)["row_auroc"])


def test_float32_and_integer_inputs() -> None:
    scores, candidates, positives = make_chunk("integer_ties")
    expected = evaluate_scores(scores, candidates, positives, k=5)

    as_float32 = evaluate_scores(scores.float(), candidates, positives, k=5)
    as_int = evaluate_scores(scores.long().numpy(), candidates.int(), positives.numpy(), k=5)

    assert as_float32 == pytest.approx(expected)
    assert as_int == pytest.approx(expected)


def test_k_larger_than_columns() -> None:
    scores, candidates, positives = make_chunk("continuous", n_columns=8)

    result = evaluate_scores(scores, candidates, positives, k=50)

    assert result["hr@50"] == 1.0
    assert result["recall@50"] == 1.0
    assert result["precision@50"] == pytest.approx(result["n_positives"] / 50 / result["rows_evaluated"])


GOOD_SCORES = torch.zeros(2, 3)
GOOD_MASK = torch.ones(2, 3, dtype=torch.bool)


@pytest.mark.parametrize(
    ("scores", "candidates", "positives", "message"),
    [
        (torch.zeros(6), GOOD_MASK, GOOD_MASK, r"scores must be 2-D .* got shape \(6,\)"),
        (GOOD_SCORES, torch.ones(2, 4, dtype=torch.bool), GOOD_MASK, r"candidates has shape \(2, 4\)"),
        (GOOD_SCORES, GOOD_MASK, torch.ones(3, 3, dtype=torch.bool), r"positives has shape \(3, 3\)"),
        (
            GOOD_SCORES,
            torch.tensor([[True, True, False], [True, True, True]]),
            GOOD_MASK,
            r"positives must be a subset of candidates, but 1 positive pairs .* row 0, column 2",
        ),
        (
            GOOD_SCORES,
            torch.full((2, 3), 2),
            GOOD_MASK,
            r"candidates must be a bool tensor or contain only 0 and 1",
        ),
        (
            torch.full((2, 3), math.nan),
            GOOD_MASK,
            GOOD_MASK,
            r"scores must be real numbers at candidate pairs, but 6 are NaN \(first at row 0, column 0",
        ),
    ],
)
def test_update_rejects_invalid_input(scores, candidates, positives, message) -> None:
    with pytest.raises(ValueError, match=message):
        RankingEvaluator().update(scores, candidates, positives)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"k": 0}, ValueError, r"k must be an integer >= 1, got 0"),
        ({"k": -3}, ValueError, r"k must be an integer >= 1, got -3"),
        ({"k": 2.5}, TypeError, r"k must be an integer >= 1, got 2.5 of type float"),
        ({"k": True}, TypeError, r"k must be an integer >= 1, got True of type bool"),
        ({"threshold": math.nan}, ValueError, r"threshold must be a real number or None, got nan"),
        ({"threshold": "0.5"}, TypeError, r"threshold must be a real number or None, got '0.5'"),
        ({"precision_ks": (5, 0)}, ValueError, r"each of precision_ks must be an integer >= 1, got 0"),
        ({"precision_ks": (1.5,)}, TypeError, r"each of precision_ks must be an integer >= 1, got 1.5"),
    ],
)
def test_evaluator_rejects_invalid_arguments(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        RankingEvaluator(**kwargs)


def test_update_rejects_non_tensor() -> None:
    with pytest.raises(TypeError, match=r"scores must be a torch.Tensor or numpy.ndarray, got list"):
        RankingEvaluator().update([[0.0]], GOOD_MASK, GOOD_MASK)


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_precision_ks_match_separate_evaluators(kind: str) -> None:
    scores, candidates, positives = make_chunk(kind)
    combined = RankingEvaluator(k=5, precision_ks=(1, 3, 5, 40))
    combined.update(scores, candidates, positives)
    result = combined.compute()

    for cutoff in (1, 3, 5, 40):
        separate = evaluate_scores(scores, candidates, positives, k=cutoff)
        assert result[f"precision@{cutoff}"] == pytest.approx(separate[f"precision@{cutoff}"], abs=1e-12)
    assert result["ndcg@5"] == pytest.approx(evaluate_scores(scores, candidates, positives, k=5)["ndcg@5"])


@pytest.mark.parametrize("kind", SCORE_KINDS)
def test_pooled_curves_match_pooled_metrics(kind: str) -> None:
    """The area under the returned curves equals the pooled AUROC and AUPR."""
    scores, candidates, positives = make_chunk(kind)
    evaluator = RankingEvaluator(k=5)
    evaluator.update(scores, candidates, positives)
    curves = evaluator.pooled_curves()
    result = evaluator.compute()

    roc_area = np.trapezoid(curves["tpr"], curves["fpr"])
    step_precision = -np.sum(np.diff(curves["recall"]) * curves["precision"][:-1])
    assert roc_area == pytest.approx(result["auroc"], abs=1e-6)
    assert step_precision == pytest.approx(result["aupr"], abs=1e-6)
    assert (curves["fpr"][0], curves["tpr"][0], curves["fpr"][-1], curves["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("pooled", "positives", "message"),
    [
        (False, GOOD_MASK, r"pooled_curves needs the candidate scores; build the evaluator with pooled=True"),
        (True, torch.zeros(2, 3, dtype=torch.bool), r"need both positive and negative candidates, got 0 positives"),
    ],
)
def test_pooled_curves_reject_missing_data(pooled, positives, message) -> None:
    evaluator = RankingEvaluator(pooled=pooled)
    evaluator.update(GOOD_SCORES, GOOD_MASK, positives)

    with pytest.raises(ValueError, match=message):
        evaluator.pooled_curves()
