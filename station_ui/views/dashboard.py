"""Engineers' dashboard: queue, rates per edge, throughput per reviewer, agreement, escape estimate,
and the "retrain now" button (a wire.RetrainRequest to the retraining server, audited like a setting)."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from qcloop import wire
from station_ui import known_answers, present, reports, svg
from station_ui.db import get_db
from station_ui.health import station_health
from station_ui.security import require

bp = Blueprint("dashboard", __name__)
WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
WINDOW_WORDS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days"}


@bp.route("/dashboard")
@require("engineer")
def page():
    window = request.args.get("window", "24h")
    window = window if window in WINDOWS else "24h"
    since = time.time() - WINDOWS.get(window, 86400)
    db = get_db()
    s = reports.summary(db, since)
    charts = {
        "per_reviewer": svg.bar_chart(s["per_reviewer"], title=f"Verdicts per reviewer ({window})"),
        "per_hour": svg.column_chart(s["per_hour"], title="Items decided per hour"),
        "mix": svg.bar_chart(s["verdict_mix"], title="Verdicts by kind", color="#c98a2e", width=600, label_w=230),
    }
    bucket = 3600.0 if window == "24h" else 86400.0
    over_time = reports.model_rates_over_time(db, since, bucket)
    labels = {r["start"]: time.strftime("%H:%M" if bucket < 86400 else "%m-%d", time.localtime(r["start"]))
              for rows in over_time.values() for r in rows}
    for name, title in (("review_rate", "Review share per model version"),
                        ("false_reject_rate", "False rejects (est. from audits) per model version"),
                        ("escape_rate", "Escapes (est. from audits) per model version")):
        charts[name] = svg.line_chart({m: [(r["start"], r[name]) for r in rows] for m, rows in over_time.items()},
                                      title=f"{title} ({window})", x_labels=labels)
    moves = db.band_moves(since)
    charts["band"] = svg.line_chart({"band width": [(m["time"], m["scale"]) for m in moves]},
                                    title=f"Review band width against the calibrated one ({window})", percent=False,
                                    x_labels={m["time"]: time.strftime("%H:%M" if bucket < 86400 else "%m-%d %H:%M",
                                                                       time.localtime(m["time"])) for m in moves})
    review_cfg = current_app.extensions["station"].cfg.review
    reviewers = known_answers.figures(db, review_cfg.known_answer_min_accuracy, review_cfg.known_answer_min_answers,
                                      since)
    return render_template("dashboard.html", s=s, edges=reports.edges(db), models=reports.models(db), charts=charts, window=window,
                           reviewers=reviewers, review_cfg=review_cfg, recalls=db.recalls(),
                           band_moves=list(reversed(moves))[:10], band_scale=db.band_scale(),
                           trainer=reports.trainer(db),
                           windows=list(WINDOW_WORDS.items()), oldest=present.age_words(s["oldest_age_s"]),
                           retrain=request.args.get("retrain", ""),
                           alarms=reports.alarms(db, station_health(current_app.extensions["station"].publisher)["alarms"]),
                           can_retrain=current_app.extensions["station"].publisher is not None)


@bp.route("/dashboard/retrain", methods=["POST"])
@require("engineer")
def retrain():
    state = current_app.extensions["station"]
    publisher = state.publisher
    if publisher is None:
        return render_template("error.html", message="MQTT is off at this station: the retraining server "
                                                     "cannot be reached"), 503
    reason = request.form.get("reason", "").strip()[:200]
    msg = wire.RetrainRequest(user=g.user.name, time=time.time(), station=state.cfg.station.name, reason=reason)
    publisher.publish_retrain_request(msg)  # the ingest's session: same broker, same credentials
    get_db().audit(g.user.name, "setting", "retrain", {"requested": True, "reason": reason})
    return redirect(url_for("dashboard.page", retrain="sent"))


@bp.route("/dashboard/alarms/ack", methods=["POST"])
@require("engineer")
def acknowledge_alarm():
    """An engineer acknowledges an active alarm: it stays listed until its cause goes, marked as seen."""
    source, name = request.form.get("source", "")[:200], request.form.get("name", "")[:100]
    db = get_db()
    current = {(a["source"], a["name"]): a for a in
               reports.alarms(db, station_health(current_app.extensions["station"].publisher)["alarms"])}
    alarm = current.get((source, name))
    if alarm is None:
        return render_template("error.html", message=f"no active alarm {name!r} of {source!r} to acknowledge"), 404
    db.acknowledge_alarm(source, name, alarm["message"], g.user.name)
    return redirect(url_for("dashboard.page"))


@bp.route("/dashboard/recalls/ack", methods=["POST"])
@require("engineer")
def acknowledge_recall():
    """An engineer has a recall in hand (the part is being found): it leaves the dashboard, audited."""
    review_id = request.form.get("review_id", "")[:100]
    if not get_db().acknowledge_recall(review_id, g.user.name):
        return render_template("error.html", message=f"no open recall for review {review_id!r}"), 404
    return redirect(url_for("dashboard.page"))


@bp.route("/dashboard/second-look", methods=["POST"])
@require("engineer")
def second_look():
    """An engineer sends a reviewer's recent verdicts (the window shown) for a second look by another reviewer."""
    reviewer = request.form.get("user", "")[:100]
    window = request.form.get("window", "24h")
    since = time.time() - WINDOWS.get(window, 86400)
    state = current_app.extensions["station"]
    messages = get_db().second_look(reviewer, since, g.user.name)
    for message in messages:
        state.publish(message)
    state.hub.publish("queue", {"second_look": reviewer})
    flash(f"{len(messages)} verdicts of {reviewer} sent for a second look.")
    return redirect(url_for("dashboard.page", window=window))
