"""MQTT ingest: review envelopes from the edges into the store, then the review-ack.

paho's network thread only hands each message to a bounded queue (blocking when it
is full, which stops reading from the broker: backpressure instead of memory
growth). A writer thread drains the queue in batches: it validates each envelope
(a bad one is logged and counted, never fatal), writes new JPEGs atomically
(temporary file, fsync, rename, directory fsync), inserts the rows in one
transaction keyed by review id (a repeat is ignored), and only then publishes a
``review-ack`` for every copy, so the edge deletes a review only once it is on
our disk. The session is persistent (fixed client id, clean_session False), so
reviews sent while the station is down wait in the broker.

When the disk is full (or the database cannot be written) a batch is not
acknowledged at all: the edges keep their copies and send them again. The
"storage" alarm is raised (logged, on the event hub, in ``health()``) and cleared
by the next batch that is stored.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from qcloop import wire
from qcloop.alarms import Alarms
from qcloop.errors import WireError
from qcloop.files import fsync_dir, write_durably
from qcloop.mqttconn import make_client
from station_ui.config import StationConfig
from station_ui.errors import StoreError
from station_ui.events import EventHub
from station_ui.store import Store

log = logging.getLogger(__name__)
_BATCH = 64


class Ingest:
    def __init__(self, cfg: StationConfig, hub: EventHub | None = None):
        self.cfg = cfg
        self.topics = wire.Topics(cfg.mqtt.prefix)
        self.hub = hub
        self.counts: Counter[str] = Counter()  # received, stored, duplicates, rejected, acked, status
        self.connected = threading.Event()
        self.alarm_state = Alarms(on_change=self._alarm_changed, logger=log)  # e.g. "storage": a full disk
        self._q: queue.Queue = queue.Queue(cfg.mqtt.queue_size)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._worker: threading.Thread | None = None
        m = cfg.mqtt
        c = make_client(m, m.client_id)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self._subs_lock = threading.Lock()
        self._subs_pending: set[int] = set()
        c.max_queued_messages_set(0)  # verdicts published while disconnected wait for the reconnect
        self.client = c
        # Verdicts go out from the store's verdict_outbox (written with the verdict) and leave it on PUBACK.
        # Locks: paho calls on_publish while holding its own message lock, so no lock here is ever held
        # while calling paho (that would deadlock a publish against a PUBACK arriving at the same time).
        self._send_lock = threading.Lock()  # one sender at a time; never taken by a paho callback
        self._map_lock = threading.Lock()  # the two maps below, held only for dict updates
        self._db_lock = threading.Lock()  # the verdict store's connection, held only around SQLite
        self._verdicts_in_flight: dict[int, int] = {}  # MQTT message id -> verdict_outbox row
        self._acked_early: set[int] = set()  # PUBACKs that came before their publish() returned
        self._sending = False
        self._verdict_store: Store | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self, wait_s: float | None = 10.0) -> Ingest:
        self.cfg.image_dir.mkdir(parents=True, exist_ok=True)
        self._worker = threading.Thread(target=self._run_writer, name="station-ingest-writer", daemon=True)
        self._worker.start()
        from qcloop.mqttconn import BrokerFailover

        # Moves to the next of [mqtt].brokers when the one in use fails; ``broker.current`` names it.
        self.broker = BrokerFailover(self.client, self.cfg.mqtt, f"station {self.cfg.mqtt.client_id}").start()
        if wait_s and not self.connected.wait(wait_s):
            log.warning("not connected to a broker (%s) yet; retrying in the background", self.cfg.mqtt.broker_list)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._stop.set()
        if self._worker:
            self._worker.join(10)
        with self._db_lock:
            if self._verdict_store is not None:
                self._verdict_store.close()
                self._verdict_store = None
        with self._map_lock:
            self._verdicts_in_flight.clear()

    def stats(self) -> dict[str, int]:
        return {k: self.counts[k] for k in ("received", "stored", "duplicates", "rejected", "acked", "store_failed")}

    def alarms(self) -> dict[str, str]:
        return self.alarm_state.active()

    def health(self) -> dict[str, Any]:
        """For a health check: healthy while connected to the broker with no active alarm."""
        alarms = self.alarms()
        return {"healthy": self.connected.is_set() and not alarms, "broker_connected": self.connected.is_set(),
                "alarms": alarms, **self.stats()}

    def _alarm_changed(self, name: str, active: bool) -> None:
        if not self.hub:
            return
        event = {"name": name, "active": active}
        if active:
            event["message"] = self.alarm_state.active().get(name, "")
        self.hub.publish("alarm", event)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything received so far is stored and acked (tests, bench)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # ------------------------------------------------------------ paho callbacks
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        if reason_code != 0:
            log.error("broker refused the connection: %s", reason_code)
            return
        prefix, lines = self.cfg.mqtt.prefix, self.cfg.station.lines
        if lines:
            # The session is persistent: filters for every line, left by an earlier config, would still
            # bring the other stations' reviews here (dropped below, but received all the same).
            client.unsubscribe([self.topics.all_reviews(), f"{prefix}/+/+/status"])
        topics = [self.topics.all_reviews(line) for line in lines or ("+",)]
        if self.cfg.mqtt.subscribe_status:
            topics += [f"{prefix}/{line}/+/status" for line in lines or ("+",)] + [self.topics.all_train_status()]
        # Connected means subscribed: what an edge publishes after ``connected`` is set is received.
        with self._subs_lock:
            self._subs_pending = {mid for t in topics if (mid := client.subscribe(t, qos=1)[1]) is not None}
            nothing_pending = not self._subs_pending
        if nothing_pending:  # no subscription could be sent: the reconnect will try again
            log.warning("could not subscribe after connecting to %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self._publish_all_line_settings()

    def _publish_all_line_settings(self) -> None:
        """Every served line's mode again, retained: a broker that lost its retained messages gets them back.

        Only this station's own lines: another station sets the modes of the lines it serves."""
        try:
            with self._db_lock:
                if self._verdict_store is None:
                    self._verdict_store = Store(self.cfg.db_path, migrate=False, station=self.cfg.station.name)
                settings = self._verdict_store.line_settings()
        except (sqlite3.Error, StoreError) as exc:
            log.warning("cannot read the lines' operating modes: %s", exc)
            return
        for message in settings:
            if self.cfg.station.serves(message.line):
                self.publish_line_settings(message)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, props: Any) -> None:
        with self._subs_lock:
            self._subs_pending.discard(mid)
            done = not self._subs_pending
        if done and not self.connected.is_set():
            self.connected.set()
            # Verdicts ruled while the broker was away, or before a restart; off the network thread,
            # which must not wait on the database.
            threading.Thread(target=self.send_verdicts, name="station-verdicts", daemon=True).start()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, props: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._idle:
            self._pending += 1
        while not self._stop.is_set():
            try:
                self._q.put((msg.topic, msg.payload), timeout=0.5)
                return
            except queue.Full:
                continue  # the writer is behind: holding here stops reading from the broker

    # ------------------------------------------------------------------ writer
    def _run_writer(self) -> None:
        store = Store(self.cfg.db_path, station=self.cfg.station.name)
        try:
            while not self._stop.is_set():
                try:
                    first = self._q.get(timeout=0.2)
                except queue.Empty:
                    continue
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._handle(store, batch)
                except Exception:  # a disk or database fault must not kill the ingest
                    log.exception("could not store a batch of %d messages; the edges will resend", len(batch))
                finally:
                    with self._idle:
                        self._pending -= len(batch)
                        self._idle.notify_all()
        finally:
            store.close()

    def _handle(self, store: Store, batch: list[tuple[str, bytes]]) -> None:
        reviews: list[tuple[wire.ReviewHeader, bytes]] = []
        for topic, payload in batch:
            if topic == self.topics.train_status() or topic.startswith(self.topics.train_status() + "/"):
                self._handle_trainer_status(store, topic, payload)
                continue
            if topic.endswith("/status"):
                self._handle_status(store, topic, payload)
                continue
            self.counts["received"] += 1
            try:
                line, camera = self.topics.parse_review_topic(topic)
                # Another station stores and acknowledges another line's reviews: an ack from here would let
                # the edge delete a review that station may never have stored. Not decoded, not acked.
                foreign = line if not self.cfg.station.serves(line) else None
                if foreign is None:
                    header, jpeg = wire.decode_review(payload, max_bytes=self.cfg.mqtt.max_review_bytes)
                    foreign = header.line if not self.cfg.station.serves(header.line) else None
                if foreign is not None:
                    self.counts["other_line"] += 1
                    log.warning("dropped a review of line %s on %s: this station serves only %s",
                                foreign, topic, ", ".join(self.cfg.station.lines))
                    continue
                if (line, camera) != (header.line, header.camera):
                    raise WireError(f"header says {header.line}/{header.camera} but it came on {topic}")
            except WireError as exc:
                self.counts["rejected"] += 1
                log.warning("rejected a review on %s (%d bytes): %s", topic, len(payload), exc)
                continue
            reviews.append((header, jpeg))
        if not reviews:
            return
        try:
            fresh = self._store(store, reviews)
        except (OSError, sqlite3.Error, StoreError) as exc:
            # Nothing of this batch is acked: the edges keep their copies and resend them.
            self.counts["store_failed"] += len(reviews)
            self.alarm_state.raise_("storage", f"cannot store reviews in {self.cfg.data_dir}: {exc}; "
                                         "not acknowledged, the edges will send them again")
            return
        self.alarm_state.clear("storage")
        for (header, _), new in zip(reviews, fresh):
            self.counts["stored" if new else "duplicates"] += 1
            self.client.publish(self.topics.review_ack(header.line),
                                wire.ReviewAck(header.id, True, self.cfg.station.name).encode(), qos=1)
            self.counts["acked"] += 1
        if self.hub and any(fresh):
            self.hub.publish("queue", {"new": sum(fresh), "lines": sorted({h.line for h, _ in reviews})})

    def _store(self, store: Store, reviews: list[tuple[wire.ReviewHeader, bytes]]) -> list[bool]:
        rows = []
        wrote_dirs: set[Path] = set()
        for header, jpeg in reviews:
            path = self.image_path(header.id)
            if not path.exists():  # a complete file: write_durably never leaves a torn one
                path.parent.mkdir(parents=True, exist_ok=True)
                write_durably(path, jpeg)
                wrote_dirs.add(path.parent)
            rows.append((header, str(path), len(jpeg)))
        for d in wrote_dirs:
            fsync_dir(d)  # the renames themselves must be durable before we ack
        return store.insert_reviews(rows)

    def _handle_status(self, store: Store, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if not self.cfg.station.serves(parts[-3]):
            self.counts["other_line_status"] += 1  # the dashboard shows only the lines served here
            return
        try:
            status = wire.EdgeStatus.decode(payload)
            store.upsert_edge_status(parts[-3], parts[-2], status)
            self.counts["status"] += 1
        except WireError as exc:
            self.counts["bad_status"] += 1  # dropped: a malformed status never reaches a page
            log.warning("ignored an edge status on %s: %s", topic, exc)
        except (sqlite3.Error, StoreError) as exc:
            # A status is replaced by the next one; losing it must not cost the batch's reviews.
            log.warning("could not store an edge status from %s: %s", topic, exc)

    def _handle_trainer_status(self, store: Store, topic: str, payload: bytes) -> None:
        try:
            status = wire.TrainStatus.decode(payload)
            if status.lines and not any(self.cfg.station.serves(line) for line in status.lines):
                self.counts["other_line_status"] += 1  # another product's trainer: its lines are not served here
                return
            store.upsert_trainer_status(topic, status)
            self.counts["trainer_status"] += 1
        except WireError as exc:
            self.counts["bad_status"] += 1
            log.warning("ignored a trainer status on %s: %s", topic, exc)
        except (sqlite3.Error, StoreError) as exc:
            log.warning("could not store the trainer status from %s: %s", topic, exc)

    def image_path(self, review_id: str) -> Path:
        # Two-character fan-out keeps directories small at millions of images.
        return self.cfg.image_dir / review_id[:2] / f"{review_id}.jpg"

    # ---------------------------------------------------------------- verdicts
    def publish_verdict(self, message: wire.Verdict) -> None:
        """Send what the store queued with this verdict (and anything older still waiting)."""
        self.send_verdicts()

    def send_verdicts(self) -> int:
        """Publish every queued verdict message not already on its way; return how many went out now."""
        sent = 0
        with self._send_lock:
            try:
                with self._db_lock:
                    if self._verdict_store is None:
                        self._verdict_store = Store(self.cfg.db_path, migrate=False, station=self.cfg.station.name)
                    rows = self._verdict_store.unsent_verdicts()
            except (sqlite3.Error, StoreError) as exc:
                log.warning("cannot read the verdicts waiting to be sent: %s", exc)
                return 0
            with self._map_lock:
                waiting = set(self._verdicts_in_flight.values())
                self._sending = True
            acked_now = []
            try:
                for row in rows:
                    if row["id"] in waiting:
                        continue
                    info = self.client.publish(self.topics.verdict(row["line"]), row["payload"], qos=1)
                    with self._map_lock:
                        if info.mid in self._acked_early:  # its PUBACK beat publish() back here
                            self._acked_early.discard(info.mid)
                            acked_now.append(row["id"])
                        else:
                            self._verdicts_in_flight[info.mid] = row["id"]
                    sent += 1
            finally:
                with self._map_lock:
                    self._sending = False
                    self._acked_early.clear()
            self._mark_sent(acked_now)
        return sent

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, props: Any) -> None:
        with self._map_lock:
            row = self._verdicts_in_flight.pop(mid, None)
            if row is None:
                if self._sending:
                    self._acked_early.add(mid)  # perhaps a verdict whose publish() has not returned yet
                return  # else a review-ack or a retrain request: nothing kept for those
        self._mark_sent([row])

    def _mark_sent(self, rows: list[int]) -> None:
        if not rows:
            return
        with self._db_lock:
            if self._verdict_store is None:
                return
            try:
                self._verdict_store.verdicts_sent(rows)
            except (sqlite3.Error, StoreError) as exc:  # sent again after a restart: a duplicate, not a loss
                log.warning("could not mark a sent verdict: %s", exc)

    def publish_retrain_request(self, message: wire.RetrainRequest) -> None:
        self.client.publish(self.topics.retrain_request(), message.encode(), qos=1)

    def publish_line_settings(self, message: wire.LineSettings) -> None:
        """Retained, so an edge that starts (or reconnects) later gets its line's mode at once.

        Only for the station's own lines: the settings of another station's line are that station's
        (its review capacity, its engineers), whoever here asked for them."""
        if not self.cfg.station.serves(message.line):
            log.warning("settings for line %s not sent: this station serves only %s", message.line,
                        ", ".join(self.cfg.station.lines))
            return
        self.client.publish(self.topics.settings(message.line), message.encode(), qos=1, retain=True)
