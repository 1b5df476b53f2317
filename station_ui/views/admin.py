"""Settings: each line's operating mode (engineers) and two-person rule (admins), and the audit log.
Changes are audited."""
from __future__ import annotations

import json

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from qcloop import wire
from station_ui import present, routing
from station_ui.db import get_db
from station_ui.errors import StoreError
from station_ui.security import require

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/", methods=["GET"])
@require("engineer")
def settings():
    db = get_db()
    entries = [dict(r) | {"detail": json.loads(r["detail"])} for r in db.audit_entries(200)]
    return render_template("admin.html", lines=db.lines(), entries=entries, modes=list(present.MODE_WORDS.items()),
                           rules=db.routing_rules(), reasons=wire.REASONS, held_first=routing.HELD_FIRST)


@bp.route("/lines/mode", methods=["POST"])
@require("engineer")
def set_mode():
    """An engineer sets a line's operating mode, hold time and fallback: audited, and sent to the line's edges
    (retained) at once."""
    line = request.form.get("line", "").strip()
    if not line or "/" in line or "+" in line or "#" in line or len(line) > 200:
        return render_template("error.html", message=f"bad line name {line!r}"), 400
    try:
        settings = get_db().set_line_mode(line, request.form.get("mode", ""), request.form.get("hold_time_s", "60"),
                                          request.form.get("fallback", "REJECT"), g.user.name,
                                          lot=request.form.get("lot", ""))
    except StoreError as exc:
        return render_template("error.html", message=str(exc)), 400
    publisher = current_app.extensions["station"].publisher
    if publisher is not None:
        publisher.publish_line_settings(settings)
        flash(f"Line {line}: {settings.mode} sent to its edges.")
    else:
        flash(f"Line {line}: {settings.mode} saved; MQTT is off at this station, so the edges were not told.")
    return redirect(url_for("admin.settings"))


@bp.route("/routing", methods=["POST"])
@require("engineer")
def add_rule():
    """A routing rule for reviews arriving from now on (station_ui.routing); audited."""
    try:
        rule = routing.rule_from_form(request.form)
    except StoreError as exc:
        return render_template("error.html", message=str(exc)), 400
    get_db().add_routing_rule(rule, g.user.name)
    flash(f"Routing rule added: {rule.words()}.")
    return redirect(url_for("admin.settings"))


@bp.route("/routing/<int:rule_id>/remove", methods=["POST"])
@require("engineer")
def remove_rule(rule_id: int):
    if not get_db().remove_routing_rule(rule_id, g.user.name):
        return render_template("error.html", message=f"no routing rule {rule_id}"), 404
    return redirect(url_for("admin.settings"))


@bp.route("/lines", methods=["POST"])
@require("admin")
def set_line():
    line = request.form.get("line", "").strip()
    if not line or "/" in line or len(line) > 200:
        return render_template("error.html", message=f"bad line name {line!r}"), 400
    get_db().set_line_critical(line, request.form.get("critical") == "1", g.user.name)
    return redirect(url_for("admin.settings"))
