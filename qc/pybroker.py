"""A pure-Python MQTT broker (amqtt) for machines without Mosquitto, and the choice between the two.

The demo prefers Mosquitto; on a machine with only Python it runs amqtt in a child
process instead, so the whole loop still runs. The child is a separate process for
the same reasons Mosquitto is: the broker's work never competes for the demo's GIL,
and stopping it is a signal, not a cooperative shutdown. amqtt keeps sessions in
memory only: queued messages do not survive a restart of the embedded broker
(the edge's outbox still resends everything the station has not acknowledged).
Production uses Mosquitto (see config/mosquitto/).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from qc.broker import BrokerError, LocalBroker, MosquittoBroker, find_mosquitto, mqtt_ping


@dataclass
class EmbeddedBroker(LocalBroker):
    """amqtt in a child process, on loopback; same start/stop/host/port as MosquittoBroker."""

    kind: str = "amqtt (embedded Python broker)"

    @property
    def log_path(self) -> Path:
        return self.workdir / "amqtt.log"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        try:
            import amqtt  # noqa: F401  (fail here, with advice, rather than in the child)
        except ImportError as exc:
            raise BrokerError("neither mosquitto nor the Python broker amqtt is installed: "
                              "apt-get install mosquitto, or pip install 'qcloop[demo]'") from exc
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "qc.pybroker", "--host", self.host,
                                      "--port", str(self.port)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"amqtt exited with {self.proc.returncode}; see {self.log_path}")
            if mqtt_ping(self.host, self.port, timeout=0.5):
                return self
            time.sleep(0.05)  # polling a readiness condition with a deadline
        self.stop()
        raise BrokerError(f"amqtt did not answer on {self.host}:{self.port} within {timeout:g} s")


def start_local_broker(workdir: Path, port: int = 0, persistence: bool = True,
                       prefer: str = "auto") -> MosquittoBroker | EmbeddedBroker:
    """Mosquitto when it is installed (or ``prefer='mosquitto'``), else the embedded broker."""
    if prefer not in ("auto", "mosquitto", "amqtt"):
        raise BrokerError(f"broker must be auto, mosquitto or amqtt, got {prefer!r}")
    if prefer == "mosquitto" or (prefer == "auto" and find_mosquitto()):
        return MosquittoBroker(Path(workdir) / "mosquitto", port=port, persistence=persistence).start()
    return EmbeddedBroker(Path(workdir) / "amqtt", port=port).start()


def _serve(host: str, port: int) -> None:
    import asyncio

    from amqtt.broker import Broker

    config = {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}

    async def main() -> None:
        broker = Broker(config)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)  # shutdown chatter is not news
        await broker.shutdown()

    asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qc.pybroker",
                                 description="Run the embedded amqtt broker on loopback (for the demo).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _serve(args.host, args.port)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
