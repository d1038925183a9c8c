#!/usr/bin/env bash
# Set up cwm in ./.venv: system packages for the sandbox (when apt-get and root are available),
# then the Python package. Usage: scripts/bootstrap.sh [dev]
#   (no argument) runtime install, with the MuJoCo environments and the embedded model
#   dev           also the test, lint and type-check tools
set -euo pipefail
cd "$(dirname "$0")/.."

# bubblewrap gives the sandbox its filesystem view and namespaces; libseccomp2 its syscall filter.
# Without them cwm still runs and says which layers are off (`cwm doctor`).
if ! command -v bwrap >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q libseccomp.so.2; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing bubblewrap and libseccomp2 with apt-get" >&2
    (apt-get install -y -qq bubblewrap libseccomp2 >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap libseccomp2 >/dev/null; }) ||
      echo "bootstrap: could not install bubblewrap; the sandbox will run with fewer layers" >&2
  else
    echo "bootstrap: bubblewrap/libseccomp2 missing and apt-get unavailable or not root;" \
         "install them for the full sandbox (see README, Security model)" >&2
  fi
fi

# llama.cpp (the embedded model) compiles from source. A build tuned to the compiling CPU (-march=native,
# with its AVX-512/AMX kernels) crashed on batched prompts on the machines we test on; this portable
# AVX2 build does not. Override by exporting CMAKE_ARGS yourself.
if [ "$(uname -m)" = x86_64 ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF -DGGML_BACKEND_DL=OFF}"
fi

# The web page's end-to-end test drives Debian's chromium (playwright cannot download its own browser here).
if [ "${1:-}" = dev ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing chromium for the browser test" >&2
    (apt-get install -y -qq chromium >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null; }) ||
      echo "bootstrap: could not install chromium; the browser test will be skipped" >&2
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = dev ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
else
  .venv/bin/python -m pip install -q -e '.[mujoco,local]'
fi
