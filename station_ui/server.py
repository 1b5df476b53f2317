"""One station process: the web app on waitress (a production WSGI server) plus the MQTT ingest.

``StationServer(cfg).start()`` serves in a background thread (the CLI, the
browser test and the demo use it); ``stop()`` ends the event streams first, so
the waitress threads they hold are free, then closes the server and the ingest.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from qcloop.errors import port_error
from station_ui.config import StationConfig
from station_ui.events import EventHub

log = logging.getLogger(__name__)


class StationServer:
    def __init__(self, cfg: StationConfig):
        from waitress.server import create_server

        from station_ui.app import create_app
        from station_ui.ingest import Ingest

        self.cfg = cfg
        self.hub = EventHub()
        self.ingest = Ingest(cfg, self.hub) if cfg.mqtt.enabled else None
        self.app = create_app(cfg, hub=self.hub, publisher=self.ingest)
        # channel_timeout well above the event stream's 15 s keep-alive.
        try:
            self.server = create_server(self.app, host=cfg.web.host, port=cfg.web.port, threads=cfg.web.threads,
                                        channel_timeout=120, ident="qc-station")
        except OSError as exc:
            raise port_error("review station", cfg.web.host, cfg.web.port,
                             "set [web].port, or pass --port to qc station run (qc demo: --web-port)", exc) from exc
        self._thread: threading.Thread | None = None
        self.capacity: Any = None  # station_ui.capacity.CapacityControl, when [review].capacity_per_hour is set

    @property
    def url(self) -> str:
        host, port = self.server.effective_host, self.server.effective_port
        return f"http://{host}:{port}/"

    def start(self, mqtt_wait_s: float = 10.0) -> StationServer:
        if self.ingest:
            self.ingest.start(wait_s=mqtt_wait_s)
        review = self.cfg.review
        if review.capacity_per_hour > 0:
            from station_ui.capacity import CapacityControl

            self.capacity = CapacityControl(self.cfg.db_path, self.cfg.station.name, review.capacity_per_hour,
                                            review.capacity_check_s, self.ingest).start()
        self._thread = threading.Thread(target=self.server.run, name="station-http", daemon=True)
        self._thread.start()
        return self

    def _close_channels(self) -> None:
        """Close every connection, then the listening socket and the trigger: the loop then has nothing
        left to watch and returns."""
        for channel in list(self.server._map.values()):
            if channel is not self.server and channel is not self.server.trigger:
                channel.close()
        self.server.close()

    def stop(self) -> None:
        # End the event streams, let the worker threads finish their responses, and only
        # then close the sockets: closing first leaves workers writing to a closed trigger.
        self.hub.close()
        try:
            self.server.task_dispatcher.shutdown(timeout=5)
            if self._thread is not None and self._thread.is_alive():
                # The sockets are closed by the server's own loop thread (through its trigger): closed from
                # here, that thread's select() could meet a descriptor closed under it (EBADF).
                self.server.trigger.pull_trigger(self._close_channels)
            else:
                self._close_channels()
        except Exception:  # closing half-closed sockets at exit must not hide the real outcome
            log.debug("error while closing the web server", exc_info=True)
        if self._thread:
            self._thread.join(10)
        if self.capacity is not None:
            self.capacity.stop()
        if self.ingest:
            self.ingest.stop()
