#!/usr/bin/env bash
# Install the real registry tools the verify tests run (idempotent; quick when present):
#   docker-registry  the CNCF distribution registry (Debian package), started on loopback by tests/cache
#   skopeo           pushes the hand-built FROM-scratch OCI image into it
#   apache2-utils    htpasswd, for the bcrypt line of the registry's basic auth (standing in for the ECR token)
#   prometheus       promtool (checks and unit-tests the chart's alerts, lints /metrics) and the Prometheus server
#                    the alert test starts on loopback. On a host that runs systemd, Debian also starts its own
#                    prometheus service (port 9090); the tests never use it.
# All come from Debian's packages through apt-get; nothing else is downloaded.
# Other scripts reuse it for other packages: `install-registry-tools.sh PACKAGE[:COMMAND]...` (hack/bench: wrk, hey).
set -euo pipefail

PACKAGES=(docker-registry skopeo apache2-utils prometheus)
# The command each package installs, to tell quickly whether it is already there.
declare -A COMMAND=([docker-registry]=docker-registry [skopeo]=skopeo [apache2-utils]=htpasswd [prometheus]=promtool)
if [[ $# -gt 0 ]]; then
  PACKAGES=()
  for spec in "$@"; do
    PACKAGES+=("${spec%%:*}")
    COMMAND[${spec%%:*}]=${spec#*:}
  done
fi

log() { echo "install-registry-tools: $*" >&2; }

missing=()
for package in "${PACKAGES[@]}"; do
  command -v "${COMMAND[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "missing ${missing[*]} and no apt-get here: install them with your package manager (tests that need them skip)"
  exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package lists only when apt does not know the packages yet (a fresh machine), not on every run.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  log "apt-get update"
  "${SUDO[@]}" apt-get update -qq
fi
log "apt-get install ${missing[*]}"
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  # Package lists older than the mirror's files: refresh them once and try again.
  log "apt-get update, then install again"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
