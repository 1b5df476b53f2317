"""History: search reviews by part id, time, verdict and reviewer; one page per record."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, render_template, request

from station_ui import reports
from station_ui.db import get_db
from station_ui.errors import ReviewNotFound
from station_ui.security import require

bp = Blueprint("history", __name__)


def _date(name: str) -> float | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw).timestamp()
    except ValueError:
        abort(400, description=f"{name} must be a date like 2024-05-01 or 2024-05-01T13:00, got {raw!r}")


@bp.route("/history")
@require("engineer")
def search():
    a = request.args
    rows = reports.history(get_db(), part_id=a.get("part_id", "").strip(), verdict=a.get("verdict", ""),
                           user=a.get("user", "").strip(), t0=_date("from"), t1=_date("to"))
    return render_template("history.html", rows=rows, a=a)


@bp.route("/history/<review_id>")
@require("engineer")
def record(review_id: str):
    try:
        rec = reports.record(get_db(), review_id)
    except ReviewNotFound:
        abort(404)
    return render_template("record.html", rec=rec, r=rec["review"])
