"""Tests of the loss functions against values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from hybridmf.losses import (
    LOSSES,
    PAIRWISE_LOSSES,
    bpr_loss,
    get_loss,
    margin_loss,
    weighted_bce_loss,
)


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_weighted_bce_hand_value():
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([1.0, 0.0, 1.0])

    # -log σ(x) = softplus(-x) for a positive, -log(1 - σ(x)) = softplus(x) for a negative.
    expected = (2 * _softplus(0.0) + _softplus(2.0) + 2 * _softplus(1.0)) / 3

    assert weighted_bce_loss(logits, labels, pos_weight=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_default_is_plain_bce():
    logits = torch.tensor([0.3, -1.2, 2.5, 0.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])

    expected = F.binary_cross_entropy_with_logits(logits, labels)

    assert torch.allclose(weighted_bce_loss(logits, labels), expected)


def test_weighted_bce_equals_keras_class_weight():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, generator=generator, dtype=torch.float64)
    labels = (torch.rand(64, generator=generator) < 0.3).to(torch.float64)
    pos_weight = 5.0

    # Keras class_weight multiplies each sample's loss and divides by the batch size.
    sample_weight = torch.where(labels == 1, pos_weight, 1.0)
    per_sample = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    expected = (sample_weight * per_sample).sum() / len(labels)

    assert torch.allclose(weighted_bce_loss(logits, labels, pos_weight=pos_weight), expected)


def test_weighted_bce_linear_in_pos_weight():
    logits = torch.tensor([0.5, -0.5, 1.5, -2.0], dtype=torch.float64)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    positive_sum = _softplus(-0.5) + _softplus(-1.5)

    loss_1 = weighted_bce_loss(logits, labels, pos_weight=1.0).item()
    loss_2 = weighted_bce_loss(logits, labels, pos_weight=2.0).item()
    loss_4 = weighted_bce_loss(logits, labels, pos_weight=4.0).item()

    # Each extra unit of pos_weight adds the positives' mean BCE over the whole batch.
    assert loss_2 - loss_1 == pytest.approx(positive_sum / 4, rel=1e-12)
    assert loss_4 - loss_2 == pytest.approx(2 * positive_sum / 4, rel=1e-12)


def test_weighted_bce_gradient_scales_positives_only():
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    gradients = {}
    for pos_weight in (1.0, 4.0):
        logits = torch.tensor([0.5, -0.5, 1.5, -2.0], requires_grad=True)
        weighted_bce_loss(logits, labels, pos_weight=pos_weight).backward()
        gradients[pos_weight] = logits.grad

    positive = labels == 1
    assert torch.allclose(gradients[4.0][positive], 4 * gradients[1.0][positive])
    assert torch.equal(gradients[4.0][~positive], gradients[1.0][~positive])


def test_weighted_bce_accepts_bool_labels():
    logits = torch.tensor([0.0, 1.0])

    from_bool = weighted_bce_loss(logits, torch.tensor([True, False]), pos_weight=3.0)
    from_float = weighted_bce_loss(logits, torch.tensor([1.0, 0.0]), pos_weight=3.0)

    assert torch.equal(from_bool, from_float)


def test_weighted_bce_keeps_float64():
    loss = weighted_bce_loss(torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 0.0]))

    assert loss.dtype == torch.float64
    assert loss.shape == ()


def test_weighted_bce_example_weights_hand_value():
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([1.0, 0.0, 1.0])
    weights = torch.tensor([3.0, 1.0, 0.5])

    # A positive of weight w weighs pos_weight * w = 6 and 1; the negative weighs 1.
    expected = (6 * _softplus(0.0) + _softplus(2.0) + 1 * _softplus(1.0)) / 3

    loss = weighted_bce_loss(logits, labels, pos_weight=2.0, weights=weights)

    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weight_two_equals_doubled_pos_weight():
    """A positive of weight 2 weighs exactly what it weighs with pos_weight doubled."""
    labels = torch.tensor([0.0, 1.0, 0.0, 0.0])
    weights = torch.tensor([1.0, 2.0, 1.0, 1.0])  # the unknown pairs keep weight 1
    losses, gradients = [], []
    for pos_weight, example_weights in ((3.0, weights), (6.0, None)):
        logits = torch.tensor([0.5, -0.5, 1.5, -2.0], requires_grad=True)
        loss = weighted_bce_loss(logits, labels, pos_weight=pos_weight, weights=example_weights)
        loss.backward()
        losses.append(loss)
        gradients.append(logits.grad)

    assert torch.equal(losses[0], losses[1])
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-6, atol=0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda weights: weighted_bce_loss(torch.tensor([0.3, -1.2, 2.5]), torch.tensor([1.0, 0.0, 1.0]), 5.0, weights),
        lambda weights: bpr_loss(torch.tensor([0.3, -1.2, 2.5]), torch.tensor([1.0, 0.0, 1.0]), weights),
        lambda weights: margin_loss(torch.tensor([0.3, -1.2, 2.5]), torch.tensor([1.0, 0.0, 1.0]), 1.0, weights),
    ],
)
def test_unit_weights_equal_no_weights(call):
    assert torch.equal(call(torch.ones(3)), call(None))


def test_bpr_weights_each_triplet():
    positive = torch.tensor([2.0, 0.0])
    negative = torch.tensor([0.0, 1.0])
    weights = torch.tensor([0.5, 4.0])

    # Each triplet's term times its positive's weight, divided by the batch size 2.
    expected = (0.5 * _softplus(-2.0) + 4.0 * _softplus(1.0)) / 2

    assert bpr_loss(positive, negative, weights).item() == pytest.approx(expected, rel=1e-6)


def test_margin_weights_each_triplet():
    positive = torch.tensor([3.0, 1.0, 0.0])
    negative = torch.tensor([1.0, 1.0, 2.0])
    weights = torch.tensor([7.0, 2.0, 0.5])

    # Terms 0, 1 and 3, as in test_margin_hand_value, weighted 7, 2 and 0.5.
    assert margin_loss(positive, negative, weights=weights).item() == pytest.approx((0 + 2 + 1.5) / 3)


def test_bpr_hand_value():
    positive = torch.tensor([2.0, 0.0])
    negative = torch.tensor([0.0, 1.0])

    # -log σ(d) = softplus(-d) with d = s⁺ - s⁻ = 2 and -1.
    expected = (_softplus(-2.0) + _softplus(1.0)) / 2

    assert bpr_loss(positive, negative).item() == pytest.approx(expected, rel=1e-6)


def test_bpr_stable_for_large_differences():
    positive = torch.tensor([-1000.0, 1000.0], requires_grad=True)
    negative = torch.tensor([1000.0, -1000.0])

    loss = bpr_loss(positive, negative)
    loss.backward()

    assert loss.item() == pytest.approx(1000.0)  # (2000 + 0) / 2
    assert torch.isfinite(positive.grad).all()
    assert positive.grad.tolist() == pytest.approx([-0.5, 0.0])


def test_margin_hand_value():
    positive = torch.tensor([3.0, 1.0, 0.0])
    negative = torch.tensor([1.0, 1.0, 2.0])

    # max(0, 1 - 3 + 1) = 0, max(0, 1 - 1 + 1) = 1, max(0, 1 - 0 + 2) = 3.
    assert margin_loss(positive, negative).item() == pytest.approx(4 / 3)
    # With margin 0.5: 0, 0.5 and 2.5.
    assert margin_loss(positive, negative, margin=0.5).item() == pytest.approx(1.0)
    # With margin 0 only the inverted pair counts: 2 / 3.
    assert margin_loss(positive, negative, margin=0.0).item() == pytest.approx(2 / 3)


def test_margin_gradient_zero_beyond_margin():
    positive = torch.tensor([5.0, 0.0], requires_grad=True)
    negative = torch.tensor([0.0, 0.0])

    margin_loss(positive, negative).backward()

    assert positive.grad.tolist() == [0.0, -0.5]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(2), pos_weight=0.0), ValueError, r"pos_weight .* got 0\.0"),
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(2), pos_weight=-1.0), ValueError, r"got -1\.0"),
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(2), pos_weight=math.inf), ValueError, r"finite .* got inf"),
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(3)), ValueError, r"same shape, got \(2,\) and \(3,\)"),
        (lambda: weighted_bce_loss(torch.zeros(2, 1), torch.ones(2, 1)), ValueError, r"logits must be 1-D .* \(2, 1\)"),
        (lambda: weighted_bce_loss(torch.zeros(0), torch.ones(0)), ValueError, r"must not be empty"),
        (lambda: weighted_bce_loss(torch.zeros(2, dtype=torch.int64), torch.ones(2)), TypeError, r"logits .* torch\.int64"),
        (lambda: weighted_bce_loss([0.0, 1.0], torch.ones(2)), TypeError, r"logits must be a torch\.Tensor, got list"),
        (lambda: bpr_loss(torch.zeros(3), torch.zeros(2)), ValueError, r"positive and negative .* \(3,\) and \(2,\)"),
        (lambda: bpr_loss(torch.zeros(()), torch.zeros(())), ValueError, r"positive must be 1-D .* got shape \(\)"),
        (lambda: bpr_loss(torch.zeros(2), torch.zeros(2, dtype=torch.int64)), TypeError, r"negative .* torch\.int64"),
        (lambda: margin_loss(torch.zeros(2), torch.zeros(2), margin=-0.1), ValueError, r"margin .* got -0\.1"),
        (lambda: margin_loss(torch.zeros(2), torch.zeros(2), margin=math.nan), ValueError, r"margin .* got nan"),
        (lambda: margin_loss(torch.zeros(2, 2), torch.zeros(2, 2)), ValueError, r"positive must be 1-D"),
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(2), weights=torch.ones(3)), ValueError, r"weights must have the shape of the scores, \(2,\), got \(3,\)"),
        (lambda: weighted_bce_loss(torch.zeros(2), torch.ones(2), weights=torch.ones(2, dtype=torch.int64)), TypeError, r"weights must be a floating-point tensor, got dtype torch\.int64"),
        (lambda: bpr_loss(torch.zeros(2), torch.zeros(2), [1.0, 1.0]), TypeError, r"weights must be a torch\.Tensor or None, got list"),
        (lambda: margin_loss(torch.zeros(2), torch.zeros(2), weights=torch.ones(2, 1)), ValueError, r"weights must have the shape .* got \(2, 1\)"),
    ],
)
def test_loss_invalid_input_raises(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("name", ["bce", "bpr", "margin"])
def test_get_loss_returns_registered(name):
    assert get_loss(name) is LOSSES[name]


def test_get_loss_unknown_lists_names():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; valid names are \['bce', 'bpr', 'margin'\]"):
        get_loss("hinge")


def test_pairwise_losses_are_registered():
    assert PAIRWISE_LOSSES <= set(LOSSES)
    assert "bce" not in PAIRWISE_LOSSES
