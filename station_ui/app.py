"""The station's Flask app factory: ``create_app(config)`` wires the store, the screens and safety.

One blueprint per screen (auth, review, dashboard, history, admin, api). The MQTT
ingest and the event hub are passed in (``qc station run`` makes them), so the
tests can build the app with or without a broker. In production mode the app
refuses to start while any user has a known default password.
"""
from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, g

from qcloop import wire
from station_ui import db as dbmod
from station_ui import metrics, security
from station_ui.accounts import refuse_unsafe_production
from station_ui.config import StationConfig
from station_ui.events import EventHub
from station_ui.health import station_health
from station_ui.store import Store


@dataclass
class StationState:
    """What the views share: config, the event hub, the verdict publisher, the login limiter."""

    cfg: StationConfig
    hub: EventHub
    publisher: Any = None  # has publish_verdict(wire.Verdict); None when MQTT is off
    limiter: security.LoginLimiter | None = None
    published: list = field(default_factory=list)  # verdicts sent, newest last (bounded)

    def publish(self, message: wire.Verdict | None) -> None:
        if message is None:
            return
        if self.publisher is not None:
            self.publisher.publish_verdict(message)
        self.published.append(message)
        del self.published[:-100]


def create_app(config: StationConfig, *, hub: EventHub | None = None, publisher: Any = None) -> Flask:
    app = Flask(__name__)
    cfg = config
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.db_path, station=cfg.station.name)  # applies pending migrations once
    try:
        if cfg.station.production:
            refuse_unsafe_production(store)
        critical = {r["name"] for r in store.lines() if r["critical"]}
        for line in cfg.critical_lines:
            if line not in critical:
                store.set_line_critical(line, True, "config")
    finally:
        store.close()
    app.config.update(
        SECRET_KEY=_secret_key(cfg.secret_key_path),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.secure_cookies,
        SESSION_COOKIE_NAME="qc_station",
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["station"] = StationState(cfg, hub or EventHub(), publisher,
                                             security.LoginLimiter(cfg.web.login_attempts, cfg.web.login_window_s))
    dbmod.init_app(app)
    app.before_request(security.load_user)
    app.before_request(security.check_csrf)

    app.add_template_filter(lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-", "ts")

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"csrf_token": security.csrf_token, "user": g.get("user"), "station_name": cfg.station.name}

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
        return resp

    from station_ui.views import admin, api, auth, dashboard, history, review

    for bp in (auth.bp, review.bp, dashboard.bp, history.bp, admin.bp, api.bp):
        app.register_blueprint(bp)
    metrics.init_app(app)  # /metrics for Prometheus, no login (as /healthz)
    app.add_url_rule("/", endpoint="index", view_func=lambda: review.index_redirect())

    @app.route("/healthz")
    def _healthz():
        """For monitoring, no login: 200 while the ingest is connected with no active alarm, else 503."""
        from flask import jsonify

        health = station_health(app.extensions["station"].publisher)
        return jsonify(health), 200 if health["healthy"] else 503

    return app


def _secret_key(path: Path) -> bytes:
    """Read the session signing key, creating it (owner-only) on first start."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key
