"""Non-learned scorers fitted on training positives, as reference points for the model.

Every baseline is fitted on the training positives alone, given as ``(row, column)`` index pairs,
and returns dense scores for whole rows, so :class:`hybridmf.evaluation.metrics.RankingEvaluator`
can rank them like the model's scores. Training positives are scored too, and the
evaluator's ``candidates`` mask leaves them out.

Memory. The training matrix is stored dense, ``n_rows x n_cols`` float32 (MEF's 746 x 817
is 2.4 MB). ColumnKNN and EASE also keep an ``n_cols x n_cols`` float32 matrix (2.7 MB on
MEF). One ``score_rows`` call on B rows allocates ``B x n_cols`` scores, and RowKNN and
FeatureKNN add ``B x n_rows`` similarities, so large row sets should be scored in chunks.
All state lives on the CPU.

Baselines are registered by name in :data:`BASELINES` and built with :func:`make_baseline`.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "EASE",
    "Baseline",
    "ColumnKNN",
    "FeatureBaseline",
    "FeatureKNN",
    "FeatureRidge",
    "Popularity",
    "RowKNN",
    "make_baseline",
]

FALLBACKS = ("popularity", "zeros")
SIMILARITY_METRICS = ("cosine", "tanimoto")


def _check_positive_int(value: int, argument: str) -> int:
    """Return ``value`` as an int after checking that it is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument} must be an integer >= 1, got {value!r} of type {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{argument} must be an integer >= 1, got {value}")
    return int(value)


def _check_choice(value: str, argument: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` after checking that it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_l2(l2: float) -> float:
    """Return a regularisation strength as a float after checking it is finite and > 0."""
    if isinstance(l2, bool) or not isinstance(l2, (int, float, np.integer, np.floating)):
        raise TypeError(f"l2 must be a real number > 0, got {l2!r} of type {type(l2).__name__}")
    if not (math.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2 must be a finite number > 0, got {l2}")
    return float(l2)


def _check_index_array(indices: Any, argument: str, n_dims: int) -> np.ndarray:
    """Return ``indices`` as an int64 numpy array with ``n_dims`` dimensions."""
    if isinstance(indices, Tensor):
        indices = indices.detach().cpu().numpy()
    indices = np.asarray(indices)
    if indices.size == 0 and indices.dtype.kind == "f":
        indices = indices.astype(np.int64)  # an empty list becomes float64 in numpy
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{argument} must contain integer indices, got dtype {indices.dtype}")
    if indices.ndim != n_dims:
        raise ValueError(f"{argument} must be {n_dims}-D, got shape {indices.shape}")
    return indices.astype(np.int64, copy=False)


def _check_train_pairs(train_pairs: np.ndarray | Tensor, n_rows: int, n_cols: int) -> np.ndarray:
    """Return the training pairs as a ``(P, 2)`` int64 array after a range check.

    Raises:
        TypeError: If the pairs are not integers.
        ValueError: If the shape is not ``(P, 2)`` or an index is out of range.
    """
    pairs = _check_index_array(train_pairs, "train_pairs", n_dims=2)
    if pairs.shape[1] != 2:
        raise ValueError(
            f"train_pairs must have shape (P, 2) of (row, column) indices, got shape {pairs.shape}"
        )
    for axis, (argument, limit) in enumerate((("n_rows", n_rows), ("n_cols", n_cols))):
        invalid = (pairs[:, axis] < 0) | (pairs[:, axis] >= limit)
        if invalid.any():
            first = int(np.flatnonzero(invalid)[0])
            raise ValueError(
                f"train_pairs[{first}] = {pairs[first].tolist()} has a "
                f"{'row' if axis == 0 else 'column'} index outside [0, {argument}) = [0, {limit})"
            )
    return pairs


def _check_rows(rows: np.ndarray | Tensor, n_rows: int) -> Tensor:
    """Return row indices as a 1-D int64 tensor after a range check."""
    indices = _check_index_array(rows, "rows", n_dims=1)
    invalid = (indices < 0) | (indices >= n_rows)
    if invalid.any():
        raise ValueError(f"rows contains {int(indices[invalid][0])}, outside the fitted range [0, {n_rows})")
    return torch.from_numpy(indices)


class Baseline(ABC):
    """Interface of all baselines: fit on training pairs, then score whole rows.

    A row whose scores come out all zero carries no ranking information: RowKNN,
    ColumnKNN and EASE give all zeros to a row without training positives, and
    FeatureKNN to a row without a neighbour of positive similarity. With
    ``fallback="popularity"`` such a row gets the column popularity instead, which is on
    another scale than the baseline's own scores. That matters for pooled metrics over
    several rows, not for per-row ranking. ``fallback="zeros"`` keeps the zeros.

    Args:
        fallback: Scores for all-zero rows, ``"popularity"`` or ``"zeros"``.

    Raises:
        ValueError: If ``fallback`` is not one of the accepted values.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [0, 1], [1, 1]])
        >>> make_baseline("popularity").fit(pairs, n_rows=3, n_cols=3).score_rows(np.array([2]))
        tensor([[1., 2., 0.]])
    """

    name: str = ""
    _hyperparameters: tuple[str, ...] = ("fallback",)

    def __init__(self, fallback: str = "popularity") -> None:
        self.fallback = _check_choice(fallback, "fallback", FALLBACKS)
        self.train_matrix_: Tensor | None = None
        self.popularity_: Tensor | None = None

    def __repr__(self) -> str:
        arguments = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyperparameters)
        return f"{type(self).__name__}({arguments})"

    def fit(
        self,
        train_pairs: np.ndarray | Tensor,
        n_rows: int,
        n_cols: int,
        row_features: np.ndarray | Tensor | None = None,
    ) -> Baseline:
        """Fit the baseline on training positives.

        Args:
            train_pairs: ``(P, 2)`` integer ``(row, column)`` indices of the training
                positives. Duplicate pairs count once.
            n_rows: Number of rows, including rows without training positives (cold
                rows), which can then be scored.
            n_cols: Number of columns.
            row_features: ``(n_rows, F)`` real features of every row, cold rows
                included. The feature baselines (FeatureKNN, FeatureRidge) require
                them, and the other baselines ignore them.

        Returns:
            The fitted baseline itself.

        Raises:
            TypeError: If an index or size is not an integer, or a feature baseline's
                ``row_features`` is not a tensor or array.
            ValueError: If a size is below 1, ``train_pairs`` is not ``(P, 2)``, or an
                index is out of range; for a feature baseline, also if ``row_features``
                is missing, not ``(n_rows, F)`` or not finite.
        """
        n_rows = _check_positive_int(n_rows, "n_rows")
        n_cols = _check_positive_int(n_cols, "n_cols")
        pairs = torch.from_numpy(_check_train_pairs(train_pairs, n_rows, n_cols))

        train_matrix = torch.zeros(n_rows, n_cols, dtype=torch.float32)  # (n_rows, n_cols)
        train_matrix[pairs[:, 0], pairs[:, 1]] = 1.0
        self.train_matrix_ = train_matrix
        self.popularity_ = train_matrix.sum(dim=0)  # (n_cols,)
        self._fit(train_matrix, row_features)
        logger.debug(
            "Fitted %r on %d training positives in a %d x %d matrix",
            self,
            int(train_matrix.sum().item()),
            n_rows,
            n_cols,
        )
        return self

    def score_rows(self, rows: np.ndarray | Tensor) -> Tensor:
        """Score every column for the given rows.

        Args:
            rows: 1-D integer row indices in ``[0, n_rows)``. Repeats are allowed.

        Returns:
            ``(len(rows), n_cols)`` float32 scores. Higher means more likely positive.

        Raises:
            RuntimeError: If the baseline is not fitted.
            TypeError: If ``rows`` is not integer.
            ValueError: If ``rows`` is not 1-D or contains an index out of range.
        """
        if self.train_matrix_ is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted. Call fit(train_pairs, n_rows, n_cols) first."
            )
        rows = _check_rows(rows, self.train_matrix_.shape[0])
        scores = self._score_rows(rows)  # (B, n_cols)
        if self.fallback == "popularity":
            all_zero = ~(scores != 0).any(dim=1)  # (B,)
            scores[all_zero] = self.popularity_
        return scores

    @abstractmethod
    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        """Fit on the ``(n_rows, n_cols)`` float32 binary training matrix."""

    @abstractmethod
    def _score_rows(self, rows: Tensor) -> Tensor:
        """Return new ``(B, n_cols)`` float32 scores for validated int64 row indices."""


class Popularity(Baseline):
    """Scorer that ranks each column by its number of training positives, the same for every row.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 1], [1, 1], [1, 2]])
        >>> Popularity().fit(pairs, n_rows=2, n_cols=3).score_rows(np.array([0, 1]))
        tensor([[0., 2., 1.],
                [0., 2., 1.]])
    """

    name = "popularity"
    _hyperparameters = ()

    def __init__(self) -> None:
        super().__init__(fallback="zeros")

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        pass  # fit() already stores the column counts in popularity_

    def _score_rows(self, rows: Tensor) -> Tensor:
        return self.popularity_.repeat(rows.numel(), 1)  # (B, n_cols)


def _unit_rows(matrix: Tensor) -> Tensor:
    """Scale each row to unit L2 norm. All-zero rows stay zero."""
    norms = matrix.norm(dim=1, keepdim=True)  # (N, 1)
    return matrix / norms.clamp(min=torch.finfo(matrix.dtype).tiny)  # (N, D)


def _top_neighbour_weights(similarities: Tensor, n_neighbors: int) -> Tensor:
    """Keep each row's ``n_neighbors`` largest similarities and zero the rest.

    Entries set to -inf (excluded neighbours) and negative similarities get weight 0.
    Ties at the cut-off are broken by ``torch.topk``.

    Args:
        similarities: ``(B, N)`` float similarities.
        n_neighbors: Number of neighbours to keep per row.

    Returns:
        ``(B, N)`` non-negative weights.
    """
    n_kept = min(n_neighbors, similarities.shape[1])
    values, indices = torch.topk(similarities, n_kept, dim=1)  # (B, n_kept) each
    weights = torch.zeros_like(similarities)  # (B, N)
    return weights.scatter_(1, indices, values.clamp(min=0.0))


class RowKNN(Baseline):
    """User-kNN: a row's score for a column sums the similarities of its top neighbours
    that have that column.

    Similarity is the cosine between rows' binary training vectors. The row itself is
    never its own neighbour.

    Args:
        n_neighbors: Number of most similar rows that contribute. The default 20 is a
            common starting value, not tuned on MEF.
        fallback: Scores for all-zero rows, see :class:`Baseline`.

    Raises:
        TypeError: If ``n_neighbors`` is not an integer.
        ValueError: If ``n_neighbors < 1`` or ``fallback`` is invalid.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [1, 0], [1, 1], [2, 2]])
        >>> RowKNN(n_neighbors=1).fit(pairs, n_rows=3, n_cols=3).score_rows(np.array([0]))
        tensor([[0.7071, 0.7071, 0.0000]])
    """

    name = "row_knn"
    _hyperparameters = ("n_neighbors", "fallback")

    def __init__(self, n_neighbors: int = 20, fallback: str = "popularity") -> None:
        super().__init__(fallback=fallback)
        self.n_neighbors = _check_positive_int(n_neighbors, "n_neighbors")

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        self._unit_vectors = _unit_rows(train_matrix)  # (n_rows, n_cols)

    def _score_rows(self, rows: Tensor) -> Tensor:
        similarities = self._unit_vectors[rows] @ self._unit_vectors.T  # (B, n_rows)
        similarities[torch.arange(rows.numel()), rows] = -math.inf  # exclude the row itself
        weights = _top_neighbour_weights(similarities, self.n_neighbors)  # (B, n_rows)
        return weights @ self.train_matrix_  # (B, n_cols)


class ColumnKNN(Baseline):
    """Item-kNN: a row's score for column j sums the similarities between j and those of
    j's top neighbour columns that the row has.

    Similarity is the cosine between columns' binary training vectors, and a column is
    never its own neighbour. The sparsified ``(n_cols, n_cols)`` similarity matrix is
    built at fit time.

    Args:
        n_neighbors: Number of most similar columns kept per column. The default 20 is a
            common starting value, not tuned on MEF.
        fallback: Scores for all-zero rows, see :class:`Baseline`.

    Raises:
        TypeError: If ``n_neighbors`` is not an integer.
        ValueError: If ``n_neighbors < 1`` or ``fallback`` is invalid.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [1, 0], [1, 1], [2, 2]])
        >>> ColumnKNN(n_neighbors=1).fit(pairs, n_rows=3, n_cols=3).score_rows(np.array([0]))
        tensor([[0.0000, 0.7071, 0.0000]])
    """

    name = "column_knn"
    _hyperparameters = ("n_neighbors", "fallback")

    def __init__(self, n_neighbors: int = 20, fallback: str = "popularity") -> None:
        super().__init__(fallback=fallback)
        self.n_neighbors = _check_positive_int(n_neighbors, "n_neighbors")

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        unit_columns = _unit_rows(train_matrix.T)  # (n_cols, n_rows)
        similarities = unit_columns @ unit_columns.T  # (n_cols, n_cols), symmetric
        similarities.fill_diagonal_(-math.inf)
        # Row j of the top-k weights lists j's neighbours. The transpose puts neighbour i
        # first, so that scores = X @ weights sums over the columns i in the row's history.
        self.column_weights_ = _top_neighbour_weights(similarities, self.n_neighbors).T  # (n_cols, n_cols)

    def _score_rows(self, rows: Tensor) -> Tensor:
        return self.train_matrix_[rows] @ self.column_weights_  # (B, n_cols)


class EASE(Baseline):
    """EASE, the closed-form linear item-item model of Steck (2019), "Embarrassingly
    Shallow Autoencoders for Sparse Data".

    With ``P = (X^T X + l2 I)^-1`` the weights are ``B = I - P diag(1 / diag(P))``, which
    has a zero diagonal, and ``scores = X B``. The inverse is computed in float64 and B
    is stored as float32.

    Args:
        l2: L2 regularisation strength lambda, > 0. The default 100.0 is a starting
            value for data of MEF's size, and Steck tunes it per data set.
        fallback: Scores for all-zero rows, see :class:`Baseline`.

    Raises:
        TypeError: If ``l2`` is not a real number.
        ValueError: If ``l2`` is not finite and > 0, or ``fallback`` is invalid.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [2, 0]])
        >>> EASE(l2=1.0).fit(pairs, n_rows=3, n_cols=2).score_rows(np.array([2]))
        tensor([[0.0000, 0.5000]])
    """

    name = "ease"
    _hyperparameters = ("l2", "fallback")

    def __init__(self, l2: float = 100.0, fallback: str = "popularity") -> None:
        super().__init__(fallback=fallback)
        self.l2 = _check_l2(l2)

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        matrix = train_matrix.double()
        n_cols = matrix.shape[1]
        gram = matrix.T @ matrix + self.l2 * torch.eye(n_cols, dtype=torch.float64)  # (n_cols, n_cols)
        precision = torch.linalg.inv(gram)  # (n_cols, n_cols), symmetric positive definite
        weights = -precision / torch.diagonal(precision)[None, :]  # (n_cols, n_cols), column j / P_jj
        weights.fill_diagonal_(0.0)
        self.column_weights_ = weights.float()

    def _score_rows(self, rows: Tensor) -> Tensor:
        return self.train_matrix_[rows] @ self.column_weights_  # (B, n_cols)


class FeatureBaseline(Baseline):
    """A baseline that scores rows from their features: ``fit`` requires ``row_features``,
    ``(n_rows, F)`` real features of every row, cold rows included."""

    @classmethod
    def _check_features(cls, row_features: np.ndarray | Tensor | None, n_rows: int) -> Tensor:
        """Return the features as a float32 ``(n_rows, F)`` tensor."""
        if row_features is None:
            raise ValueError(f"row_features is missing: {cls.__name__} needs an (n_rows, F) array of row features")
        if isinstance(row_features, np.ndarray):
            row_features = torch.from_numpy(row_features)
        if not isinstance(row_features, Tensor):
            raise TypeError(
                f"row_features must be a torch.Tensor or numpy.ndarray, got {type(row_features).__name__}"
            )
        features = row_features.detach().cpu().float()
        if features.ndim != 2 or features.shape[0] != n_rows:
            raise ValueError(
                f"row_features must have shape (n_rows={n_rows}, F), got {tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("row_features contains NaN or infinite values")
        return features


class FeatureKNN(FeatureBaseline):
    """Feature-kNN for new (cold) rows: scores from the training vectors of the rows
    whose features are most similar.

    The score of a column is the similarity-weighted sum of the top neighbours' training
    vectors. Neighbours are only rows with training positives, never the scored row
    itself, so a held-out row's own training vector is never used. Neighbours with
    similarity <= 0 contribute nothing.

    Similarity ``"cosine"`` is the cosine between feature vectors. ``"tanimoto"`` is
    ``a.b / (a.a + b.b - a.b)``, which equals the Tanimoto (Jaccard) coefficient for 0/1
    fingerprints. Two all-zero vectors have similarity 0 under both.

    Args:
        n_neighbors: Number of most similar rows that contribute. The default 20 is a
            common starting value, not tuned on MEF.
        metric: ``"cosine"`` or ``"tanimoto"``.
        fallback: Scores for all-zero rows, see :class:`Baseline`.

    Raises:
        TypeError: If ``n_neighbors`` is not an integer.
        ValueError: If ``n_neighbors < 1``, or ``metric`` or ``fallback`` is invalid.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [1, 1]])
        >>> fingerprints = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]])
        >>> knn = FeatureKNN(n_neighbors=2, metric="tanimoto")
        >>> knn.fit(pairs, n_rows=3, n_cols=2, row_features=fingerprints).score_rows(np.array([2]))
        tensor([[0.6667, 0.6667]])
    """

    name = "feature_knn"
    _hyperparameters = ("n_neighbors", "metric", "fallback")

    def __init__(self, n_neighbors: int = 20, metric: str = "cosine", fallback: str = "popularity") -> None:
        super().__init__(fallback=fallback)
        self.n_neighbors = _check_positive_int(n_neighbors, "n_neighbors")
        self.metric = _check_choice(metric, "metric", SIMILARITY_METRICS)

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        features = self._check_features(row_features, train_matrix.shape[0])
        self.features_ = _unit_rows(features) if self.metric == "cosine" else features  # (n_rows, F)
        self.squared_norms_ = (features * features).sum(dim=1)  # (n_rows,)
        self.has_positives_ = train_matrix.sum(dim=1) > 0  # (n_rows,)

    def _similarities(self, rows: Tensor) -> Tensor:
        """Return ``(B, n_rows)`` similarities between the given rows and every row."""
        dots = self.features_[rows] @ self.features_.T  # (B, n_rows)
        if self.metric == "cosine":
            return dots
        union = self.squared_norms_[rows][:, None] + self.squared_norms_[None, :] - dots  # (B, n_rows)
        return torch.where(union > 0, dots / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)

    def _score_rows(self, rows: Tensor) -> Tensor:
        similarities = self._similarities(rows)  # (B, n_rows)
        similarities[:, ~self.has_positives_] = -math.inf
        similarities[torch.arange(rows.numel()), rows] = -math.inf  # never the row itself
        weights = _top_neighbour_weights(similarities, self.n_neighbors)  # (B, n_rows)
        return weights @ self.train_matrix_  # (B, n_cols)


class FeatureRidge(FeatureBaseline):
    """Ridge regression from row features to the row's training vector, for new (cold) rows.

    The model is ``scores(x) = (x - m) W + c``, fitted on the rows with training
    positives: ``m`` is their mean feature vector, ``c`` their mean training vector
    (the column popularity as a rate) and ``W`` minimizes
    ``||(X - m) W - (Y - c)||^2 + l2 ||W||^2``. It is the closed form of a linear model
    from side features, as in the ridge baselines of drug side-effect prediction.

    Feature blocks (for example ATC codes and fingerprints) are put on one scale before
    the fit. Each block is divided by the root mean squared norm of its centered rows.
    Every block then has a mean squared norm of 1 on the training rows, whatever its width.
    The solve uses the smaller of the feature dimension and the number of training rows.

    After the fit, ``loo_scores_`` holds the leave-one-out scores of the training rows:
    the score each would get from a fit without it (means refitted, block scales held
    fixed), computed in closed form from the diagonal of the hat matrix. They are on the
    scale of the scores of new rows, unlike the in-sample fit.

    Args:
        l2: L2 regularisation strength lambda, > 0. With blocks of mean squared norm 1,
            values from 1 to 10 suit data of MEF's size (746 rows).
        blocks: ``(offset, width)`` column ranges scaled separately, or None for one
            block of all columns.
        fallback: Scores for all-zero rows, see :class:`Baseline`.

    Raises:
        TypeError: If ``l2`` is not a real number.
        ValueError: If ``l2`` is not finite and > 0, or ``fallback`` is invalid; at
            ``fit``, also when a block lies outside the feature columns.

    Example:
        >>> import numpy as np
        >>> pairs = np.array([[0, 0], [1, 1]])
        >>> features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> ridge = FeatureRidge(l2=1.0).fit(pairs, n_rows=3, n_cols=2, row_features=features)
        >>> ridge.score_rows(np.array([2]))
        tensor([[0.8333, 0.1667]])
    """

    name = "feature_ridge"
    _hyperparameters = ("l2", "fallback")

    def __init__(
        self, l2: float = 3.0, blocks: list[tuple[int, int]] | None = None, fallback: str = "popularity"
    ) -> None:
        super().__init__(fallback=fallback)
        self.l2 = _check_l2(l2)
        self.blocks = None if blocks is None else [(int(offset), int(width)) for offset, width in blocks]

    def _fit(self, train_matrix: Tensor, row_features: np.ndarray | Tensor | None) -> None:
        features = self._check_features(row_features, train_matrix.shape[0]).double()  # (n_rows, F)
        n_features = features.shape[1]
        blocks = [(0, n_features)] if self.blocks is None else self.blocks
        for offset, width in blocks:
            if offset < 0 or width < 1 or offset + width > n_features:
                raise ValueError(f"block (offset={offset}, width={width}) lies outside the {n_features} feature columns")

        train_rows = torch.nonzero(train_matrix.sum(dim=1) > 0).squeeze(1)  # (T,)
        targets = train_matrix[train_rows].double()  # (T, C)
        feature_mean = features[train_rows].mean(dim=0)  # (F,)
        target_mean = targets.mean(dim=0)  # (C,)

        scale = torch.ones(n_features, dtype=torch.float64)
        centered = features[train_rows] - feature_mean  # (T, F)
        for offset, width in blocks:
            norm = centered[:, offset : offset + width].square().sum(dim=1).mean().sqrt()
            if norm > 0:
                scale[offset : offset + width] = 1.0 / norm

        design = centered * scale  # (T, F)
        residual = targets - target_mean  # (T, C)
        if len(train_rows) <= n_features:
            gram = design @ design.T  # (T, T)
            inverse = torch.linalg.inv(gram + self.l2 * torch.eye(len(train_rows), dtype=torch.float64))
            weights = design.T @ (inverse @ residual)  # (F, C)
            leverage = (gram * inverse).sum(dim=1)  # diag(G (G + l2 I)^-1), G symmetric
        else:
            inverse = torch.linalg.inv(design.T @ design + self.l2 * torch.eye(n_features, dtype=torch.float64))
            weights = inverse @ (design.T @ residual)  # (F, C)
            leverage = ((design @ inverse) * design).sum(dim=1)  # (T,) diag(A (A^T A + l2 I)^-1 A^T)

        fitted = design @ weights  # (T, C), centered
        # The unpenalized intercept (the means) adds 1 / T to each leverage. The
        # leave-one-out residual of a linear smoother is (y - fitted) / (1 - h).
        leverage = leverage + 1.0 / len(train_rows)
        loo = residual - (residual - fitted) / (1.0 - leverage)[:, None]

        self.features_ = features.float()
        self.feature_mean_ = feature_mean.float()
        self.weights_ = (scale[:, None] * weights).float()  # (F, C), acts on unscaled centered features
        self.target_mean_ = target_mean.float()
        self.train_rows_ = train_rows
        self.loo_scores_ = (loo + target_mean).float()  # (T, C)

    def score_features(self, features: Tensor) -> Tensor:
        """Return the ``(N, n_cols)`` scores of rows with the ``(N, F)`` features given."""
        return (features.float() - self.feature_mean_) @ self.weights_ + self.target_mean_

    def _score_rows(self, rows: Tensor) -> Tensor:
        return self.score_features(self.features_[rows])  # (B, n_cols)


BASELINES: dict[str, type[Baseline]] = {
    baseline.name: baseline for baseline in (Popularity, RowKNN, ColumnKNN, EASE, FeatureKNN, FeatureRidge)
}


def make_baseline(name: str, **kwargs: Any) -> Baseline:
    """Build a registered baseline by name.

    Args:
        name: A key of :data:`BASELINES`: ``"popularity"``, ``"row_knn"``,
            ``"column_knn"``, ``"ease"``, ``"feature_knn"`` or ``"feature_ridge"``.
        **kwargs: Constructor arguments of that baseline.

    Returns:
        An unfitted baseline.

    Raises:
        ValueError: If ``name`` is not registered, or as the baseline's constructor.
        TypeError: If a keyword argument is not accepted by the constructor.

    Example:
        >>> make_baseline("ease", l2=50.0)
        EASE(l2=50.0, fallback='popularity')
    """
    if name not in BASELINES:
        raise ValueError(f"Unknown baseline name {name!r}. Valid names: {', '.join(sorted(BASELINES))}")
    return BASELINES[name](**kwargs)
