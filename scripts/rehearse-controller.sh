#!/usr/bin/env bash
# Rehearse an automatic revert end to end, as it happens in the cluster: the sandbox runs the
# shipped docs/manifests/controller.yaml (applied with kubectl) as a pod with its service
# account's in-cluster credentials; a model that wedges 40 s after it starts is deployed and
# flipped to; the controller flips production back to the warm previous slot on its own.
#
#   scripts/rehearse-controller.sh      # after scripts/demo.sh or scripts/test.sh set up .venv
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x .venv/bin/slots ]]; then
  echo "no .venv: run scripts/demo.sh (or scripts/test.sh) once first" >&2
  exit 2
fi
scripts/ensure-kubectl.sh
export PATH="$PWD/.venv/bin:$PATH"

dir=$(mktemp -d "${TMPDIR:-/tmp}/gx10-rehearsal.XXXXXX")
trap 'slots sandbox down --dir "$dir" >/dev/null; rm -rf "$dir"' EXIT
export KUBECONFIG="$dir/kubeconfig" SLOTS_CONFIG="$dir/slots.yaml"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
# Polls a condition for at most $1 seconds (a rehearsal script, not a test: it only waits).
await() {
  local limit=$1 what=$2; shift 2
  local until=$((SECONDS + limit))
  until "$@"; do
    if ((SECONDS >= until)); then echo "==> gave up waiting for $what" >&2; return 1; fi
    sleep 1
  done
}
leader() {
  kubectl -n gx10 get lease gx10slots-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null |
    grep -q '^controller:'
}
active_is() {
  [[ "$(slots -o json status 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["active"])' 2>/dev/null)" == "$1" ]]
}
controller_log() {
  echo "==> the controller's log:"
  kubectl -n gx10 logs deployment/gx10slots-controller --tail "${1:-40}" || true
}

step slots sandbox up --dir "$dir" --engine fake --detach
echo
echo "==> the controller's manifest, adapted to the sandbox (gx10slots.sandbox.rehearsal), applied"
python -m gx10slots.sandbox.rehearsal "$dir/slots.yaml" docs/manifests/controller.yaml \
  docs/manifests/job-deploy.yaml | step kubectl -n gx10 apply -f -
await 120 "the controller to lead" leader || { controller_log; exit 1; }
echo "==> leading: $(kubectl -n gx10 get lease gx10slots-controller -o jsonpath='{.spec.holderIdentity}')"
step slots deploy sandbox/wedge-after-40s --served-name rehearsal-v2 --flip \
  --reason "rehearsal: a model that wedges 40 s after it starts"
step slots status
echo
echo "==> waiting for the wedge, then for the controller to flip back on its own"
await 120 "the automatic revert" active_is blue || { slots status || true; controller_log; exit 1; }
step slots status
step slots history --limit 3
controller_log 12
echo
echo "==> done: the controller (a pod, from the shipped manifest) reverted a wedged model"
