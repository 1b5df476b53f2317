"""Releasing a gated model: sign, add to the registry, flip CURRENT, serve over HTTP, announce on MQTT.

- ``keygen`` makes the trainer's Ed25519 key pair (models.signing); edges get the public key.
- ``release`` writes the golden-set figures into the manifest's ``metrics``, signs
  it, adds the version to the trainer's registry and flips ``CURRENT``.
- ``ModelHTTPServer`` serves the registry read-only: ``/<version>/manifest.json`` and
  ``/<version>/<the manifest's file>``, nothing else (404), so no other file in the
  data directory (keys, golden set, logs) can be fetched.
- ``Announcer`` publishes ``wire.ModelAnnouncement`` retained, QoS 1, on
  ``Topics.model(line)``: an edge that connects later still learns the live version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.server
import logging
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from models.errors import ManifestError, ModelsError
from models.manifest import MANIFEST_NAME, Manifest, check_version
from models.registry import Registry
from qcloop import wire
from qcloop.errors import QcError, port_error
from qcloop.mqttconn import BrokerFailover, BrokerSettings, make_client
from qcloop.versions import version_key
from training.errors import ReleaseError

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ keys, versions
def keygen(private_path: str | Path, public_path: str | Path, force: bool = False) -> None:
    from models.signing import generate_keypair

    generate_keypair(private_path, public_path, overwrite=force)


def next_version(registry: Registry, first: str = "1.0.0") -> str:
    """The newest version in the registry with its last number bumped ("1.0.9" -> "1.0.10")."""
    versions = registry.versions()
    if not versions:
        return first
    newest = max(versions, key=version_key)
    matches = list(re.finditer(r"\d+", newest))
    if not matches:
        return check_version(newest + ".1")
    m = matches[-1]
    return check_version(newest[:m.start()] + str(int(m.group()) + 1) + newest[m.end():])


# ------------------------------------------------------------------ sign and register
def release(registry: Registry, manifest: Manifest, model_bytes: bytes, private_key_path: str | Path,
            golden_metrics: dict | None = None, reason: str = "promoted by the gate", make_current: bool = True) -> Manifest:
    """Sign (with the golden-set figures in ``metrics``), add to the registry, make current; return it.

    ``make_current=False`` registers a candidate without making it live (shadow trials)."""
    from models.signing import load_private_key, sign

    metrics = dict(manifest.metrics)
    if golden_metrics is not None:
        metrics["golden"] = golden_metrics
    try:
        signed = sign(dataclasses.replace(manifest, metrics=metrics, signature=""), load_private_key(private_key_path))
        registry.add(signed, model_bytes)
        if make_current:
            registry.set_current(signed.version, reason=reason)
    except ModelsError as exc:
        raise ReleaseError(f"cannot release model {manifest.version}: {exc}") from exc
    return signed


def manifest_sha256(registry: Registry, version: str) -> str:
    return hashlib.sha256((registry.version_dir(version) / MANIFEST_NAME).read_bytes()).hexdigest()


# ------------------------------------------------------------------ HTTP
#: The largest frame the explain endpoint takes (a review's JPEG is well under 1 MB).
EXPLAIN_MAX_BYTES = 8 * 1024 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    registries: dict[str, Registry]  # set on the subclass made per server; "" : one product at the root
    explain_token_sha: str = ""  # sha256 of the token POST /explain needs ("": the endpoint is off)
    explainers: dict  # version -> loaded Detector, shared by the server's threads
    explain_lock: threading.Lock  # one explanation at a time: it is CPU work on the trainer
    server_version = "qc-models/1"

    def _route(self, url_path: str) -> tuple[str, list[str]] | None:
        """(product, the path's parts under it): a plant's products each have their models under /<product>/."""
        parts = url_path.split("?", 1)[0].strip("/").split("/")
        if "" in self.registries:
            return "", parts
        if len(parts) > 1 and parts[0] in self.registries:
            return parts[0], parts[1:]
        return None

    def do_POST(self) -> None:  # noqa: N802
        """``POST /explain/<version>`` with a review's JPEG: the PNG overlay of where that model looked."""
        route = self._route(self.path)
        product, parts = route if route is not None else ("", [])
        if len(parts) != 2 or parts[0] != "explain" or not self.explain_token_sha:
            self.send_error(404, "no such endpoint (explain is off unless [serve].explain_token_file is set)")
            return
        sent = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(hashlib.sha256(sent.encode()).hexdigest(), self.explain_token_sha):
            self.send_error(401, "a valid Authorization: Bearer token is needed")
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= EXPLAIN_MAX_BYTES:
            self.send_error(400, f"send the frame as a JPEG body of 1 byte to {EXPLAIN_MAX_BYTES} bytes")
            return
        jpeg = self.rfile.read(length)
        version = parts[1]
        registry = self.registries[product]
        try:
            check_version(version)
            if version not in registry.versions():
                self.send_error(404, f"no model {version} here")
                return
            with self.explain_lock:
                detector = self.explainers.get((product, version))
                if detector is None:
                    from edge.detector import Detector

                    detector = self.explainers[(product, version)] = Detector.load(registry.version_dir(version),
                                                                                    warmup=1)
                from training.explain import explain_jpeg

                png = explain_jpeg(detector, jpeg)
        except (QcError, ValueError) as exc:
            self.send_error(400, f"cannot explain this frame: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(png)))
        self.end_headers()
        self.wfile.write(png)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = self._resolve(self.path.split("?", 1)[0])
        if path is None:
            self.send_error(404, "not a published model file")
            return
        try:
            data = path.read_bytes()
        except OSError:
            self.send_error(404, "not a published model file")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if path.name == MANIFEST_NAME
                         else "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _resolve(self, url_path: str) -> Path | None:
        route = self._route(url_path)
        if route is None or len(route[1]) != 2:
            return None
        registry = self.registries[route[0]]
        version, name = route[1]
        try:
            check_version(version)
            if version not in registry.versions():
                return None
            if name == MANIFEST_NAME:
                return registry.version_dir(version) / MANIFEST_NAME
            if name == registry.manifest(version).file:
                return registry.version_dir(version) / name
        except QcError:
            return None
        return None

    def log_message(self, fmt: str, *args) -> None:  # noqa: ANN002
        log.debug("model server: " + fmt, *args)


class ModelHTTPServer:
    """Serves a registry's published versions read-only on a background thread.

    Given several registries by product name (a plant's trainer of several products), each
    product's models are under ``/<product>/`` (``base_url(product)``), explanations too.
    """

    def __init__(self, registry: Registry | Mapping[str, Registry], host: str = "127.0.0.1", port: int = 0,
                 public_url: str = "", explain_token: str = ""):
        registries = {"": registry} if isinstance(registry, Registry) else dict(registry)
        handler = type("RegistryHandler", (_Handler,), {
            "registries": registries, "explainers": {}, "explain_lock": threading.Lock(),
            "explain_token_sha": hashlib.sha256(explain_token.encode()).hexdigest() if explain_token else ""})
        try:
            self._server = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise port_error("model server", host, port, "set [serve].port in the trainer's config", exc) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="model-http", daemon=True)
        bound_host, bound_port = self._server.server_address[:2]
        # Bound to every interface: edges on other machines need a name, not the wildcard.
        shown = socket.getfqdn() if bound_host in ("0.0.0.0", "", "::") else bound_host
        self.url = (public_url or f"http://{shown}:{bound_port}").rstrip("/")

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def base_url(self, product: str = "") -> str:
        """Where a product's models are served (the server's URL for the one product of a line's trainer)."""
        return f"{self.url}/{product}" if product else self.url

    def manifest_url(self, version: str, product: str = "") -> str:
        return f"{self.base_url(product)}/{version}/{MANIFEST_NAME}"

    def start(self) -> ModelHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ MQTT
class Announcer:
    """Publishes retained model announcements (and other retained trainer messages)."""

    def __init__(self, settings: BrokerSettings, client_id: str = "qc-trainer-announce"):
        self.settings = settings
        self.topics = settings.topics
        self.connected = threading.Event()
        self.client = make_client(settings, client_id, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        # Moves to the next of the settings' brokers when the one in use fails; ``broker.current`` names it.
        self.broker = BrokerFailover(self.client, settings, "trainer announcer")  # after the callbacks it wraps

    def _on_connect(self, client, userdata, flags, reason_code, props) -> None:  # noqa: ANN001
        if reason_code == 0:
            self.connected.set()

    def start(self, wait_s: float = 10.0) -> Announcer:
        self.broker.start()
        if not self.connected.wait(wait_s):
            log.warning("not connected to a broker (%s) yet; retrying", self.settings.broker_list)
        return self

    def stop(self) -> None:
        self.broker.stop()

    def publish_retained(self, topic: str, payload: bytes, timeout: float = 10.0) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise ReleaseError(f"cannot publish on {topic}: {exc}") from exc
        if not info.is_published():
            raise ReleaseError(f"the broker ({self.settings.broker_list}) did not take the "
                               f"message on {topic} within {timeout:g} s")

    def announce(self, registry: Registry, version: str, server: ModelHTTPServer | str,
                 lines: list[str] | tuple[str, ...], mode: str = "live") -> wire.ModelAnnouncement:
        """Announce ``version`` of ``registry`` (served by ``server``) on each line's model topic."""
        try:
            manifest = registry.manifest(version)
        except (ManifestError, ModelsError) as exc:
            raise ReleaseError(f"cannot announce {version}: {exc}") from exc
        url = server.manifest_url(version) if isinstance(server, ModelHTTPServer) \
            else f"{server.rstrip('/')}/{version}/{MANIFEST_NAME}"
        ann = wire.ModelAnnouncement(version, url, manifest_sha256(registry, version), manifest.signature, mode)
        for line in lines:
            self.publish_retained(self.topics.model(line), ann.encode())
        return ann
