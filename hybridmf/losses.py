"""Loss functions of scores (logits) for binary implicit feedback.

Every loss is a pure function that takes score tensors and returns a scalar mean over the
batch. Pointwise losses take the scores of ``(row, column)`` pairs with 0/1 labels, and
pairwise losses take the scores of a positive and a negative column of the same row.
Each also takes optional ``(B,)`` example weights that multiply each example's term; the
mean still divides by the batch size ``B``. Without weights no multiplication by weights
happens, so the result is bit for bit that of the unweighted formula.
``LOSSES`` maps a configuration name to its function, and ``PAIRWISE_LOSSES`` names the
losses that need triplets instead of labelled pairs.

Example:
    >>> loss = get_loss("bpr")
    >>> round(loss(torch.tensor([1.0]), torch.tensor([1.0])).item(), 4)  # log(2)
    0.6931
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_bce_loss(
    logits: Tensor, labels: Tensor, pos_weight: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """Compute the binary cross-entropy of logits, with positives weighted by ``pos_weight``.

    The loss is the batch mean of ``w_i * BCE_i``, where ``w_i`` is ``pos_weight`` for a
    positive and 1 for a negative, times ``weights[i]`` when ``weights`` is given. A known
    pair of confidence ``c`` therefore weighs ``pos_weight * c`` when its example weight is
    ``c``, and an unknown pair of example weight 1 weighs 1. Without ``weights`` this equals
    Keras ``class_weight={0: 1, 1: pos_weight}``
    in tf.keras 2.x, whose default reduction ``SUM_OVER_BATCH_SIZE`` also divides by the
    batch size, not by the sum of the weights.
    ``F.binary_cross_entropy_with_logits(..., pos_weight=...)`` computes exactly this for
    0/1 labels, so it is used here. For a label ``y`` between 0 and 1 (label smoothing) the
    term is ``-(pos_weight * y * log σ(x) + (1 - y) * log(1 - σ(x)))``.

    Args:
        logits: ``(B,)`` floating-point scores before the sigmoid.
        labels: ``(B,)`` labels, 1 for a positive and 0 for an unknown pair. Bool and
            integer labels are converted to the dtype of ``logits``.
        pos_weight: Weight of the positive term, a finite number greater than 0.
        weights: Optional ``(B,)`` floating-point example weights, finite and greater than
            or equal to 0, converted to the dtype of ``logits``. They are not checked for
            finiteness here, because that would wait for the device in every step; the
            data loaders validate them.

    Returns:
        A 0-dimensional tensor of the dtype of ``logits``.

    Raises:
        ValueError: When ``logits``, ``labels`` or ``weights`` is not 1-D, their shapes
            differ, the batch is empty, or ``pos_weight`` is not a finite number greater
            than 0.
        TypeError: When ``logits`` or ``weights`` is not a floating-point tensor.

    Example:
        >>> logits = torch.tensor([0.0, 0.0])
        >>> labels = torch.tensor([1.0, 0.0])
        >>> round(weighted_bce_loss(logits, labels).item(), 4)  # log(2)
        0.6931
        >>> round(weighted_bce_loss(logits, labels, pos_weight=3.0).item(), 4)  # (3 + 1) * log(2) / 2
        1.3863
        >>> weights = torch.tensor([2.0, 1.0])  # the positive has confidence 2
        >>> round(weighted_bce_loss(logits, labels, pos_weight=3.0, weights=weights).item(), 4)  # (6 + 1) * log(2) / 2
        2.426
    """
    _check_scores("logits", logits, "labels", labels, second_is_score=False)
    if not math.isfinite(pos_weight) or pos_weight <= 0:
        raise ValueError(f"pos_weight must be a finite number greater than 0, got {pos_weight}")
    labels = labels.to(logits.dtype)
    weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)  # ()
    if weights is None:
        return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
    weights = _check_weights(weights, logits)
    return F.binary_cross_entropy_with_logits(logits, labels, weight=weights, pos_weight=weight)


def bpr_loss(positive: Tensor, negative: Tensor, weights: Tensor | None = None) -> Tensor:
    """Compute the Bayesian personalized ranking (BPR) loss of positive and negative scores.

    The loss is the batch mean of ``-log σ(s⁺ - s⁻)``, computed as ``softplus(s⁻ - s⁺)``,
    which does not overflow for large score differences. With ``weights``, each term is
    multiplied by its triplet's weight, and the mean still divides by ``B``.

    Args:
        positive: ``(B,)`` floating-point scores of the positive columns.
        negative: ``(B,)`` scores of the sampled negative columns, one per positive and of
            the same row.
        weights: Optional ``(B,)`` floating-point weight of each triplet, for example the
            confidence of its positive pair; finite and greater than or equal to 0 (not
            checked here, see ``weighted_bce_loss``).

    Returns:
        A 0-dimensional tensor of the dtype of ``positive``.

    Raises:
        ValueError: When an input is not 1-D, the shapes differ or the batch is empty.
        TypeError: When an input is not a floating-point tensor.

    Example:
        >>> round(bpr_loss(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0])).item(), 4)  # log(2)
        0.6931
        >>> bpr_loss(torch.tensor([1000.0]), torch.tensor([0.0])).item()
        0.0
        >>> round(bpr_loss(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0]), torch.tensor([3.0, 1.0])).item(), 4)  # 2 log(2)
        1.3863
    """
    _check_scores("positive", positive, "negative", negative)
    terms = F.softplus(negative - positive)  # (B,)
    if weights is None:
        return terms.mean()
    return (terms * _check_weights(weights, positive)).mean()


def margin_loss(
    positive: Tensor, negative: Tensor, margin: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """Compute the hinge loss that pushes positive scores ``margin`` above negative scores.

    The loss is the batch mean of ``max(0, margin - s⁺ + s⁻)``. With ``weights``, each term
    is multiplied by its triplet's weight, and the mean still divides by ``B``.

    Args:
        positive: ``(B,)`` floating-point scores of the positive columns.
        negative: ``(B,)`` scores of the sampled negative columns, one per positive and of
            the same row.
        margin: Required gap between a positive and a negative score, a finite number
            greater than or equal to 0.
        weights: Optional ``(B,)`` floating-point weight of each triplet, as in ``bpr_loss``.

    Returns:
        A 0-dimensional tensor of the dtype of ``positive``.

    Raises:
        ValueError: When an input is not 1-D, the shapes differ, the batch is empty, or
            ``margin`` is negative or not finite.
        TypeError: When an input is not a floating-point tensor.

    Example:
        >>> margin_loss(torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.0])).item()  # (0 + 0.5) / 2
        0.25
        >>> margin_loss(torch.tensor([2.0, 0.5]), torch.tensor([0.0, 0.0]), weights=torch.tensor([1.0, 3.0])).item()  # (0 + 1.5) / 2
        0.75
    """
    _check_scores("positive", positive, "negative", negative)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number greater than or equal to 0, got {margin}")
    terms = F.relu(margin - positive + negative)  # (B,)
    if weights is None:
        return terms.mean()
    return (terms * _check_weights(weights, positive)).mean()


LOSSES: dict[str, Callable[..., Tensor]] = {
    "bce": weighted_bce_loss,
    "bpr": bpr_loss,
    "margin": margin_loss,
}
"""Loss functions by configuration name."""

PAIRWISE_LOSSES: frozenset[str] = frozenset({"bpr", "margin"})
"""Names of the losses that take ``(positive, negative)`` scores instead of labelled pairs."""


def get_loss(name: str) -> Callable[..., Tensor]:
    """Look up a loss function by its configuration name.

    Args:
        name: One of the keys of ``LOSSES``: ``"bce"``, ``"bpr"`` or ``"margin"``.

    Returns:
        The loss function.

    Raises:
        ValueError: When ``name`` is not a key of ``LOSSES``.

    Example:
        >>> get_loss("margin") is margin_loss
        True
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {sorted(LOSSES)}")
    return LOSSES[name]


