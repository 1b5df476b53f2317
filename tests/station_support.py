"""Shared helpers for the station tests: real JPEGs, review headers and envelopes."""
from __future__ import annotations

import time
import uuid

import cv2
import numpy as np

from qcloop import wire


def make_jpeg(seed: int = 0, size: tuple[int, int] = (96, 128), quality: int = 85) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
    cv2.circle(img, (size[1] // 2, size[0] // 2), 10, (255, 255, 255), -1)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def make_header(line: str = "line1", camera: str = "cam1", reason: str = "uncertain", score: float | None = 0.5,
                captured_at: float | None = None, part_id: str | None = None, **kw) -> wire.ReviewHeader:
    band = kw.pop("band", "uncertain" if reason == "uncertain" else ("none" if score is None else "pass"))
    return wire.ReviewHeader(
        id=kw.pop("id", str(uuid.uuid4())), part_id=part_id or f"P{uuid.uuid4().hex[:8]}", line=line, camera=camera,
        captured_at=captured_at if captured_at is not None else time.time(), model=kw.pop("model", "v3"),
        score=score, band=band, action_taken=kw.pop("action_taken", "HOLD"), reason=reason,
        thresholds=kw.pop("thresholds", {"pass_below": 0.3, "reject_above": 0.7}),
        quality=kw.pop("quality", {"saturated": 0.12, "dark": 0.0, "mean": 120.0, "sharpness": 300.0}),
        width=128, height=96, **kw)


def add_reviews(store, n: int, image_dir, t0: float | None = None, **kw) -> list[wire.ReviewHeader]:
    """Store n reviews with real JPEG files, captured one second apart (oldest first)."""
    t0 = t0 if t0 is not None else time.time() - 1000
    jpeg = make_jpeg(1)
    out = []
    for i in range(n):
        h = make_header(captured_at=t0 + i, **kw)
        path = image_dir / f"{h.id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)
        store.insert_review(h, str(path), len(jpeg))
        out.append(h)
    return out


# ------------------------------------------------------------------ web app helpers
import re  # noqa: E402

OPERATOR = ("olga", "operator", "4827")
ENGINEER = ("erik", "engineer", "long-enough-pass")
ADMIN = ("ada", "admin", "admin-secret-99")


def make_station(tmp_path, publisher=None, users=(OPERATOR, ENGINEER, ADMIN), **sections):
    """A real app on a tmp_path database with real users; returns (app, cfg)."""
    from station_ui import accounts
    from station_ui.app import create_app
    from station_ui.config import config_for
    from station_ui.store import Store

    sections.setdefault("mqtt", {"enabled": False})
    cfg = config_for(tmp_path / "station", **sections)
    store = Store(cfg.db_path, station=cfg.station.name)
    for name, role, secret in users:
        accounts.add_user(store, name, role, secret)
    store.close()
    app = create_app(cfg, publisher=publisher)
    app.config["TESTING"] = True
    return app, cfg


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def login(client, name: str, secret: str):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"name": name, "secret": secret, "csrf_token": token})


def page_csrf(client, path: str = "/review") -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


# ------------------------------------------------------------------ browser helpers
CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright drives it (its own download is not used)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def open_review_screen(playwright, base_url: str, user=OPERATOR, viewport=(1280, 800)):
    """Launch headless Chromium, log in as user, and return (browser, page) on the review screen."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(base_url + "login")
    page.fill("input[name=name]", user[0])
    page.fill("input[name=secret]", user[2])
    page.click("button[type=submit]")
    # The click only starts the navigation: wait until the review screen's own script has run (the load
    # event), or a key pressed at once would reach a page with no key handler yet.
    page.wait_for_url("**/review**")
    page.wait_for_load_state("load")
    return browser, page
