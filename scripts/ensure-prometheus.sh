#!/usr/bin/env bash
# The guard's gates on real traffic (guard.prometheus) are tested against a real Prometheus:
# install Debian's prometheus package when /usr/bin/prometheus is missing. Only the binary is
# used (tests start it on 127.0.0.1 with their own config); the package's service is not needed.
set -euo pipefail
if [[ -x /usr/bin/prometheus ]]; then
  exit 0
fi
echo "/usr/bin/prometheus not found: installing Debian's prometheus" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
test -x /usr/bin/prometheus
