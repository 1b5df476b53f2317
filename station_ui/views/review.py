"""The review screen: the queue, one item at a time, verdict and undo, live updates (SSE).

The page is rendered on the server with the first item; after a verdict the JSON
answer carries the next item's HTML fragment (the same template), so there is one
way to draw an item. New reviews arrive as server-sent events from the ingest; the
page then re-reads the queue once, it never polls.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)

from qcloop.files import write_atomically
from station_ui import explain, known_answers, present
from station_ui.db import get_db
from station_ui.errors import AlreadyDecided, ReviewNotFound, StoreError, UndoRefused
from station_ui.events import sse_format
from station_ui.security import require

bp = Blueprint("review", __name__)


def index_redirect():
    return redirect(url_for("review.page"))


def _filters() -> tuple[str | None, str | None]:
    src = (request.get_json(silent=True) or {}) if request.method == "POST" else request.args
    return (src.get("line") or None), (src.get("camera") or None)


def _stats(line: str | None, camera: str | None) -> dict[str, Any]:
    db = get_db()
    s = db.queue_stats(line, camera, user=g.user.name)
    # A known answer waiting for this reviewer is one of their items, as a live one would be.
    count = s.count + (1 if s.count and known_answers.pending(db, g.user.name) is not None else 0)
    age = s.oldest_age_s()
    return {"count": count, "oldest_captured_at": s.oldest_captured_at, "oldest_age": present.age_words(age)}


def _item_html(row: Any) -> str:
    item = present.item_view(row) if row is not None else None
    if item is not None:
        item["mode"] = present.mode_words(*get_db().line_mode(row["line"]))
    return render_template("_item.html", item=item, explain_on=bool(current_app.extensions["station"].cfg.explain.url),
                           fault_choices=present.FAULT_CHOICES, not_defect_choices=present.NOT_DEFECT_CHOICES,
                           kind_labels=present.KIND_LABELS)


def _next_row(line: str | None, camera: str | None) -> Any:
    """The reviewer's next item: a known answer served to them (station_ui.known_answers), else the oldest
    live item."""
    db = get_db()
    rows = db.next_items(g.user.name, line, camera, limit=1)
    head = rows[0] if rows else None
    if head is None:
        return None  # with no live item waiting, no known answer is shown either
    ka = known_answers.pending(db, g.user.name) or known_answers.maybe_serve(
        db, g.user.name, head, current_app.extensions["station"].cfg.review.known_answer_rate, line, camera)
    return known_answers.as_review(db, ka) if ka is not None else head


@bp.route("/review")
@require("operator")
def page():
    line, camera = _filters()
    lines, cams = get_db().queue_filters()
    return render_template("review.html", item_html=_item_html(_next_row(line, camera)), stats=_stats(line, camera),
                           line=line or "", camera=camera or "", lines=lines, cameras=cams,
                           undo_s=current_app.extensions["station"].cfg.web.undo_window_s)


@bp.route("/review/item")
@require("operator")
def item():
    line, camera = _filters()
    row = _next_row(line, camera)
    return jsonify(html=_item_html(row), id=row["id"] if row is not None else None,
                   part_id=row["part_id"] if row is not None else None, stats=_stats(line, camera))


@bp.route("/review/verdict", methods=["POST"])
@require("operator")
def verdict():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="send a JSON object with review_id, verdict and kind"), 400
    state = current_app.extensions["station"]
    line, camera = _filters()
    item_id, verdict_name, kind = str(body.get("review_id", "")), str(body.get("verdict", "")), \
        str(body.get("kind", "") or "")
    if known_answers.is_known_answer(get_db(), item_id):
        return _known_answer(item_id, verdict_name, kind, line, camera)
    try:
        out = get_db().record_verdict(item_id, verdict_name, kind, g.user.name)
    except ReviewNotFound as exc:
        return jsonify(error=str(exc)), 404
    except AlreadyDecided as exc:
        row = _next_row(line, camera)
        return jsonify(error=str(exc), html=_item_html(row), id=row["id"] if row is not None else None,
                       stats=_stats(line, camera)), 409
    except StoreError as exc:
        return jsonify(error=str(exc)), 400
    state.publish(out.message)
    state.hub.publish("queue", {"decided": out.review_id})
    row = _next_row(line, camera)
    return jsonify(ok=True, state=out.state, counted=out.counted, verdict_id=out.verdict_id,
                   undo_until=time.time() + state.cfg.web.undo_window_s, html=_item_html(row),
                   id=row["id"] if row is not None else None, stats=_stats(line, camera))


def _known_answer(item_id: str, verdict_name: str, kind: str, line: str | None, camera: str | None):
    """A known answer's verdict: answered as a live one is, kept only for measuring the reviewer."""
    state = current_app.extensions["station"]
    db = get_db()
    try:
        db.check_verdict(verdict_name, kind)
    except StoreError as exc:
        return jsonify(error=str(exc)), 400
    if not known_answers.answer(db, item_id, g.user.name, verdict_name, kind):
        row = _next_row(line, camera)
        return jsonify(error=f"review {item_id} is already done", html=_item_html(row),
                       id=row["id"] if row is not None else None, stats=_stats(line, camera)), 409
    row = _next_row(line, camera)
    return jsonify(ok=True, state="done", counted=True, verdict_id=None,
                   undo_until=time.time() + state.cfg.web.undo_window_s, html=_item_html(row),
                   id=row["id"] if row is not None else None, stats=_stats(line, camera))


