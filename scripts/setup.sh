#!/usr/bin/env bash
# Create (or refresh) the virtual environment .venv with qgen and its test tools.
#   QGEN_VENV         where to put the environment (default: .venv)
#   QGEN_CONSTRAINTS  pip constraints file (default: scripts/constraints-cpu.txt,
#                     which pins the CPU build of torch); set it empty to let pip choose.
#   QGEN_EXTRAS       extras to install (default: test,escnn,zoo,data,nfn,hf,docs; zoo is what
#                     the model-zoo study and its tiny pipeline test need, data reads
#                     .safetensors checkpoints, nfn is NFN's package for the interop tests,
#                     hf what from_module's Hugging Face tests need: transformers 4.x,
#                     which keeps torch at its pin; docs builds the documentation site
#                     with mkdocs and runs its tutorials). escnn's dependency py3nj
#                     is compiled with a Fortran compiler: as root on Debian/Ubuntu this
#                     script installs gfortran with apt-get when it is missing. Without
#                     one, set QGEN_EXTRAS=test and then
#                       .venv/bin/pip install escnn --no-deps && .venv/bin/pip install \
#                         lie_learn pymanopt autograd scipy
#                     (escnn runs without py3nj; only SO(3) Clebsch-Gordan is slower).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${QGEN_VENV:-.venv}"
constraints="${QGEN_CONSTRAINTS-scripts/constraints-cpu.txt}"

extras="${QGEN_EXTRAS-test,escnn,zoo,data,nfn,hf,docs}"

if [[ ",$extras," == *",escnn,"* ]] && ! command -v gfortran >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing gfortran (needed to build py3nj, a dependency of escnn)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran >/dev/null
  else
    echo "setup: escnn's dependency py3nj needs a Fortran compiler (gfortran) and none was" >&2
    echo "found; install one (apt-get install gfortran) or see the comment at the top of" >&2
    echo "scripts/setup.sh for installing escnn without py3nj." >&2
    exit 1
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
args=(-q --disable-pip-version-check)
if [ -n "$constraints" ]; then
  args+=(-c "$constraints")
fi
"$venv/bin/python" -m pip install "${args[@]}" -e ".[$extras]"
"$venv/bin/python" -c "import qgen, torch; print(f'qgen {qgen.__version__} with torch {torch.__version__} in $venv')"
