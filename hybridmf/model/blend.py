"""Blending of two scorers by global rank: empirical CDFs on stored quantile grids.

A trained model is blended with one closed-form baseline: EASE (item-item, for rows with
training interactions) or feature ridge regression (row features to the row's training
vector, for new rows). The two scorers are on different scales, so each score is mapped
to its quantile among reference scores. ``F(s)`` is the share of reference scores below
``s``, computed from a sorted grid of reference quantiles. The blend is
``(1 - w) * F_model(s_model) + w * F_part(s_part)``. The reference scores pool all rows,
so a pair's quantile is its rank among all pairs (a global rank). Per-row ranks would
make the scores of different rows incomparable, which breaks the pooled AUROC and AUPR.

With ``blend_mode="row"`` the part only reorders the columns within each row: its
scores are standardized within the row (a z-score) and added to the model's logits,
``s_model + w * sigma * z_part``, where ``sigma`` is the standard deviation of the
model's logits over the reference pairs. Each row keeps the model's mean logit over its
columns, so the level of a row against other rows, which pooled AUROC and AUPR
measure, stays the model's, while the order of the columns inside the row moves
towards the part's.

The functions here are pure tensor code. ``HybridMF`` stores the grids as buffers and
calls them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hybridmf.evaluation.baselines import EASE, FeatureRidge

BLEND_METHODS = ("none", "ease", "ridge")
# Ways to combine the two scorers: by global rank (blend_logits), or by adding the part's
# within-row z-score to the model's logits (within_row_logits).
BLEND_MODES = ("rank", "row")
# The EASE part stores a (C, C) float32 weight matrix in the model and in every
# checkpoint, and its fit inverts a (C, C) float64 matrix: 20,000 columns are 1.6 GB of
# weights and 3.2 GB for the inverse.
MAX_BLEND_COLUMNS = 20_000
# The training interactions of the EASE part are a dense (R, C) bool matrix, one byte
# per cell.
MAX_BLEND_CELLS = 1 << 30
# The ridge part stores a (d, C) float32 weight matrix: 2**28 values are 1 GiB.
MAX_RIDGE_WEIGHTS = 1 << 28
# Points of each quantile grid: the quantiles at levels 0, 0.001, ..., 1.
QUANTILE_GRID_SIZE = 1001
# Reference pairs used for the grids at most; beyond that a uniform sample of the
# candidate pairs is used.
MAX_REFERENCE_PAIRS = 1 << 24
# Blended values are clamped to [BLEND_EPSILON, 1 - BLEND_EPSILON] before the logit, so
# the output stays finite (within about +-13.8).
BLEND_EPSILON = 1e-6


def check_blend_options(
    blend: str, blend_weight: float, blend_ease_l2: float, blend_ridge_l2: float = 3.0, blend_mode: str = "rank"
) -> None:
    """Check the blend options.

    Args:
        blend: ``"none"``, ``"ease"`` or ``"ridge"``.
        blend_weight: Share of the blended baseline, in [0, 1].
        blend_ease_l2: L2 regularisation strength lambda of the EASE part, > 0.
        blend_ridge_l2: L2 regularisation strength lambda of the ridge part, > 0.
        blend_mode: ``"rank"`` or ``"row"``.

    Raises:
        ValueError: When an option is outside its accepted values.

    Example:
        >>> check_blend_options("ease", 1.5, 100.0)
        Traceback (most recent call last):
        ...
        ValueError: blend_weight must be a number in [0, 1] (the weight of the blended baseline), got 1.5
    """
    if blend not in BLEND_METHODS:
        raise ValueError(f"blend must be one of {', '.join(map(repr, BLEND_METHODS))}, got {blend!r}")
    if blend_mode not in BLEND_MODES:
        raise ValueError(f"blend_mode must be one of {', '.join(map(repr, BLEND_MODES))}, got {blend_mode!r}")
    if isinstance(blend_weight, bool) or not isinstance(blend_weight, (int, float)) or not 0 <= blend_weight <= 1:
        raise ValueError(
            f"blend_weight must be a number in [0, 1] (the weight of the blended baseline), got {blend_weight!r}"
        )
    for name, part, l2 in (("blend_ease_l2", EASE, blend_ease_l2), ("blend_ridge_l2", FeatureRidge, blend_ridge_l2)):
        try:
            part(l2=l2)
        except (TypeError, ValueError) as error:
            raise ValueError(f"invalid {name}: {error}") from None


def check_blend_size(n_rows: int, n_cols: int, blend: str = "ease", row_feature_dim: int = 0) -> None:
    """Check that the baseline part of a blend fits a data set of ``n_rows`` x ``n_cols``.

    Args:
        n_rows: Number of rows.
        n_cols: Number of columns.
        blend: ``"ease"`` or ``"ridge"``.
        row_feature_dim: Size of the row feature vector; the ridge part needs one.

    Raises:
        ValueError: When ``n_cols`` exceeds ``MAX_BLEND_COLUMNS``, the grid exceeds
            ``MAX_BLEND_CELLS`` cells, or the ridge part has no row features or more
            than ``MAX_RIDGE_WEIGHTS`` weights.

    Example:
        >>> check_blend_size(100, 30_000)
        Traceback (most recent call last):
        ...
        ValueError: blend='ease' supports at most 20000 columns, got n_cols=30000: the EASE part stores a (C, C) float32 weight matrix in the model and every checkpoint and inverts a (C, C) matrix to fit it. Use blend='none'
    """
    if blend == "ridge":
        if row_feature_dim < 1:
            raise ValueError(
                "blend='ridge' regresses the rows' training vectors on their features, but the model has no row "
                "features; give row features (for MEF, --drug-sources or --features) or use blend='ease'"
            )
        if row_feature_dim * n_cols > MAX_RIDGE_WEIGHTS:
            raise ValueError(
                f"blend='ridge' supports at most {MAX_RIDGE_WEIGHTS} row features x columns, got "
                f"{row_feature_dim} x {n_cols}: the ridge part stores a (d, C) float32 weight matrix. Use blend='none'"
            )
    if n_cols > MAX_BLEND_COLUMNS and blend == "ease":
        raise ValueError(
            f"blend='ease' supports at most {MAX_BLEND_COLUMNS} columns, got n_cols={n_cols}: the EASE part "
            f"stores a (C, C) float32 weight matrix in the model and every checkpoint and inverts a (C, C) "
            f"matrix to fit it. Use blend='none'"
        )
    if n_rows * n_cols > MAX_BLEND_CELLS:
        raise ValueError(
            f"blend={blend!r} supports at most {MAX_BLEND_CELLS} rows x columns, got {n_rows} x {n_cols}: the "
            f"fit holds the training interactions as a dense (R, C) matrix. Use blend='none'"
        )


def quantile_grid(values: Tensor, size: int = QUANTILE_GRID_SIZE) -> Tensor:
    """Compute the quantiles of ``values`` at ``size`` evenly spaced levels from 0 to 1.

    Quantiles between two sorted values are linearly interpolated, as
    ``torch.quantile(..., interpolation="linear")`` does, which refuses inputs of more
    than 2**24 values (torch 2.13).

    Args:
        values: ``(N,)`` reference scores, N >= 1, all finite.
        size: Number of grid points, at least 2.

    Returns:
        ``(size,)`` float32 sorted quantiles: the first is ``values.min()``, the last
        ``values.max()``.

    Raises:
        ValueError: When ``values`` is empty or not finite, or ``size < 2``.

    Example:
        >>> quantile_grid(torch.tensor([3.0, 1.0, 2.0]), size=5)
        tensor([1.0000, 1.5000, 2.0000, 2.5000, 3.0000])
    """
    if size < 2:
        raise ValueError(f"size must be at least 2, got {size}")
    if values.numel() == 0:
        raise ValueError("values is empty: a quantile grid needs at least one reference score")
    if not torch.isfinite(values).all():
        raise ValueError("values contains NaN or infinite scores")
    ordered = values.reshape(-1).double().sort().values  # (N,)
    positions = torch.linspace(0, len(ordered) - 1, size, dtype=torch.float64, device=ordered.device)  # (size,)
    lower = positions.floor().long()
    upper = positions.ceil().long()
    fraction = positions - lower
    return (ordered[lower] + fraction * (ordered[upper] - ordered[lower])).float()


def empirical_cdf(scores: Tensor, grid: Tensor) -> Tensor:
    """Map scores to their quantile level in a sorted grid: a monotone, piecewise linear CDF.

    Grid point ``i`` of ``G`` has level ``i / (G - 1)``. A score between two grid points
    gets the linearly interpolated level, a score at or below the first point 0 and a
    score at or above the last point 1. A score equal to several tied grid points gets
    the highest of their levels, as a right-continuous CDF does.

    Args:
        scores: Scores of any shape.
        grid: ``(G,)`` sorted quantiles, G >= 2, from :func:`quantile_grid`.

    Returns:
        float64 levels in [0, 1], of the shape of ``scores``, non-decreasing in the
        score.

    Example:
        >>> empirical_cdf(torch.tensor([0.0, 1.0, 1.5, 2.0, 9.0]), torch.tensor([1.0, 2.0, 3.0]))
        tensor([0.0000, 0.0000, 0.2500, 0.5000, 1.0000], dtype=torch.float64)
    """
    grid = grid.double()
    values = scores.double()
    last = len(grid) - 1
    # Grid points at or below each score, so grid[upper - 1] <= score < grid[upper] inside the grid.
    upper = torch.searchsorted(grid, values.reshape(-1), right=True).clamp(1, last).reshape(values.shape)
    lower = upper - 1
    low, high = grid[lower], grid[upper]
    width = high - low
    # A zero width means tied grid points: the level steps up at the tied value.
    inside = ((values - low) / torch.where(width > 0, width, 1.0)).clamp(0.0, 1.0)
    fraction = torch.where(width > 0, inside, (values >= high).double())
    return (lower + fraction) / last


def blend_logits(
    model_scores: Tensor, part_scores: Tensor, model_grid: Tensor, part_grid: Tensor, weight: float
) -> Tensor:
    """Blend two scores by global rank and return the logit of the blended level.

    The blended level is ``(1 - weight) * F_model(model_scores) + weight *
    F_part(part_scores)`` in [0, 1], with ``F`` from :func:`empirical_cdf`. The output
    is ``logit`` of that level, clamped to ``[BLEND_EPSILON, 1 - BLEND_EPSILON]``, so
    ``sigmoid(output)`` gives the level back. It ranks pairs but is not the log-odds of
    a positive.

    Args:
        model_scores: Scores of the model, any shape.
        part_scores: Scores of the baseline part (EASE or ridge) for the same pairs, same shape.
        model_grid: ``(G,)`` reference quantiles of the model's scores.
        part_grid: ``(G,)`` reference quantiles of the part's scores.
        weight: Share of the baseline part, in [0, 1].

    Returns:
        Blended scores, of the shape and dtype of ``model_scores``.

    Example:
        >>> grid = torch.tensor([0.0, 1.0])
        >>> torch.sigmoid(blend_logits(torch.tensor([0.5]), torch.tensor([1.0]), grid, grid, 0.5))
        tensor([0.7500])
    """
    level = (1.0 - weight) * empirical_cdf(model_scores, model_grid) + weight * empirical_cdf(part_scores, part_grid)
    return torch.logit(level, eps=BLEND_EPSILON).to(model_scores.dtype)



def within_row_zscores(part_scores: Tensor, candidates: Tensor | None = None) -> Tensor:
    """Standardize each row of ``part_scores`` by the mean and standard deviation of its candidates.

    Args:
        part_scores: ``(N, C)`` scores of the baseline part.
        candidates: Optional ``(N, C)`` bool mask of the columns whose scores give a row's
            mean and standard deviation. For EASE these are the columns that are not
            training positives of the row. Without a mask all columns count.

    Returns:
        ``(N, C)`` z-scores, of the dtype of ``part_scores``. A row whose candidates all
        score the same (such as a row without training interactions under EASE) gets 0.

    Example:
        >>> within_row_zscores(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
        tensor([[-1.2247,  0.0000,  1.2247],
                [ 0.0000,  0.0000,  0.0000]])
    """
    values = part_scores.double()
    mask = torch.ones_like(values, dtype=torch.bool) if candidates is None else candidates.to(torch.bool)
    counts = mask.sum(dim=1, keepdim=True).clamp_min(1)  # (N, 1)
    mean = torch.where(mask, values, 0.0).sum(dim=1, keepdim=True) / counts  # (N, 1)
    variance = torch.where(mask, (values - mean) ** 2, 0.0).sum(dim=1, keepdim=True) / counts  # (N, 1)
    spread = variance.sqrt()
    z = torch.where(spread > 0, (values - mean) / torch.where(spread > 0, spread, 1.0), 0.0)
    return z.to(part_scores.dtype)


def within_row_logits(model_scores: Tensor, part_z: Tensor, model_scale: Tensor | float, weight: float) -> Tensor:
    """Add the part's within-row z-scores to the model's logits: ``s + weight * scale * z``.

    Args:
        model_scores: Logits of the model, any shape.
        part_z: z-scores of the part from :func:`within_row_zscores`, same shape.
        model_scale: Standard deviation of the model's logits over the reference pairs.
        weight: Weight of the part, in [0, 1]: how many of the model's standard
            deviations one standard deviation of the part moves a score within its row.

    Returns:
        Scores of the shape and dtype of ``model_scores``, on the model's logit scale.

    Example:
        >>> within_row_logits(torch.tensor([0.0, 1.0]), torch.tensor([1.0, -1.0]), 2.0, 0.5)
        tensor([1., 0.])
    """
    return (model_scores + weight * model_scale * part_z.to(model_scores.dtype)).to(model_scores.dtype)
