"""Dataset export API for the retraining server, authenticated by a bearer API token.

``GET /api/v1/export?since=CURSOR&limit=N`` returns labelled reviews whose final
verdict came after the cursor (the verdict's id, so an item re-labelled after an
undo comes again with its new label) and ``next_cursor`` (wire.ExportPage); ``GET
/api/v1/images/<id>`` returns the JPEG. An item's ``image_url`` is that path, never
built from the request's Host header (a forged one would send the trainer elsewhere);
the trainer joins it to the station URL it is configured with. No session cookies,
hence no CSRF.
"""
from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request, send_file, url_for

from qcloop import wire
from station_ui import accounts
from station_ui.db import get_db
from station_ui.errors import ReviewNotFound

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _token() -> Any:
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not accounts.check_token(get_db(), token):
        resp = jsonify(error="missing or wrong API token (send 'Authorization: Bearer TOKEN')")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Bearer realm="qc-station"'
        return resp
    return None


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        abort(400, description=f"query parameter {name!r} must be an integer, got {raw!r}")
    if not lo <= value <= hi:
        abort(400, description=f"query parameter {name!r} must be in {lo}..{hi}, got {value}")
    return value


@bp.route("/export")
def export():
    since = _int_arg("since", 0, 0, 2 ** 62)
    limit = _int_arg("limit", 100, 1, 1000)
    rows, cursor = get_db().export(since, limit)
    items = tuple(wire.ExportItem(
        id=r["id"], part_id=r["part_id"], line=r["line"], camera=r["camera"], captured_at=r["captured_at"],
        model=r["model"], score=r["score"], band=r["band"], action_taken=r["action_taken"], reason=r["reason"],
        thresholds=json.loads(r["thresholds"]), quality=json.loads(r["quality"]), width=r["width"],
        height=r["height"], verdict=r["final_verdict"], kind=r["final_kind"] or "", user=r["verdict_user"] or "",
        verdict_time=r["verdict_time"] or 0.0, station=r["verdict_station"] or "", cursor=r["final_verdict_id"],
        image_url=url_for("api.image", review_id=r["id"]),  # a path: the trainer joins its own station URL
    ) for r in rows)
    return Response(wire.ExportPage(items, cursor).encode(), mimetype="application/json")


@bp.route("/images/<review_id>")
def image(review_id: str):
    try:
        row = get_db().get_review(review_id)
    except ReviewNotFound:
        abort(404)
    return send_file(row["image_path"], mimetype="image/jpeg")
