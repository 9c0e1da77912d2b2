"""Towers: the latent vector of a row or column entity from its ID and its side features.

A tower combines an ID embedding with an encoder of the entity's feature vector. Either
part can be switched off: ID embeddings only is plain matrix factorization, features only
is a content model that scores entities never seen in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
NORMS = (None, "batch", "layer")
COMBINES = ("sum", "concat")


class MLPEncoder(nn.Module):
    """Multi-layer perceptron from a feature vector to the latent space.

    With no hidden layers the encoder is a single linear map.

    Args:
        in_features: Size of the feature vector.
        out_features: Size of the latent space.
        hidden: Sizes of the hidden layers.
        activation: One of ``ACTIVATIONS``.
        dropout: Dropout probability after each hidden layer.
        norm: ``None``, ``"batch"`` or ``"layer"`` normalization after each hidden layer.

    Raises:
        ValueError: When ``activation`` or ``norm`` is not supported.

    Example:
        >>> encoder = MLPEncoder(16, 4, hidden=(8,), norm="layer")
        >>> encoder(torch.zeros(3, 16)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        layers: list[nn.Module] = []
        size = in_features
        for width in hidden:
            layers.append(nn.Linear(size, width))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(width))
            elif norm == "layer":
                layers.append(nn.LayerNorm(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            size = width
        layers.append(nn.Linear(size, out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """Map ``(B, in_features)`` features to ``(B, out_features)`` latent vectors."""
        return self.layers(features)


class Tower(nn.Module):
    """Latent vectors of one side (rows or columns): ID embedding, feature encoder, or both.

    The feature matrix of all entities is a buffer, so it travels with the checkpoint.
    Entities marked as untrained (absent from every training example) get a zero ID
    embedding, so an embedding that never received a gradient adds no noise to their score.

    The encoder runs once per distinct entity of a batch, not once per example. So in
    training, an entity that occurs several times in a batch gets one encoder dropout
    mask, and batch normalization computes its statistics over the distinct entities.

    Args:
        n_entities: Number of entities of this side.
        k: Size of the latent space.
        use_ids: Learn an ID embedding per entity.
        feature_dim: Size of the feature vector; 0 for no features.
        encoder_hidden: Hidden layer sizes of the feature encoder.
        activation: Activation of the encoder.
        dropout: Dropout of the encoder.
        norm: Normalization of the encoder.
        combine: ``"sum"`` adds the ID embedding and the encoded features; ``"concat"``
            concatenates them and projects back to ``k``.
        id_dropout: Probability of zeroing an example's ID embedding in training, which
            makes the feature path carry the signal (useful for new entities). A tower
            without features ignores it.
        init_std: Standard deviation of the normal initialization of the ID embeddings.

    Raises:
        ValueError: When neither IDs nor features are used, or an option is invalid.

    Example:
        >>> tower = Tower(n_entities=5, k=3, feature_dim=4)
        >>> tower(torch.tensor([0, 4])).shape
        torch.Size([2, 3])
        >>> tower.encode_features(torch.ones(1, 4)).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        n_entities: int,
        k: int,
        use_ids: bool = True,
        feature_dim: int = 0,
        encoder_hidden: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        norm: str | None = None,
        combine: str = "sum",
        id_dropout: float = 0.0,
        init_std: float = 0.05,
    ) -> None:
        super().__init__()
        if not use_ids and feature_dim == 0:
            raise ValueError("a tower needs ID embeddings (use_ids=True) or features (feature_dim > 0)")
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"id_dropout must lie in [0, 1), got {id_dropout}")
        self.k = k
        self.use_ids = use_ids
        self.feature_dim = feature_dim
        self.combine = combine
        # Without features, dropping the ID embedding would leave the example no input at all.
        self.id_dropout = id_dropout if feature_dim > 0 else 0.0
        self.embedding = nn.Embedding(n_entities, k) if use_ids else None
        if self.embedding is not None:
            nn.init.normal_(self.embedding.weight, std=init_std)
        self.register_buffer("trained", torch.ones(n_entities, dtype=torch.bool))
        self.encoder = None
        self.projection = None
        if feature_dim > 0:
            self.register_buffer("features", torch.zeros(n_entities, feature_dim))
            self.encoder = MLPEncoder(feature_dim, k, encoder_hidden, activation, dropout, norm)
            if use_ids and combine == "concat":
                self.projection = nn.Linear(2 * k, k)

    def forward(self, index: Tensor) -> Tensor:
        """Return the ``(B, k)`` latent vectors of the entities ``index`` ``(B,)``."""
        encoded = self._encode(index) if self.encoder is not None else None
        embedded = None
        if self.embedding is not None:
            # Masking the (N, k) table before the gather is cheaper than masking (B, k) rows.
            # index_select's backward (index_add) is faster on the CPU than nn.Embedding's
            # (torch 2.13), and both give the same values and gradients.
            table = self.embedding.weight * self.trained.unsqueeze(1)  # (N, k)
            embedded = table.index_select(0, index)  # (B, k)
            if self.training and self.id_dropout > 0:
                keep = torch.rand(len(index), 1, device=index.device) >= self.id_dropout  # (B, 1)
                embedded = embedded * keep
        return self._combine(embedded, encoded)

    def _encode(self, index: Tensor) -> Tensor:
        # A batch of B pairs names at most min(B, N) distinct entities, and gathering the
        # (B, d) feature rows dominates the step time for wide features such as fingerprints.
        unique, inverse = torch.unique(index, return_inverse=True)  # (U,), (B,)
        return self.encoder(self.features[unique])[inverse]  # (U, d) -> (U, k) -> (B, k)

    def encode_features(self, features: Tensor) -> Tensor:
        """Return the ``(B, k)`` latent vectors of new entities from their ``(B, d)`` features.

        The ID part counts as zero, exactly as for an entity that had no training pair.

        Raises:
            ValueError: When the tower has no feature encoder.
        """
        if self.encoder is None:
            raise ValueError("this tower has no feature encoder, so it cannot embed new entities")
        encoded = self.encoder(features)  # (B, k)
        embedded = torch.zeros_like(encoded) if self.embedding is not None else None
        return self._combine(embedded, encoded)

    def _combine(self, embedded: Tensor | None, encoded: Tensor | None) -> Tensor:
        if encoded is None:
            return embedded
        if embedded is None:
            return encoded
        if self.projection is not None:
            return self.projection(torch.cat([embedded, encoded], dim=1))  # (B, 2k) -> (B, k)
        return embedded + encoded

    def all(self) -> Tensor:
        """Return the ``(N, k)`` latent vectors of every entity."""
        index = torch.arange(len(self.trained), device=self.trained.device)
        return self(index)
