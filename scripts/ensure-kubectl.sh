#!/usr/bin/env bash
# Tests drive the sandbox with the real kubectl; install Debian's kubernetes-client when missing.
set -euo pipefail
if command -v kubectl >/dev/null 2>&1; then
  exit 0
fi
echo "kubectl not found: installing Debian's kubernetes-client" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
command -v kubectl >/dev/null
