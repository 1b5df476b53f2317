"""Login and logout. Failed logins are rate limited per address and name (429) and audited."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for

from station_ui import accounts, security
from station_ui.db import get_db

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    state = current_app.extensions["station"]
    error = None
    if g.get("logged_out_idle"):
        error = "You were logged out after a while without activity."
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        secret = request.form.get("secret", "")
        addr = request.remote_addr or "?"
        wait = state.limiter.blocked(addr, name)
        if wait:
            return render_template("login.html", error=f"Too many failed logins. Try again in {wait:.0f} s.",
                                   name=name), 429, {"Retry-After": str(int(wait) + 1)}
        user = accounts.authenticate(get_db(), name, secret)
        if user is None:
            state.limiter.failed(addr, name)
            # Bounded: a name is cut to the longest a user may have, and the limiter stops an address after
            # a few failures, whatever names it tries, so failed logins cannot flood the audit log.
            get_db().audit(_shown(name), "login-failed", detail={"addr": addr[:64], "name_length": len(name)})
            return render_template("login.html", error="Wrong name or PIN/password.", name=name), 401
        state.limiter.succeeded(addr, name)
        security.login_user(user)
        get_db().audit(user.name, "login", detail={"addr": addr})
        return redirect(local_path(request.args.get("next", "")) or url_for("review.page"))
    return render_template("login.html", error=error, name="")


@bp.route("/logout", methods=["POST"])
def logout():
    from flask import session

    if g.user:
        get_db().audit(g.user.name, "logout")
        # Server-side: a copy of this cookie (or another screen still logged in as this person) ends too.
        accounts.end_sessions(get_db(), g.user.name, by=g.user.name, why="logout")
    session.clear()
    flash("Logged out.")
    return redirect(url_for("auth.login"))


def local_path(target: str) -> str | None:
    """``target`` when it is a path on this station, else None: an open redirect would let a link send a
    reviewer to a look-alike page. Parsed, not prefix-checked, and refused outright when it holds what
    browsers strip or turn around before parsing (control characters, spaces, backslashes), so
    ``/\t/evil.example`` cannot become ``//evil.example`` in the browser."""
    if not target or any(c in target for c in "\\ ") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _shown(name: str) -> str:
    """A typed user name as the audit log keeps it: at most the 64 characters a user name may have."""
    return (name[:64] + "...") if len(name) > 64 else (name or "?")