def _check_weights(weights: Tensor, scores: Tensor) -> Tensor:
    """Return ``(B,)`` example weights in the dtype of the ``(B,)`` ``scores``, or raise.

    Only the type and the shape are checked: a value check would wait for the device.
    """
    if not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor or None, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if weights.shape != scores.shape:
        raise ValueError(
            f"weights must have the shape of the scores, {tuple(scores.shape)}, got {tuple(weights.shape)}"
        )
    return weights.to(scores.dtype)


def _check_scores(
    first_name: str, first: Tensor, second_name: str, second: Tensor, second_is_score: bool = True
) -> None:
    """Raise unless both inputs are non-empty 1-D tensors of one shape and the scores are floating point.

    ``first`` is always a score tensor; ``second`` is one unless ``second_is_score`` is false.
    """
    for name, value in ((first_name, first), (second_name, second)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.dim() != 1:
            raise ValueError(f"{name} must be 1-D with shape (B,), got shape {tuple(value.shape)}")
    if first.shape != second.shape:
        raise ValueError(
            f"{first_name} and {second_name} must have the same shape, got "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    if first.numel() == 0:
        raise ValueError(f"{first_name} and {second_name} must not be empty, got shape {tuple(first.shape)}")
    scores = ((first_name, first), (second_name, second)) if second_is_score else ((first_name, first),)
    for name, value in scores:
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
