"""escnn on a new machine: builds with escnn's joblib cache and qgen's cache both empty.

A warm cache once hid a crash (escnn's kernel solver handing an ``np.matrix`` to
scikit-learn's ``randomized_svd``): these tests run ``qgen build`` in a fresh interpreter
whose HOME, ``$QGEN_CACHE`` and escnn joblib cache are empty folders of the test, so
every Schur decomposition and Clebsch-Gordan tensor is computed from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("escnn")

ROOT = Path(__file__).resolve().parents[1]

# escnn binds ``joblib.Memory(escnn.group.__cache_path__)`` at import: redirect it first.
_FRESH_BUILD = """
import sys, joblib
_Memory = joblib.Memory
joblib.Memory = lambda location=None, **kw: _Memory(sys.argv[1], **kw)
from qgen.cli.main import main
sys.exit(main(sys.argv[2:]))
"""

SO2_SPEC = """\
name: inr_so2
types:
  coord: {size: 2, group: {escnn: so2}, rep: standard}
  feat: {group: {escnn: so2}, rep: [standard, {irrep: 2}]}
  h1: {group: perm}
  y: {size: 1}
tensors:
  W1: [h1, coord*]
  b1: [h1]
  W2: [y, h1*]
  F: [feat, feat*]
"""


def fresh_build(tmp_path: Path, spec: Path) -> subprocess.CompletedProcess:
    home, joblib_dir, out = (tmp_path / d for d in ("home", "escnn_joblib", "out"))
    for d in (home, joblib_dir):
        d.mkdir()
    env = {**os.environ, "HOME": str(home), "QGEN_CACHE": str(tmp_path / "qgen_cache")}
    args = [str(joblib_dir), "build", str(spec), "-o", str(out)]
    run = subprocess.run(
        [sys.executable, "-c", _FRESH_BUILD, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_dihedral_build_with_empty_caches(tmp_path):
    spec = ROOT / "examples" / "inr_sine_d4.yaml"
    fresh_build(tmp_path, spec)
    written = (tmp_path / "out" / "inr_sine_d4.py").read_text()
    # The cold computation reproduces the committed module exactly (bases are exact).
    assert written == (ROOT / "generated" / "inr_sine_d4.py").read_text()
    assert any((tmp_path / "qgen_cache" / "escnn").iterdir())


def test_so2_build_with_empty_caches(tmp_path):
    spec = tmp_path / "inr_so2.yaml"
    spec.write_text(SO2_SPEC)
    fresh_build(tmp_path, spec)
    assert (tmp_path / "out" / "inr_so2.py").is_file()
    # escnn's joblib cache was the test's empty folder (the redirect took effect).
    assert (tmp_path / "escnn_joblib" / "joblib" / "escnn").is_dir()


def test_kernel_solver_accepts_escnn_matrices():
    """escnn's ``null`` on the ``np.matrix`` escnn itself builds, after ``load_escnn``."""
    from qgen.kinds.escnn_backend import load_escnn

    load_escnn()
    from escnn.group import _numerical

    a = np.matrix([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])  # rank 1: kernel spanned by (1, -1)
    kernel = _numerical.null(a, use_sparse=False)
    assert kernel.shape == (2, 1)
    np.testing.assert_allclose(np.asarray(a @ kernel), 0.0, atol=1e-14)
