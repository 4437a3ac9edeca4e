#!/usr/bin/env bash
# The whole job on the sandbox, from a fresh clone: a simulated GX10 starts, a new model is
# deployed into the standby slot, smoke-tested with real generations, production flips to it,
# then flips back in one step while the old slot is still warm. The sandbox is stopped at the end.
#
#   scripts/demo.sh            # real llama.cpp when installed (scripts/test.sh installs it)
#   DEMO_ENGINE=fake scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/slots ]] ||
  ! .venv/bin/python -c 'import jsonpatch, kubernetes_validate, jsonschema, referencing' 2>/dev/null; then
  echo "==> setting up .venv with the sandbox extra (first run only)"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[sandbox]'
fi
export PATH="$PWD/.venv/bin:$PATH"

engine=${DEMO_ENGINE:-}
if [[ -z "$engine" ]]; then
  if .venv/bin/python -c 'import llama_cpp.server' 2>/dev/null; then engine=llama-cpp; else engine=fake; fi
fi
if [[ "$engine" == llama-cpp ]]; then
  model=tiny-pong
  echo "==> engine: real llama.cpp (llama-cpp-python) serving a generated tiny GGUF model"
else
  model=sandbox/ok
  echo "==> engine: the fake vLLM-like server (install llama.cpp with: pip install -e '.[llama]')"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/gx10-demo.XXXXXX")
trap 'slots sandbox down --dir "$dir" >/dev/null; rm -rf "$dir"' EXIT
export KUBECONFIG="$dir/kubeconfig" SLOTS_CONFIG="$dir/slots.yaml"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step slots sandbox up --dir "$dir" --engine "$engine" --detach
step slots status
step slots deploy "$model" --flip --reason "demo: new model (clients keep their model name)"
echo
echo "==> the smoke report (Markdown, ready for a PR comment):"
cat "$(ls -t "$dir"/reports/*.md | head -n 1)"
step slots status
step slots flip-back --reason "demo: roll back"
step slots history
step slots sandbox down --dir "$dir"
echo
echo "==> done: deploy -> smoke -> flip -> flip-back on engine $engine"
