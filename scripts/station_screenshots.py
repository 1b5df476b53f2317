"""Screenshots of the review screen and the dashboard at 1280x800 and 1920x1080, for docs/screens/.

Starts a station on a temporary database (MQTT off) with synthetic parts waiting for review and a
few verdicts, logs in through headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
and writes review-WxH.png and dashboard-WxH.png. Run from the repository root:

    .venv/bin/python scripts/station_screenshots.py [--out docs/screens]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import cv2

CHROMIUM = "/usr/bin/chromium"
VIEWPORTS = ((1280, 800), (1920, 1080))
OPERATOR = ("olga", "operator", "screens-operator-4827")
ENGINEER = ("erik", "engineer", "screens-engineer-pass")


def _populate(store, image_dir: Path) -> None:
    from hardware.synthetic import PartGenerator
    from qcloop import wire

    gen = PartGenerator(seed=5, width=1280, height=1024)
    now = time.time()
    headers = []
    for i in range(12):
        image, _ = gen.render(i)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        h = wire.ReviewHeader(
            id=str(uuid.uuid4()), part_id=f"cam1-{i + 1:07d}", line="line1", camera="cam1",
            captured_at=now - 600 + i * 40, model="1.2.0", score=0.31 + 0.02 * i, band="uncertain",
            action_taken="HOLD", reason="uncertain", thresholds={"pass_below": 0.30, "reject_above": 0.55},
            quality={"saturated": 0.14 if i % 3 == 0 else 0.0, "dark": 0.0, "mean": 120.0, "sharpness": 300.0},
            width=image.shape[1], height=image.shape[0])
        path = image_dir / f"{h.id}.jpg"
        path.write_bytes(buf.tobytes())
        store.insert_review(h, str(path), len(buf))
        headers.append(h)
    for h, (verdict, kind) in zip(headers[:5], [("not_defect", "glare"), ("real_fault", "crack"),
                                                 ("not_defect", ""), ("not_defect", "shadow"), ("real_fault", "pit")]):
        store.record_verdict(h.id, verdict, kind, OPERATOR[0])
    # An edge that ran model 1.1.0 for five hours, then 1.2.0 after a retrain: the Models rates over time.
    start = now - 8 * 3600
    counts = {"1.1.0": [0, 0, 0, 0], "1.2.0": [0, 0, 0, 0]}
    for hour in range(9):
        model, (review, reject) = ("1.1.0", (0.06, 0.05)) if hour < 5 else ("1.2.0", (0.025, 0.02))
        if hour:
            c = counts[model]
            c[0] += 3600
            c[1] += int(3600 * (1 - review - reject))
            c[2] += int(3600 * reject)
            c[3] += int(3600 * review)
        status = wire.EdgeStatus("running", line="line1", camera="cam1", model=model, parts=sum(v[0] for v in counts.values()),
                                 since=start - 60, time=start + hour * 3600, mode="in-the-loop", held=2, by_model={
                                     m: wire.ModelCounts(parts=v[0], actions={"PASS": v[1], "REJECT": v[2]},
                                                         reviews={"uncertain": v[3]})
                                     for m, v in counts.items() if v[0] or m == model})
        store.upsert_edge_status("line1", "cam1", status, now=start + hour * 3600)
    store.set_line_mode("line1", "in-the-loop", 60, "REJECT", ENGINEER[0], lot="L-2026-1204")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/screens"), help="folder for the PNGs (docs/screens)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from station_ui import accounts
    from station_ui.config import config_for
    from station_ui.server import StationServer
    from station_ui.store import Store

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qc-screens-") as tmp:
        cfg = config_for(Path(tmp) / "station", mqtt={"enabled": False}, web={"port": 0, "threads": 8})
        store = Store(cfg.db_path)
        for name, role, secret in (OPERATOR, ENGINEER):
            accounts.add_user(store, name, role, secret)
        cfg.image_dir.mkdir(parents=True, exist_ok=True)
        _populate(store, cfg.image_dir)
        server = StationServer(cfg).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                for width, height in VIEWPORTS:
                    for user, path, name in ((OPERATOR, "review", "review"), (ENGINEER, "dashboard", "dashboard")):
                        page = browser.new_page(viewport={"width": width, "height": height})
                        page.goto(server.url + "login")
                        page.fill("input[name=name]", user[0])
                        page.fill("input[name=secret]", user[2])
                        page.click("button[type=submit]")
                        page.goto(server.url + path)
                        page.wait_for_load_state("networkidle")
                        if name == "review":  # one verdict, so "Saved." and Undo show
                            page.click("button.verdict.quick")
                            page.wait_for_selector("#undo:not([hidden])")
                        target = args.out / f"{name}-{width}x{height}.png"
                        page.screenshot(path=str(target))
                        print(f"wrote {target}")
                        page.close()
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
