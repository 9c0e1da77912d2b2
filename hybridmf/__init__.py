"""hybridmf: hybrid matrix factorization for binary implicit feedback with side features."""

__version__ = "0.1.0"
