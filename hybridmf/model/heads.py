"""Heads: the logit of a (row, column) pair from the two latent vectors.

Every head scores pairs (``forward``) and whole blocks of rows × columns (``score_matrix``);
both give the same numbers for the same pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hybridmf.model.towers import ACTIVATIONS


class DotHead(nn.Module):
    """Dot product followed by an affine map: ``logit = w · ⟨u, v⟩ + b``.

    This is the classic "embedding · embedding → Dense(1) → sigmoid" model; the sigmoid is
    left to the loss.

    Example:
        >>> head = DotHead()
        >>> u, v = torch.ones(2, 3), torch.ones(2, 3)
        >>> torch.allclose(head(u, v), head.score_matrix(u, v).diagonal())
        True
    """

    def __init__(self) -> None:
        super().__init__()
        self.affine = nn.Linear(1, 1)
        nn.init.ones_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return ``(B,)`` logits of the pairs ``(rows[i], cols[i])``, both ``(B, k)``."""
        dot = (rows * cols).sum(dim=1, keepdim=True)  # (B, 1)
        return self.affine(dot).squeeze(1)  # (B,)

    def score_matrix(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return ``(N, M)`` logits of every pair of ``rows`` ``(N, k)`` and ``cols`` ``(M, k)``."""
        dot = rows @ cols.T  # (N, k) @ (k, M) -> (N, M)
        return dot * self.affine.weight[0, 0] + self.affine.bias[0]


class MLPHead(nn.Module):
    """Deep interaction head: an MLP over ``[u, v]`` and optionally ``u ⊙ v`` (NCF/NeuMF style).

    Args:
        k: Size of the latent vectors.
        hidden: Sizes of the hidden layers.
        activation: One of ``ACTIVATIONS``.
        dropout: Dropout after each hidden layer.
        product: Also feed the element-wise product ``u ⊙ v``.
        max_block: Largest number of pairs scored at once by ``score_matrix``.

    Example:
        >>> head = MLPHead(k=3, hidden=(8,)).eval()
        >>> u, v = torch.randn(2, 3), torch.randn(2, 3)
        >>> torch.allclose(head(u, v), head.score_matrix(u, v).diagonal(), atol=1e-6)
        True
    """

    def __init__(
        self,
        k: int,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
        dropout: float = 0.0,
        product: bool = True,
        max_block: int = 1 << 18,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.product = product
        self.max_block = max_block
        layers: list[nn.Module] = []
        size = (3 if product else 2) * k
        for width in hidden:
            layers += [nn.Linear(size, width), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            size = width
        layers.append(nn.Linear(size, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return ``(B,)`` logits of the pairs ``(rows[i], cols[i])``, both ``(B, k)``."""
        parts = [rows, cols, rows * cols] if self.product else [rows, cols]
        return self.layers(torch.cat(parts, dim=1)).squeeze(1)  # (B, 2k or 3k) -> (B,)

    def score_matrix(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return ``(N, M)`` logits of every pair of ``rows`` ``(N, k)`` and ``cols`` ``(M, k)``.

        Rows are processed in blocks of at most ``max_block`` pairs to bound memory.
        """
        n_rows, k = rows.shape
        n_cols = cols.shape[0]
        step = max(1, self.max_block // max(n_cols, 1))
        blocks = []
        for start in range(0, n_rows, step):
            block = rows[start : start + step]  # (n, k)
            left = block.unsqueeze(1).expand(-1, n_cols, -1).reshape(-1, k)  # (n * M, k)
            right = cols.unsqueeze(0).expand(len(block), -1, -1).reshape(-1, k)  # (n * M, k)
            blocks.append(self(left, right).view(len(block), n_cols))  # (n, M)
        return torch.cat(blocks, dim=0)  # (N, M)


def make_head(name: str, k: int, hidden: Sequence[int] = (64,), dropout: float = 0.0, product: bool = True) -> nn.Module:
    """Build a head by name: ``"dot"`` or ``"mlp"``.

    Raises:
        ValueError: When ``name`` is unknown.

    Example:
        >>> type(make_head("mlp", k=4)).__name__
        'MLPHead'
    """
    if name == "dot":
        return DotHead()
    if name == "mlp":
        return MLPHead(k, hidden=hidden, dropout=dropout, product=product)
    raise ValueError(f"head must be 'dot' or 'mlp', got {name!r}")
