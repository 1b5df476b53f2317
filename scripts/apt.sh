# Sourced by scripts/bootstrap.sh: install Debian packages, waiting for another apt process's lock.
# apt_install PACKAGE...  (uses $SUDO; DPKG_LOCK names the lock file, for the tests)
apt_install() {
  local lock="${DPKG_LOCK:-/var/lib/dpkg/lock-frontend}"
  # A freshly booted machine often has another apt process (unattended upgrades) holding the lock:
  # wait for it (apt's own lock timeout) instead of failing at once, and say so.
  local wait_opts=(-o DPkg::Lock::Timeout=600)
  if [[ -e "$lock" ]] && command -v fuser >/dev/null 2>&1 && $SUDO fuser "$lock" >/dev/null 2>&1; then
    echo "bootstrap: another apt process holds the package lock; waiting for it (up to 10 minutes)"
  fi
  $SUDO apt-get "${wait_opts[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${wait_opts[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}
