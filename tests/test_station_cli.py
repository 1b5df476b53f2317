"""`qc station add-user / add-token` and `qc bench station` through the real argument parsers."""
from __future__ import annotations

import io
import json

from qc.cli import build_parser, main
from station_ui import accounts
from station_ui.config import load_config
from station_ui.store import Store


def write_config(tmp_path, production=False):
    path = tmp_path / "station.toml"
    path.write_text(f'[station]\ndata_dir = "data"\nproduction = {str(production).lower()}\n[mqtt]\nenabled = false\n')
    return path


def test_add_user_from_stdin_and_token_printed_once(tmp_path, monkeypatch, capsys):
    cfg_path = write_config(tmp_path, production=True)
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["station", "add-user", "erik", "--role", "engineer", "--password-stdin", "--config", str(cfg_path)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("1234\n"))  # a known default PIN, refused in production
    assert main(["station", "add-user", "olga", "--role", "operator", "--password-stdin", "--config", str(cfg_path)]) == 2
    assert "known default" in capsys.readouterr().err
    assert main(["station", "add-token", "trainer", "--config", str(cfg_path)]) == 0
    token = capsys.readouterr().out.strip()
    store = Store(load_config(cfg_path).db_path)
    assert accounts.authenticate(store, "erik", "a-long-password").role == "engineer"
    assert accounts.get_user(store, "olga") is None
    assert accounts.check_token(store, token) == "trainer"
    assert token not in (tmp_path / "data" / "station.db").read_bytes().decode("latin-1")  # only its hash is kept
    capsys.readouterr()
    assert main(["station", "revoke-token", "trainer", "--config", str(cfg_path)]) == 0
    assert accounts.check_token(store, token) is None
    assert main(["station", "revoke-token", "trainer", "--config", str(cfg_path)]) == 2
    assert "no active API token named 'trainer'" in capsys.readouterr().err


def test_bench_station_prints_the_figures(capsys):
    parser = build_parser()
    args = parser.parse_args(["bench", "station", "--json", "--items", "500", "--ingest", "20", "--image-kb", "20", "--pages", "20", "--verdicts", "20"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["items"] == 500 and out["ingest_stored"] == 20
    for key in ("ingest_per_s", "queue_page_ms_p95", "verdict_ms_p99"):
        assert out[key] > 0


def test_a_port_in_use_is_named_with_the_way_to_change_it_and_no_traceback(tmp_path):
    import socket
    import subprocess
    import sys

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    cfg = write_config(tmp_path)
    try:
        out = subprocess.run([sys.executable, "-m", "qc.cli", "station", "run", "--config", str(cfg), "--port", str(port)],
                             capture_output=True, text=True, timeout=60)
        demo = subprocess.run([sys.executable, "-m", "qc.cli", "demo", "--data-dir", str(tmp_path / "demo"),
                               "--web-port", str(port), "--retrain-after", "0", "--duration", "1", "--quiet"],
                              capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert out.returncode == 2, out.stderr
    assert f"127.0.0.1:{port} is already in use" in out.stderr
    assert "--port" in out.stderr
    assert "Traceback" not in out.stderr
    assert demo.returncode == 2, demo.stderr
    assert f"127.0.0.1:{port} is already in use" in demo.stderr
    assert "--web-port" in demo.stderr
    assert "Traceback" not in demo.stderr
    assert "stopped cleanly" not in demo.stderr


def test_qc_help_lists_every_command_not_only_the_groups(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("qc edge run", "qc edge rollback", "qc edge allow-model", "qc station add-user",
                    "qc station disable-user", "qc train serve", "qc train publish", "qc demo", "qc broker acl",
                    "qc bench loop", "qc bench faults"):
        assert command in out, f"{command!r} missing from qc --help"
