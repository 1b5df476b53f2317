"""Labelled review items from the station's export API, kept locally so each run fetches only new ones.

``StationSource.sync()`` pages through ``GET /api/v1/export?since=CURSOR&limit=N``
(``Authorization: Bearer TOKEN``), downloads each item's ``image_url`` and stores it
under the trainer's data directory::

    <data>/station/images/<review id>.jpg
    <data>/station/labels.jsonl     one line per exported verdict; a later line for the same id wins
    <data>/station/cursor           the export cursor of the last stored item

(``<data>/sources/<name>/`` instead for each named source of a plant's trainer, which gathers
the verdicts of several stations: each keeps its own cursor, so one station that is down
delays only its own items, and what was synced from it before still trains.)

The cursor moves only after an item's image and label are on disk, so an
interrupted sync fetches the rest next time. An item re-labelled after an undo is
exported again with a new cursor and its new label replaces the old one.

``load()`` turns everything stored into an ``ImageSet``: ``real_fault`` -> defect,
``not_defect`` -> OK with the kind kept in ``meta``; one ruled a lighting artefact
(glare, shadow, dust: ``wire.LIGHTING_KINDS``) is a hard negative, the line's own
lighting that the model must learn not to reject, and trains more often.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from qcloop import wire
from qcloop.errors import WireError
from qcloop.files import write_atomically
from training.data import ImageSet, Sample, fit_input, is_hard_negative, read_grey
from training.dedup import content_hash
from training.errors import DatasetError

LABEL_OF = {"real_fault": 1, "not_defect": 0}


@dataclass(frozen=True)
class SyncResult:
    fetched: int  # new or re-labelled items stored this run
    cursor: int
    pages: int


class StationSource:
    def __init__(self, url: str, token: str, data_dir: str | Path, page: int = 500, timeout_s: float = 30.0,
                 name: str = ""):
        if not url.startswith(("http://", "https://")):
            raise DatasetError(f"station URL must start with http:// or https://, got {url!r}")
        if not token:
            raise DatasetError("no API token for the station export (create one with `qc station add-token`)")
        if not 1 <= page <= 1000:
            raise DatasetError(f"export page size must be 1..1000, got {page}")
        self.url = url.rstrip("/")
        self.token = token
        self.name = name  # "" : the trainer's one [station]
        self.root = Path(data_dir) / "sources" / name if name else Path(data_dir) / "station"
        self.page = page
        self.timeout_s = timeout_s

    # ------------------------------------------------------------------ state
    @property
    def cursor_path(self) -> Path:
        return self.root / "cursor"

    @property
    def labels_path(self) -> Path:
        return self.root / "labels.jsonl"

    def cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.cursor_path}: unreadable export cursor: {exc}") from exc

    # ------------------------------------------------------------------ fetching
    def _get(self, url: str) -> bytes:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise DatasetError(f"{url}: the station refused the API token (401)") from exc
            raise DatasetError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DatasetError(f"cannot reach the station at {url}: {exc}") from exc

    def sync(self, max_pages: int = 10_000) -> SyncResult:
        """Fetch every item exported after the stored cursor; return what was stored."""
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        cursor, fetched, pages = self.cursor(), 0, 0
        while pages < max_pages:
            raw = self._get(f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"since": cursor,
                                                                                    "limit": self.page}))
            pages += 1
            try:
                page = wire.ExportPage.decode(raw)
            except WireError as exc:
                raise DatasetError(f"{self.url}/api/v1/export: not an export page: {exc}") from exc
            items, next_cursor = page.items, page.next_cursor
            if not items:
                break
            for item in items:
                self._store(item)
                fetched += 1
                cursor = max(cursor, item.cursor)
                write_atomically(self.cursor_path, f"{cursor}\n".encode())
            cursor = max(cursor, next_cursor)
            write_atomically(self.cursor_path, f"{cursor}\n".encode())
            if len(items) < self.page:
                break
        return SyncResult(fetched, cursor, pages)

    def _image_url(self, item: wire.ExportItem) -> str:
        """The item's image on the configured station: a path joins the station URL; an absolute URL (a
        station before image paths) must point at the same station, or the download is refused."""
        url = urllib.parse.urljoin(self.url + "/", item.image_url)
        if urllib.parse.urlsplit(url)[:2] != urllib.parse.urlsplit(self.url)[:2]:
            raise DatasetError(f"export item {item.id}: its image {item.image_url} is not on {self.url}")
        return url

    def _store(self, item: wire.ExportItem) -> None:
        rid = item.id  # a UUID (the codec checked it): safe as a file name
        path = self.root / "images" / f"{rid}.jpg"
        if not path.exists():
            data = self._get(self._image_url(item))
            if not data.startswith(b"\xff\xd8"):
                raise DatasetError(f"{self._image_url(item)}: not a JPEG")
            write_atomically(path, data)
        entry = {k: getattr(item, k) for k in ("id", "verdict", "kind", "line", "camera", "part_id", "model",
                                               "score", "reason", "user", "verdict_time", "cursor")}
        with self.labels_path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ dataset
    def labels(self) -> dict[str, dict]:
        """review id -> its latest exported label."""
        out: dict[str, dict] = {}
        try:
            lines = self.labels_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash; the cursor had not moved past it
            out[entry["id"]] = entry
        return out

    def load(self, hw: tuple[int, int], roi=None, lines=None) -> ImageSet:  # noqa: ANN001
        """Every stored item as a labelled sample (station images are already the inspected region);
        with ``lines``, only those lines' items (a product's), and only their images are read."""
        samples = []
        for rid, e in sorted(self.labels().items()):
            if lines is not None and e.get("line") not in lines:
                continue
            image = fit_input(read_grey(self.root / "images" / f"{rid}.jpg"), hw, roi)
            meta = {"source": "station", "station_source": self.name or "station", "review_id": rid,
                    "verdict": e["verdict"], "kind": e.get("kind") or "", "line": e.get("line"),
                    "verdict_time": e.get("verdict_time"), "sha": content_hash(image)}
            if e["verdict"] == "not_defect" and meta["kind"] in wire.LIGHTING_KINDS:
                meta["hard_negative"] = True  # a lighting artefact fooled the model: shown more often in training
            samples.append(Sample(image, LABEL_OF[e["verdict"]], meta))
        labels = [s.label for s in samples]
        return ImageSet(samples, hw, {"station_items": len(samples), "station_defects": sum(labels),
                                      "station_hard_negatives": sum(1 for s in samples if is_hard_negative(s))})


def merge(sets: list[ImageSet]) -> ImageSet:
    """One ImageSet from several sources of the same input size (empty sets are skipped)."""
    sets = [s for s in sets if s is not None]
    if not sets:
        raise DatasetError("no data sources gave any images")
    out = sets[0]
    for more in sets[1:]:
        out = out + more
    return out


def empty(hw: tuple[int, int]) -> ImageSet:
    return ImageSet([], hw, {})