@bp.route("/review/undo", methods=["POST"])
@require("operator")
def undo():
    state = current_app.extensions["station"]
    line, camera = _filters()
    undone = known_answers.undo_if_last(get_db(), g.user.name, state.cfg.web.undo_window_s)
    if undone is not None:  # the reviewer's last ruling was a known answer: it is their next item again
        return jsonify(ok=True, html=_item_html(_next_row(line, camera)), id=undone, stats=_stats(line, camera))
    try:
        out = get_db().undo_last(g.user.name, state.cfg.web.undo_window_s)
    except UndoRefused as exc:
        return jsonify(error=str(exc)), 409
    state.publish(out.message)
    state.hub.publish("queue", {"undone": out.review_id})
    row = get_db().get_review(out.review_id)  # show the undone item again, at once
    return jsonify(ok=True, html=_item_html(row), id=row["id"], stats=_stats(line, camera))


@bp.route("/review/events")
@require("operator")
def events():
    state = current_app.extensions["station"]
    hub = state.hub
    sub = hub.subscribe(g.user.name, per_owner=state.cfg.web.streams_per_user, total=state.cfg.max_streams)
    if sub is None:  # the station holds as many streams as it can: the page's EventSource retries later
        return Response("too many open review screens on this station\n", status=503, mimetype="text/plain",
                        headers={"Retry-After": "30"})

    def stream():
        try:
            yield "retry: 2000\n\n"
            while not hub.closed.is_set():
                try:
                    event, data = sub.get(timeout=15)
                except queue.Empty:
                    yield ": keep-alive\n\n"  # lets proxies and the server notice a gone browser
                    continue
                if event == "close":
                    break
                yield sse_format(event, data)
        finally:
            hub.unsubscribe(sub)

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.route("/images/<review_id>/heatmap.png")
@require("operator")
def heatmap(review_id: str):
    """Where the model looked on this frame: drawn by the retraining server ([explain]), kept here once drawn."""
    cfg = current_app.extensions["station"].cfg
    if not cfg.explain.url:
        return Response("heat maps are off at this station ([explain].url)\n", status=404, mimetype="text/plain")
    db = get_db()
    source = known_answers.source_of(db, review_id) or review_id  # a known answer shows its source's map
    try:
        row = db.get_review(source)
    except ReviewNotFound:
        abort(404)
    cached = cfg.data_dir / "heatmaps" / f"{row['id']}.png"
    if not cached.is_file():
        try:
            png = explain.draw(cfg.explain, row["model"], Path(row["image_path"]).read_bytes())
        except explain.ExplainError as exc:
            return Response(f"{exc}\n", status=503, mimetype="text/plain")
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cached, png)
    return send_file(cached, mimetype="image/png", max_age=3600)


@bp.route("/images/<review_id>.jpg")
@require("operator")
def image(review_id: str):
    db = get_db()
    path = known_answers.image_path(db, review_id)  # a known answer shows its source's frame
    if path is None:
        try:
            path = db.get_review(review_id)["image_path"]
        except ReviewNotFound:
            abort(404)
    return send_file(path, mimetype="image/jpeg", max_age=3600)
