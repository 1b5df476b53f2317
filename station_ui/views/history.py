"""History: search reviews by part id, time, verdict and reviewer; one page per record."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from station_ui import present, reports
from station_ui.db import get_db
from station_ui.errors import AlreadyDecided, ReviewNotFound, StoreError
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


def _page() -> int:
    raw = request.args.get("page", "1").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        abort(400, description=f"page must be a whole number from 1, got {raw!r}")
    return int(raw)


@bp.route("/history")
@require("engineer")
def search():
    a = request.args
    page, size = _page(), reports.HISTORY_PAGE
    rows, total = reports.history(get_db(), part_id=a.get("part_id", "").strip(), verdict=a.get("verdict", ""),
                                  user=a.get("user", "").strip(), t0=_date("from"), t1=_date("to"),
                                  limit=size, offset=(page - 1) * size)
    pages = max(1, -(-total // size))
    query = {k: v for k, v in a.items() if k != "page" and v}
    return render_template("history.html", rows=rows, a=a, total=total, page=page, pages=pages,
                           first=(page - 1) * size + 1 if rows else 0, last=(page - 1) * size + len(rows),
                           query=query, verdict_words=present.verdict_words, action_words=present.ACTION_WORDS)


@bp.route("/history/<review_id>")
@require("engineer")
def record(review_id: str):
    try:
        rec = reports.record(get_db(), review_id)
    except ReviewNotFound:
        abort(404)
    return render_template("record.html", rec=rec, r=rec["review"], fault_kinds=present.FAULT_CHOICES,
                           not_defect_kinds=present.NOT_DEFECT_CHOICES, kind_labels=present.KIND_LABELS,
                           verdict_words=present.verdict_words)


@bp.route("/history/<review_id>/rule", methods=["POST"])
@require("engineer")
def rule(review_id: str):
    """An engineer rules on a disputed two-person item: the ruling counts and reaches the lines and the export."""
    verdict, kind = request.form.get("verdict", ""), request.form.get("kind", "")
    try:
        out = get_db().rule_dispute(review_id, verdict, kind, g.user.name)
    except ReviewNotFound:
        abort(404)
    except AlreadyDecided as exc:
        return render_template("error.html", message=str(exc)), 409
    except StoreError as exc:
        return render_template("error.html", message=str(exc)), 400
    state = current_app.extensions["station"]
    state.publish(out.message)
    state.hub.publish("queue", {"decided": review_id})
    flash(f"Ruled: {present.verdict_words(verdict, kind, 'done')}. It counts as the item's verdict.")
    return redirect(url_for("history.record", review_id=review_id))
