"""The one place where qgen imports escnn.

escnn solves kernel spaces (Clebsch-Gordan coefficients, Sylvester equations for
intertwiners, change-of-basis matrices) with ``escnn.group._numerical.null``, an SVD
that switches to scikit-learn's ``randomized_svd`` whenever scikit-learn is importable.
escnn hands that function an ``np.matrix``, which scikit-learn >= 1.2 refuses
(``TypeError: np.matrix is not supported``), so with scikit-learn installed every
escnn path that reaches ``null`` with a cold cache fails: Schur decompositions of
tensor products, Clebsch-Gordan tensors, grid decompositions. ``load_escnn`` imports
escnn once and makes ``null`` use the exact (LAPACK) SVD on every path: the kernel
``{x : A x = 0}`` it returns is then deterministic, and no randomness enters a basis.

escnn keeps its own joblib cache of Clebsch-Gordan tensors inside its package
(``escnn.group.__cache_path__``); qgen's cache of finished decompositions is separate
(``$QGEN_CACHE/escnn``). A warm escnn cache skips ``null`` entirely, which is how this
failure once hid from CI: tests/test_escnn_fresh.py runs a build with both caches empty.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

__all__ = ["EscnnMissing", "load_escnn"]

INSTALL_HINT = (
    "escnn types need the escnn package to count and build (not to run generated "
    "layers): pip install 'qgen[escnn]', or bash scripts/setup.sh"
)


class EscnnMissing(ImportError):
    """escnn is not installed; the message says how to install it."""


@cache
def load_escnn() -> ModuleType:
    """``escnn.group``, imported once, with its kernel solver on the exact SVD."""
    try:
        import escnn.group as eg
        from escnn.group import _numerical
    except ImportError as exc:
        raise EscnnMissing(INSTALL_HINT) from exc
    # ``null`` reads this module global at call time: None selects scipy's dense SVD.
    _numerical.randomized_svd = None
    return eg
