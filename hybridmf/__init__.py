"""hybridmf: hybrid matrix factorization for binary implicit feedback with side features.

Example:
    >>> from hybridmf import HybridMF
    >>> HybridMF(n_rows=2, n_cols=3).hparams.k
    5
"""

from hybridmf.model.module import HybridMF

__all__ = ["HybridMF"]
__version__ = "0.1.0"
