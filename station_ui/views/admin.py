"""Admin settings: which lines are critical (two-person rule), and the audit log. Changes are audited."""
from __future__ import annotations

import json

from flask import Blueprint, g, redirect, render_template, request, url_for

from station_ui.db import get_db
from station_ui.security import require

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/", methods=["GET"])
@require("engineer")
def settings():
    db = get_db()
    entries = [dict(r) | {"detail": json.loads(r["detail"])} for r in db.audit_entries(200)]
    return render_template("admin.html", lines=db.lines(), entries=entries)


@bp.route("/lines", methods=["POST"])
@require("admin")
def set_line():
    line = request.form.get("line", "").strip()
    if not line or "/" in line or len(line) > 200:
        return render_template("error.html", message=f"bad line name {line!r}"), 400
    get_db().set_line_critical(line, request.form.get("critical") == "1", g.user.name)
    return redirect(url_for("admin.settings"))
