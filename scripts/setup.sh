#!/usr/bin/env bash
# Set up KVM Lab on a Debian/Ubuntu machine: system packages, the .venv, the guest image.
# Idempotent and quick when everything is already there.  Used by `./kvmlab lab` and
# `./kvmlab test`; run it alone as `bash scripts/setup.sh`.
#   --system-only   only the apt packages (e.g. before `conda env create`)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# Everything the whole notebook sequence needs from the OS.
APT_PACKAGES=(
  qemu-system-x86 qemu-utils           # QEMU: TCG emulator and KVM front end (04, 05)
  busybox-static cpio                  # the tiny guest's userland and initramfs (04, 05)
  lz4                                  # unpacks the guest kernel for fast direct (PVH) boots (04, 05)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients  # libvirtd + virsh (05)
  libvirt-dev pkg-config gcc           # to build libvirt-python; gcc for the C benchmark (03)
  binutils                             # as/ld: guest programs are assembly (03, 04)
  python3 python3-venv python3-dev     # the venv (Debian's Python: usable by every user)
  chromium                             # the JupyterLab end-to-end test (headless)
  ca-certificates
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
  if [[ $(id -u) == 0 ]]; then
    say "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${cmd[@]}" -qq
  elif command -v sudo >/dev/null && sudo -v; then
    say "installing system packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive "${cmd[@]}" -qq
  else
    say "these system packages are missing: ${missing[*]}"
    say "ask an administrator to run:  sudo apt-get update && sudo ${cmd[*]}"
    exit 1
  fi
fi
[[ ${1:-} == --system-only ]] && exit 0

# The venv comes from the system Python (not pyenv/conda): a venv whose python is
# a symlink into /root is unusable by the students' own accounts on a shared host.
PY=/usr/bin/python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "$PY is older than Python 3.10; use Debian 12 / Ubuntu 22.04 or newer"; exit 1
fi
stamp=.venv/.labkit-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  say "creating .venv and installing labkit (editable) with its test extras"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# JupyterLab: no news pop-up fetched from the internet (this lab runs offline).
settings=.venv/share/jupyter/lab/settings
mkdir -p "$settings"
[[ -f $settings/overrides.json ]] || cat > "$settings/overrides.json" <<'JSON'
{ "@jupyterlab/apputils-extension:notification": { "fetchNews": "false", "checkForUpdates": false } }
JSON

# The tiny guest (kernel from the package archive + busybox initramfs) into the user's
# cache, so notebooks and tests never download anything.
.venv/bin/labkit image build --quiet

say "ready: .venv/bin/labkit doctor tells what this host can do"
