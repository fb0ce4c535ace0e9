#!/usr/bin/env bash
# Set up KVM Lab on a Debian/Ubuntu machine: system packages, the .venv, the guest image.
# Idempotent and quick when everything is already there.  Used by `./kvmlab lab`, `./kvmlab hub`
# and `./kvmlab test`; run it alone as `bash scripts/setup.sh [--hub|--cluster|--test] [--system-only]`.
#   (no option)     what a learner needs for the notebooks, nothing more
#   --hub           + JupyterHub (the `hub` extra) and configurable-http-proxy (npm, on Debian's nodejs)
#   --cluster       + the hub on a Slurm cluster: batchspawner (the `cluster` extra), Slurm and munge (apt)
#   --test          + everything the test suite needs: the hub, the cluster pieces (the Slurm classroom test
#                     runs in CI), the `test` extra, Chromium
#   --system-only   only the apt packages (e.g. before `conda env create`)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

profile=lab system_only=0
for arg in "$@"; do
  case $arg in
    --hub) [[ $profile == test || $profile == cluster ]] || profile=hub ;;
    --cluster) [[ $profile == test ]] || profile=cluster ;;
    --test) profile=test ;;
    --system-only) system_only=1 ;;
    *) printf 'setup: error: unknown option %s\n  fix: use --hub, --cluster, --test or --system-only (see the top of %s)\n' \
         "$arg" "$0" >&2; exit 2 ;;
  esac
done

# What the notebooks need from the OS (package names that exist on Debian 12 and Ubuntu 22.04+).
APT_PACKAGES=(
  qemu-system-x86 qemu-utils           # QEMU: TCG emulator and KVM front end (04, 05)
  busybox-static cpio                  # the tiny guest's userland and initramfs (04, 05)
  lz4                                  # unpacks the guest kernel for fast direct (PVH) boots (04, 05)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients  # libvirtd + virsh (05)
  libvirt-dev pkg-config gcc python3-dev  # libvirt-python has no wheel on PyPI: pip compiles it (05)
  binutils                             # as/ld: guest programs are assembly (03, 04)
  fonts-nanum                          # Hangul glyphs for the Korean edition in a browser on this host
  python3 python3-venv                 # the venv (Debian's Python: usable by every user)
  ca-certificates
)
EXTRAS=""
# Slurm's daemons and clients, and munge (its authentication): a test cluster's, or a hub's on a real one.
SLURM_PACKAGES=(slurmctld slurmd slurm-client munge)
case $profile in
  hub) EXTRAS="[hub]" ;;
  cluster) EXTRAS="[hub,cluster]"; APT_PACKAGES+=("${SLURM_PACKAGES[@]}") ;;
  test) EXTRAS="[test,hub,cluster]"; APT_PACKAGES+=("${SLURM_PACKAGES[@]}")
        # the JupyterLab end-to-end test (headless); not for learners.  Ubuntu names it
        # chromium-browser (a snap shim there: untested).  Decided by the distribution, not by
        # apt-cache: before the first apt-get update a fresh machine's package lists are empty.
        if grep -qsx 'ID=ubuntu' /etc/os-release; then APT_PACKAGES+=(chromium-browser)
        else APT_PACKAGES+=(chromium); fi ;;
esac
# configurable-http-proxy runs on node; Debian's nodejs/npm unless a node with npm is there already.
if [[ $profile != lab ]] && ! command -v npm >/dev/null; then
  APT_PACKAGES+=(nodejs npm)
fi

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
((system_only)) && exit 0

# The venv comes from the system Python (not pyenv/conda): a venv whose python is
# a symlink into /root is unusable by the students' own accounts on a shared host.
PY=/usr/bin/python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  say "$PY is older than Python 3.10; use Debian 12 / Ubuntu 22.04 or newer"; exit 1
fi
stamp=.venv/.labkit-installed
want="$(sha256sum < pyproject.toml | cut -d' ' -f1) $EXTRAS"
have=$(cat "$stamp" 2>/dev/null || true)
# A venv set up for more (the tests) serves less (the lab) too: reinstall only when it lacks extras.
covers() { [[ ${have%% *} == "${want%% *}" && ( -z $EXTRAS || $have == *" $EXTRAS" || $have == *" [test,hub,cluster]" ) ]]; }
if [[ ! -x .venv/bin/python ]] || ! covers; then
  say "creating .venv and installing labkit (editable)${EXTRAS:+ with the extras $EXTRAS}"
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".$EXTRAS"
  echo "$want" > "$stamp"
fi

# The hub's proxy: configurable-http-proxy from npm, inside the venv (5.1 is the newest that runs
# on Debian 12's nodejs 18).
CHP=.venv/node/node_modules/.bin/configurable-http-proxy
if [[ $profile != lab && ! -x $CHP ]]; then
  say "installing configurable-http-proxy (npm) into .venv/node"
  npm install --silent --no-audit --no-fund --prefix .venv/node configurable-http-proxy@5.1
fi

# labkit's messages in other languages: compile the gettext catalogs (.po -> .mo, Babel); a .mo that is
# missing or older than its .po is compiled in memory at run time instead (labkit.i18n.catalogs).
.venv/bin/python -m labkit.i18n compile >/dev/null

# JupyterLab: no news pop-up fetched from the internet (this lab runs offline), and Markdown files (the
# glossary the notebooks link to) open rendered, not as source. Settings already in the file are kept.
settings=.venv/share/jupyter/lab/settings
mkdir -p "$settings"
.venv/bin/python - "$settings/overrides.json" <<'PY'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
overrides = json.loads(path.read_text()) if path.is_file() else {}
overrides.setdefault("@jupyterlab/apputils-extension:notification", {"fetchNews": "false", "checkForUpdates": False})
overrides.setdefault("@jupyterlab/docmanager-extension:plugin", {"defaultViewers": {"markdown": "Markdown Preview"}})
path.write_text(json.dumps(overrides) + "\n")
PY

# The tiny guest (kernel from the package archive + busybox initramfs) into the user's
# cache, so notebooks and tests never download anything.
.venv/bin/labkit image build --quiet
# ... the tiny guest's disk and network drivers (notebook 04b), from its kernel's own package ...
.venv/bin/python -c "from labkit.images import modules; modules.prepare()" \
  || say "the guest's disk and network drivers are not fetched (see above); notebook 04b fetches them when run"
# ... and the emulated AMD-V machine's kernel modules (notebook 04, `labkit nested`), from the same package.
if [[ $(uname -m) == x86_64 ]]; then
  .venv/bin/labkit nested prepare >/dev/null || say "the emulated AMD-V machine is not prepared (see above); notebook 04 explains why"
fi

say "ready: .venv/bin/labkit doctor tells what this host can do"
