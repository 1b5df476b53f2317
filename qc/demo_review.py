"""The demo's oracle reviewer: ground truth from the synthetic line answers the review queue.

``TruthBook`` wraps the demo's camera (same Camera interface) and remembers what
each generated part really is; reviewed parts are also appended to a JSON-lines
file, so reviews left in the edge's outbox from an earlier run still have an answer.
``AutoReviewer`` is a reviewer like any other: it logs in to the station over HTTP
with the demo account, takes the next item from the same queue a person sees, and
posts the true verdict through the same endpoint (CSRF token and all). So a
hands-off run exercises the station, the verdict topic and the trainer's trigger
exactly as a person at the touchscreen would.
"""
from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from pathlib import Path

from hardware.base import Camera, Frame, PartTruth
from qcloop import wire

log = logging.getLogger(__name__)

# The generator's artefacts, in the station's words for "not a defect".
ARTEFACT_KINDS = {"glare": "glare", "streak": "glare", "shadow": "shadow", "dust": "dust"}


def verdict_for(truth: PartTruth) -> tuple[str, str]:
    """(verdict, kind) a careful engineer would give a part with this ground truth."""
    if truth.is_defect:
        return "real_fault", truth.defect if truth.defect in wire.FAULT_KINDS else "other"
    for artefact in truth.artefacts:
        if artefact in ARTEFACT_KINDS:
            return "not_defect", ARTEFACT_KINDS[artefact]
    return "not_defect", "other"


class TruthBook:
    """A Camera that passes frames through and remembers each part's ground truth."""

    def __init__(self, camera: Camera, path: Path, keep: int = 50_000):
        self.camera = camera
        self.path = Path(path)
        self._keep = keep
        self._recent: OrderedDict[str, PartTruth] = OrderedDict()
        self._reviewed: dict[str, PartTruth] = {}
        self._lock = threading.Lock()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self._reviewed[rec["part_id"]] = PartTruth(rec["defect"], tuple(rec["artefacts"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash: that one part goes unanswered
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.path.open("a")

    def capture(self, part_id: str, not_before: float | None = None) -> Frame:
        frame = self.camera.capture(part_id, not_before)
        if frame.truth is not None:
            with self._lock:
                self._recent[part_id] = frame.truth
                while len(self._recent) > self._keep:
                    self._recent.popitem(last=False)
        return frame

    def on_review(self, header: wire.ReviewHeader) -> None:
        """Pipeline review listener: keep the truth of every reviewed part on disk."""
        with self._lock:
            truth = self._recent.get(header.part_id)
            if truth is None or header.part_id in self._reviewed:
                return
            self._reviewed[header.part_id] = truth
            self._out.write(json.dumps({"part_id": header.part_id, "defect": truth.defect,
                                        "artefacts": list(truth.artefacts)}) + "\n")
            self._out.flush()

    def truth(self, part_id: str) -> PartTruth | None:
        with self._lock:
            return self._reviewed.get(part_id) or self._recent.get(part_id)

    def close(self) -> None:
        self.camera.close()
        with self._lock:
            self._out.close()


class StationClient:
    """A logged-in browser session against the station, without the browser."""

    def __init__(self, base_url: str, name: str, secret: str, timeout: float = 10.0):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf = ""
        self.login(name, secret)

    def _open(self, path: str, data: bytes | None = None, headers: dict | None = None):  # noqa: ANN202
        req = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        return self._opener.open(req, timeout=self.timeout)

    def _token_from(self, html: str) -> str:
        m = re.search(r'name="csrf-token" content="([^"]+)"', html)
        if not m:
            raise RuntimeError(f"no CSRF token on {self.base}")
        return m.group(1)

    def login(self, name: str, secret: str) -> None:
        self.csrf = self._token_from(self._open("/login").read().decode())
        form = urllib.parse.urlencode({"name": name, "secret": secret, "csrf_token": self.csrf}).encode()
        html = self._open("/login", form).read().decode()
        self.csrf = self._token_from(html)  # the session's token after login

    def json(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "X-CSRF-Token": self.csrf} if body is not None else {}
        try:
            with self._open(path, data, headers) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


class AutoReviewer:
    """Answers the station's review queue from a TruthBook until stopped."""

    def __init__(self, station_url: str, login: tuple[str, str], book: TruthBook, idle_wait_s: float = 0.3):
        self.url = station_url
        self.login = login
        self.book = book
        self.idle_wait_s = idle_wait_s
        self.answered = 0
        self.unanswerable: set[str] = set()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AutoReviewer:
        self._thread = threading.Thread(target=self._run, name="auto-reviewer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            client = StationClient(self.url, *self.login)
            while not self._stop.is_set():
                if not self._answer_next(client):
                    self._stop.wait(self.idle_wait_s)  # an empty queue: look again shortly
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = f"auto-review stopped: {exc}"
            log.error(self.error)

    def _answer_next(self, client: StationClient) -> bool:
        status, item = client.json("/review/item")
        if status == 401 or status == 403:
            client.login(*self.login)  # e.g. an idle logout
            return True
        review_id, part_id = item.get("id"), item.get("part_id")
        if not review_id or not part_id:
            return False
        truth = self.book.truth(part_id)
        if truth is None:
            if review_id not in self.unanswerable:
                self.unanswerable.add(review_id)
                log.warning("no ground truth for part %s (review %s); it is left for a person", part_id, review_id)
            return False
        verdict, kind = verdict_for(truth)
        status, out = client.json("/review/verdict", {"review_id": review_id, "verdict": verdict, "kind": kind})
        if status == 200:
            self.answered += 1
        elif status != 409:  # 409: someone else decided it first
            raise RuntimeError(f"the station refused a verdict ({status}): {out.get('error')}")
        return True

