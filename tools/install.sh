#!/usr/bin/env bash
# Installs what sklmm needs on a fresh Debian/Ubuntu machine with Python >= 3.10:
# the SuiteSparse headers that scikit-sparse builds against (when apt-get can be used),
# then sklmm itself in editable mode with its test and CHOLMOD extras.
# Without root / apt-get, or if scikit-sparse fails to build, sklmm is installed without
# CHOLMOD and uses its numpy/scipy solver (the estimators say which one they used in solver_).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -e /usr/include/suitesparse/cholmod.h ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsuitesparse-dev >/dev/null
fi
"$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! "$PY" -m pip install -q -e ".[cholmod,test,plot,docs]"; then
  echo "scikit-sparse could not be built; installing sklmm without CHOLMOD (numpy/scipy solver)." >&2
  "$PY" -m pip install -q -e ".[test,plot,docs]"
fi
"$PY" -c "import sklmm, sklmm._engine.factor_cholmod as c; print('sklmm', sklmm.__version__, 'installed; CHOLMOD:', c.HAS_CHOLMOD)"
