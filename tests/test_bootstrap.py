"""The install step waits for another apt process's lock instead of failing at once (scripts/apt.sh)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _install(tmp_path: Path, lock_held: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    _fake(bin_dir, "apt-get", f'echo "$*" >> "{calls}"\n')  # records what apt was asked
    _fake(bin_dir, "fuser", "exit 0\n" if lock_held else "exit 1\n")  # 0: a process holds the file
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DPKG_LOCK": str(lock), "SUDO": ""}
    done = subprocess.run(["bash", "-c", f'set -euo pipefail; SUDO=""; source "{ROOT}/scripts/apt.sh"; '
                          "apt_install mosquitto chromium"], capture_output=True, text=True, env=env, timeout=60)
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_apt_waits_for_a_held_lock_and_says_so(tmp_path):
    done, calls = _install(tmp_path, lock_held=True)
    assert done.returncode == 0, done.stderr
    assert "another apt process holds the package lock; waiting" in done.stdout
    assert len(calls) == 2  # update, then install
    assert all("-o DPkg::Lock::Timeout=600" in c for c in calls)  # apt itself waits, rather than failing at once
    assert calls[1].endswith("install -y -qq --no-install-recommends mosquitto chromium")


def test_apt_says_nothing_of_a_lock_nobody_holds(tmp_path):
    done, calls = _install(tmp_path, lock_held=False)
    assert done.returncode == 0, done.stderr
    assert "holds the package lock" not in done.stdout
    assert all("-o DPkg::Lock::Timeout=600" in c for c in calls)
