"""Engineers' dashboard: queue, rates per edge, throughput per reviewer, agreement, escape estimate."""
from __future__ import annotations

import time

from flask import Blueprint, render_template, request

from station_ui import present, reports, svg
from station_ui.db import get_db
from station_ui.security import require

bp = Blueprint("dashboard", __name__)
WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


@bp.route("/dashboard")
@require("engineer")
def page():  # type: ignore[no-untyped-def]
    window = request.args.get("window", "24h")
    since = time.time() - WINDOWS.get(window, 86400)
    db = get_db()
    s = reports.summary(db, since)
    charts = {
        "per_reviewer": svg.bar_chart(s["per_reviewer"], title=f"Verdicts per reviewer ({window})"),
        "per_hour": svg.column_chart(s["per_hour"], title="Items decided per hour"),
        "mix": svg.bar_chart(s["verdict_mix"], title="Verdicts by kind", color="#c98a2e"),
    }
    return render_template("dashboard.html", s=s, edges=reports.edges(db), charts=charts, window=window,
                           windows=list(WINDOWS), oldest=present.age_words(s["oldest_age_s"]))
