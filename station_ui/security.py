"""Request-level safety: the logged-in user, roles, idle logout, CSRF and the login rate limit.

The CSRF token lives in the (signed, HttpOnly) session and must come back with
every state-changing request: as the ``csrf_token`` form field or the
``X-CSRF-Token`` header for JSON. The token-authenticated export API takes no
cookies, so it needs no CSRF token.
"""
from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, g, jsonify, redirect, request, session, url_for

from station_ui import accounts
from station_ui.accounts import User
from station_ui.db import get_db

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    if request.method not in UNSAFE or (request.blueprint == "api"):
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    want = session.get("csrf", "")
    if not want or not sent or not hmac.compare_digest(str(sent), str(want)):
        abort(400, description="CSRF token missing or wrong: reload the page and try again")


#: Sent by the review page's script on requests no person asked for (static/review.js).
BACKGROUND_HEADER = "X-QC-Background"


def load_user() -> None:
    """Set g.user from the session; end the session after the idle timeout, or when the database says it
    ended (logout elsewhere, a role or password change, a disabled user): sessions are versioned per user."""
    g.user = None
    name, role = session.get("user"), session.get("role")
    if not name or not role:
        return
    if accounts.current_session(get_db(), name) != (role, session.get("sv")):  # one read per request
        session.clear()
        return
    idle = current_app.extensions["station"].cfg.web.idle_logout_s
    now = time.time()
    if now - float(session.get("seen", 0)) > idle:
        session.clear()
        g.logged_out_idle = True
        return
    # Only a person's input is activity: not an open event stream, nor the page's own fetch after an event.
    if request.endpoint != "review.events" and BACKGROUND_HEADER not in request.headers:
        session["seen"] = now
    g.user = User(name, role)


def login_user(user: User) -> None:
    session.clear()  # a fresh session on login: no fixation of a pre-login session
    session["user"], session["role"], session["seen"] = user.name, user.role, time.time()
    session["sv"] = accounts.session_version(get_db(), user.name)
    csrf_token()


def require(role: str = "operator") -> Callable:
    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*a: Any, **kw: Any) -> Any:
            if g.user is None:
                if request.accept_mimetypes.best == "application/json" or request.is_json:
                    return jsonify(error="not logged in"), 401
                return redirect(url_for("auth.login", next=request.full_path))
            if not g.user.can(role):
                abort(403, description=f"this page needs the {role} role")
            return view(*a, **kw)
        return inner
    return wrap


class LoginLimiter:
    """Failed logins in a sliding window: per (address, user name), and per address across all names (a
    guesser rotating names is stopped too); over either limit -> 429. What it keeps is bounded: a name is
    cut to the longest a user may have, empty entries go, and at most ``max_keys`` entries are kept (the
    least recently failed go first)."""

    def __init__(self, attempts: int, window_s: float, per_address: int | None = None, max_keys: int = 10_000):
        self.attempts, self.window_s = attempts, window_s
        self.per_address = per_address if per_address is not None else 4 * attempts
        self.max_keys = max_keys
        self._fails: OrderedDict[tuple[str, str], deque] = OrderedDict()  # (addr, name) or (addr, "") for all
        self._lock = threading.Lock()

    def _trim(self, key: tuple[str, str], now: float) -> deque:
        q = self._fails.get(key) or deque()
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            self._fails.pop(key, None)
        return q

    def blocked(self, addr: str, name: str) -> float:
        """Seconds until the next try is allowed (0 when allowed)."""
        now = time.monotonic()
        with self._lock:
            waits = [0.0]
            for key, limit in (((addr, _key_name(name)), self.attempts), ((addr, ""), self.per_address)):
                q = self._trim(key, now)
                if len(q) >= limit:
                    waits.append(q[0] + self.window_s - now)
            return max(waits)

    def failed(self, addr: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in ((addr, _key_name(name)), (addr, "")):
                self._fails.setdefault(key, deque()).append(now)
                self._fails.move_to_end(key)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    @property
    def entries(self) -> int:
        with self._lock:
            return len(self._fails)

    def succeeded(self, addr: str, name: str) -> None:
        with self._lock:
            self._fails.pop((addr, _key_name(name)), None)


def _key_name(name: str) -> str:
    """A name as the limiter counts it: case-folded, cut to the longest a user may have (accounts)."""
    return "n:" + name.lower()[:64]
