"""`qc bench plant` run small: two lines bridged to a plant broker (TLS, users, ACL), one line's plant link cut.

Everything is real: mosquitto for the plant and each line, the bridge config qc.bridge renders,
the edges, stations and trainer as processes, the oracle reviewer over HTTP. The figures
asserted are the bench's targets: nothing lost or stored twice, every part decided once, the cut
line's station storing and ruling during the cut, and every verdict at the plant soon after
the link returns.
"""
from __future__ import annotations

import argparse
import socket

import pytest

from qc import bench_cli
from qc.bench_plant import PlantBenchError, PlantOptions, run
from qc.broker import find_mosquitto
from qc.tcplink import TcpLink

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@needs_mosquitto
def test_two_lines_with_a_cut_plant_link_lose_nothing_and_the_plant_gets_every_verdict(tmp_path):
    options = PlantOptions(lines=2, cameras=1, rate=20, duration=8, cut_after=2, cut=3)
    r = run(tmp_path, options)

    t, cut = r["total"], r["cut"]
    assert t["parts"] == t["parts_expected"] == 2 * 160 and t["parts_decided_once"], r
    assert t["lost"] == 0 and t["duplicates"] == 0 and t["unknown"] == 0, r
    assert t["reviews_stored"] == t["reviews_sent"] > 0, r
    for line in r["lines"]:
        assert line["verdicts"] > 0 and line["verdicts_at_trainer"] == line["verdicts"], line
        assert line["reviews_at_plant"] == line["reviews_stored"], line
        assert line["edge_rc"] == [0], line  # each edge decided its parts and drained its outbox
        assert line["line_broker"]["publish_in_per_s"] > 0, line
    # The cut really happened: the bridge's connection was closed and the line broker saw it down.
    assert cut["line"] == "line1" and cut["connections_cut"] >= 1 and cut["bridge_reported_down"], cut
    assert r["lines"][0]["link"]["connections"] >= 2, r["lines"][0]  # the bridge came back through the link
    # The line kept reviewing on its own while cut off, and the plant caught up after.
    assert cut["stored_during_cut"] > 0 and cut["verdicts_during_cut"] > 0, cut
    assert cut["missing_at_plant"] == 0 and cut["recovery_s"] is not None and cut["recovery_s"] <= 10, cut
    assert r["plant_broker"]["publish_in_per_s"] > 0 and r["trainer_alive"], r
    assert r["met"] == {"lost": True, "duplicates": True, "parts_decided_once": True,
                        "cut_line_kept_reviewing": True, "verdicts_at_trainer": True, "recovery_s": True}, r
    assert r["ok"]


def test_a_tcp_link_refuses_connections_while_cut_and_accepts_again_after():
    with socket.create_server(("127.0.0.1", 0)) as target:
        link = TcpLink(target.getsockname()).start()
        try:
            client = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            server, _ = target.accept()
            client.sendall(b"up")
            assert server.recv(2) == b"up"
            assert link.cut() == 1
            assert client.recv(1) == b""  # the open connection was closed
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", link.port), timeout=5)
            link.restore()
            again = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            server2, _ = target.accept()
            again.sendall(b"back")
            assert server2.recv(4) == b"back" and link.connections == 2
            for s in (client, server, again, server2):
                s.close()
        finally:
            link.close()


@pytest.mark.parametrize("kwargs, words", [
    ({"cut_after": 50, "cut": 20}, "--cut-after 50 + --cut 20"),
    ({"lines": 0}, "--lines 0"),
    ({"rate": 0}, "--rate 0"),
])
def test_bad_options_are_refused_naming_the_flag(kwargs, words):
    with pytest.raises(PlantBenchError, match=words.replace("+", r"\+")):
        PlantOptions(**kwargs)


def test_the_command_is_registered_with_its_options():
    parser = argparse.ArgumentParser(prog="qc")
    bench_cli.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "plant", "--json", "--lines", "2", "--cut", "0"])
    assert (args.lines, args.cameras, args.rate, args.duration, args.cut_after, args.cut) == (2, 4, 20.0, 60.0, 20.0, 0)
