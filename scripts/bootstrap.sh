#!/usr/bin/env bash
# Install what qcloop needs on a Debian/Ubuntu machine, then return. Safe to run again:
# it installs only what is missing, and reinstalls the Python packages only when
# pyproject.toml changed.
#   scripts/bootstrap.sh            # runtime: mosquitto, venv, all Python extras
#   scripts/bootstrap.sh --tests    # also what the tests need (Chromium for the UI test, Prometheus
#                                   # and promtool for the monitoring test)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/apt.sh
source scripts/apt.sh

want_tests=0
[[ "${1:-}" == "--tests" ]] && want_tests=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

apt_packages=()
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || apt_packages+=(mosquitto)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || apt_packages+=(python3-venv)
if [[ $want_tests -eq 1 ]]; then
  [[ -x /usr/bin/chromium ]] || apt_packages+=(chromium)
  [[ -x /usr/bin/prometheus ]] || apt_packages+=(prometheus)
fi
if (( ${#apt_packages[@]} )); then
  echo "bootstrap: installing system packages: ${apt_packages[*]}"
  apt_install "${apt_packages[@]}"
  # The packaged broker starts a system service on port 1883, and the packaged Prometheus one on 9090;
  # qcloop's tests start their own of each, on free ports with their own data, and never use those.
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating the virtual environment in .venv"
  python3 -m venv .venv
fi

stamp=".venv/.qcloop-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap: installing Python packages into .venv (first time takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned: the CPU build of this version is what the trainer is tested with.
  .venv/bin/python -m pip install -q "torch==${QC_TORCH_VERSION:-2.13.0}"
  .venv/bin/python -m pip install -q -e ".[edge,station,train,demo,dev]"
  echo "$want" > "$stamp"
fi
