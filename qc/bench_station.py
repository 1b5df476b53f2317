"""`qc bench station`: ingest rate through a real broker, review page and verdict latency at scale.

1. ingest_per_s: ~100 KB review envelopes published with QoS 1 to a private
   mosquitto, received by the station's ingest, written (JPEG + row) and acked;
   timed from the first publish until the last one is stored.
2. With ``--items`` stored reviews (bulk-inserted), the review page
   (``GET /review``: queue count, oldest age, the next item) and a verdict
   (``POST /review/verdict``, synchronous=FULL) are timed through the real Flask app, with
   known-answer items mixed in (``known_answer``: how many of the timed verdicts answered one)
   drawn from ``SETTLED`` reviews an engineer ruled first.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def _jpeg_of_size(kb: int) -> bytes:
    import cv2

    rng = np.random.default_rng(0)
    side = 64
    while True:
        img = rng.integers(0, 255, size=(side, side, 3), dtype=np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if len(buf) >= kb * 1024 or side > 4096:
            return buf.tobytes()
        side = int(side * 1.05) + 1


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_ingest(work: Path, n: int, image_kb: int) -> dict[str, Any]:
    import paho.mqtt.client as mqtt

    from qc.broker import MosquittoBroker
    from qcloop import wire
    from station_ui.config import config_for
    from station_ui.ingest import Ingest
    from station_ui.store import Store

    jpeg = _jpeg_of_size(image_kb)
    with MosquittoBroker(work / "broker") as broker:
        cfg = config_for(work / "ingest", mqtt={"host": broker.host, "port": broker.port, "client_id": "bench-st"})
        Store(cfg.db_path).close()
        ingest = Ingest(cfg).start()
        topics = wire.Topics()
        payloads = []
        for i in range(n):
            h = wire.ReviewHeader(id=str(uuid.uuid4()), part_id=f"B{i}", line="line1", camera="cam1",
                                  captured_at=time.time(), model="bench", score=0.5, band="uncertain",
                                  action_taken="HOLD", reason="uncertain", quality={"saturated": 0.01})
            payloads.append(wire.encode_review(h, jpeg))
        acks = threading.Semaphore(0)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-edge")
        pub.max_inflight_messages_set(100)
        pub.on_message = lambda c, u, m: acks.release()
        pub.connect(broker.host, broker.port)
        pub.subscribe(topics.review_ack("line1"), qos=1)
        pub.loop_start()
        t0 = time.perf_counter()
        for p in payloads:
            pub.publish(topics.review("line1", "cam1"), p, qos=1)
        for _ in range(n):  # every review stored and acked back to the "edge"
            if not acks.acquire(timeout=120):
                break
        elapsed = time.perf_counter() - t0
        stats = ingest.stats()
        pub.disconnect()
        pub.loop_stop()
        ingest.stop()
    return {"ingest_per_s": round(stats["stored"] / elapsed, 1), "ingest_reviews": n,
            "ingest_stored": stats["stored"], "review_bytes": len(payloads[0])}


def bulk_insert(store: Any, n: int, image_path: str) -> None:
    """Insert n pending reviews fast: one transaction, no per-row fsync (bench set-up only)."""
    now = time.time()
    store.conn.execute("PRAGMA synchronous = OFF")
    rows = ((str(uuid.uuid4()), f"P{i:07d}", f"line{i % 3 + 1}", f"cam{i % 2 + 1}", now - n + i, "v3", 0.5,
             "uncertain", "HOLD", "uncertain", '{"pass_below":0.3,"reject_above":0.7}',
             '{"saturated":0.12,"dark":0.0,"mean":120.0,"sharpness":300.0}', "", 640, 480, image_path, 1000, now)
            for i in range(n))
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO reviews (id, part_id, line, camera, captured_at, model, score, band, action_taken, reason,"
            " thresholds, quality, detail, width, height, image_path, image_bytes, received_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.execute("INSERT OR IGNORE INTO sources (line, camera) SELECT DISTINCT line, camera FROM reviews")
    store.conn.execute("PRAGMA synchronous = FULL")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # set-up's WAL is not the verdicts' cost


#: Reviews an engineer has ruled before the timing starts: the settled pool known answers are drawn from.
SETTLED = 300


def bench_web(work: Path, items: int, pages: int = 200, verdicts: int = 300,
              known_answer_rate: float = 0.03) -> dict[str, Any]:
    from station_ui import accounts, known_answers
    from station_ui.app import create_app
    from station_ui.config import config_for
    from station_ui.store import Store

    cfg = config_for(work / "web", mqtt={"enabled": False}, review={"known_answer_rate": known_answer_rate})
    store = Store(cfg.db_path, station=cfg.station.name)
    cfg.image_dir.mkdir(parents=True, exist_ok=True)
    img = cfg.image_dir / "bench.jpg"
    img.write_bytes(_jpeg_of_size(20))
    t0 = time.perf_counter()
    bulk_insert(store, items, str(img))
    insert_s = time.perf_counter() - t0
    accounts.add_user(store, "bench", "operator", "48213579")
    accounts.add_user(store, "bench-engineer", "engineer", "bench-engineer-pass")
    settled = min(SETTLED, max(0, items - verdicts - 1))
    for row in store.next_items(limit=settled):  # the oldest: the engineer's rulings, settled truth
        store.record_verdict(row["id"], "not_defect", "glare", "bench-engineer")
    store.close()
    app = create_app(cfg)
    c = app.test_client()
    token = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/login").get_data(as_text=True)).group(1)
    assert c.post("/login", data={"name": "bench", "secret": "48213579", "csrf_token": token}).status_code == 302
    page_ms = []
    html = ""
    for _ in range(pages):
        t = time.perf_counter()
        r = c.get("/review")
        html = r.get_data(as_text=True)
        page_ms.append((time.perf_counter() - t) * 1000)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    current = re.search(r'class="item" data-id="([^"]+)"', html).group(1)
    verdict_ms = []
    served = 0
    check = Store(cfg.db_path, migrate=False)
    for _ in range(verdicts):
        served += known_answers.is_known_answer(check, current)
        t = time.perf_counter()
        r = c.post("/review/verdict", json={"review_id": current, "verdict": "not_defect", "kind": "glare"},
                   headers={"X-CSRF-Token": token})
        verdict_ms.append((time.perf_counter() - t) * 1000)
        j = r.get_json()
        if r.status_code != 200:
            raise RuntimeError(f"verdict failed: {j}")
        current = j["id"]
    check.close()
    return {"items": items, "bulk_insert_s": round(insert_s, 2),
            "known_answer": {"rate": known_answer_rate, "settled": settled, "served": served,
                             "share": round(served / verdicts, 4) if verdicts else None},
            "queue_page_ms_p50": round(statistics.median(page_ms), 2),
            "queue_page_ms_p95": round(_pct(page_ms, 95), 2),
            "verdict_ms_p50": round(statistics.median(verdict_ms), 2),
            "verdict_ms_p99": round(_pct(verdict_ms, 99), 2)}


def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="qc-bench-station-"))
    try:
        out = bench_ingest(work, args.ingest, args.image_kb)
        out.update(bench_web(work, args.items, args.pages, min(args.verdicts, args.items), args.known_answer_rate))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["targets"] = {"ingest_per_s": ">= 300", "queue_page_ms_p95": "<= 50", "verdict_ms_p99": "<= 20"}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>20}: {v}")
    return 0
