"""A TCP forwarder that stands for one network link, so a bench can cut it and restore it.

``TcpLink`` listens on a loopback port and copies bytes both ways between each accepted
connection and the target address. ``cut()`` is a network cut seen from both ends: every
open connection is closed and the listening socket with it, so new connections are
refused until ``restore()`` listens again on the same port. Nothing above TCP is
touched: a TLS session or an MQTT bridge through it sees exactly what a broken plant
network would show it. The bytes carried are counted per direction.

Used by ``qc bench plant`` (a line broker's bridge reaches the plant broker through one).
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from qcloop.errors import QcError

_CHUNK = 65536


class TcpLinkError(QcError):
    """The forwarder could not listen on its port."""


@dataclass
class TcpLink:
    """Forwards 127.0.0.1:``port`` (0: a free one, kept across cuts) to ``target`` (host, port)."""

    target: tuple[str, int]
    port: int = 0
    host: str = "127.0.0.1"
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client
    connections: int = 0  # accepted while up
    cuts: int = 0
    _listener: socket.socket | None = field(default=None, repr=False)
    _open: set = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def up(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpLink:
        """Listen (again) and accept in a thread of its own."""
        with self._lock:
            if self._listener is not None:
                return self
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port again right after a cut
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                s.close()
                raise TcpLinkError(f"link to {self.target[0]}:{self.target[1]}: cannot listen on "
                                   f"{self.host}:{self.port}: {exc}") from exc
            s.listen(16)
            self.port = s.getsockname()[1]
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), name=f"tcplink-{self.port}", daemon=True).start()
        return self

    restore = start

    def cut(self) -> int:
        """Close the listener and every open connection; returns how many connections were cut."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._open = self._open, set()
            self.cuts += 1
        if listener is not None:
            _close(listener)
        for sock in conns:
            _close(sock)
        return len(conns) // 2

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)  # the far end is down: as a refused connection would look
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._open.update((client, upstream))
                self.connections += 1
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True,
                                 name=f"tcplink-{self.port}-{'up' if up else 'down'}").start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass  # cut, or the other end closed
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv/accept on it
    except OSError:
        pass
    sock.close()
