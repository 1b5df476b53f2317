"""Users, roles, secrets and API tokens.

Passwords and PINs are hashed with scrypt (memory-hard, in the standard library)
with a per-user salt; API tokens are random and only their SHA-256 is stored, so a
copied database gives away neither. Operators may use a short numeric PIN on the
touchscreen; engineers and admins need a password. Known default secrets are
refused in production, and production refuses to start while any user has one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass

from station_ui.errors import AuthError, StoreError, UnsafeConfigError, WeakSecretError
from station_ui.store import Store

ROLES = ("operator", "engineer", "admin")
#: Secrets that ship in manuals, stickers and habits; never accepted in production.
KNOWN_DEFAULTS = ("admin", "password", "changeme", "station", "qcloop", "operator", "engineer",
                  "0000", "1111", "1234", "12345", "123456", "admin123", "password1")
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        """True when this user's role is at least ``role`` (operator < engineer < admin)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(secret.encode(), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(dk).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, dk = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(dk)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def check_secret(role: str, secret: str, production: bool = True) -> None:
    """Raise WeakSecretError when the secret does not fit the role (or is a known default)."""
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if production and secret.lower() in KNOWN_DEFAULTS:
        raise WeakSecretError("that password/PIN is a known default; choose another")
    if role == "operator" and secret.isdigit():
        if len(secret) < 4:
            raise WeakSecretError("an operator PIN needs at least 4 digits")
        return
    if len(secret) < 10:
        raise WeakSecretError(f"{'an' if role[0] in 'aeiou' else 'a'} {role} password needs at least 10 characters"
                              + (" (or a PIN of 4+ digits for an operator)" if role == "operator" else ""))


def add_user(store: Store, name: str, role: str, secret: str, *, by: str = "cli", production: bool = True) -> User:
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AuthError(f"user name {name!r} must be 1..64 letters, digits, '-', '_' or '.'")
    check_secret(role, secret, production)
    try:
        with store.write() as conn:
            # A new role or secret ends the user's open sessions (session_version moves), and enables the user.
            conn.execute("INSERT INTO users (name, role, secret_hash, created_at) VALUES (?,?,?,?)"
                         " ON CONFLICT(name) DO UPDATE SET role = excluded.role, secret_hash = excluded.secret_hash,"
                         " session_version = session_version + 1, disabled = 0",
                         (name, role, hash_secret(secret), time.time()))
            store._audit(conn, by, "user-set", name, {"role": role})
    except sqlite3.Error as exc:
        raise StoreError(f"cannot store user {name!r}: {exc}") from exc
    return User(name, role)


def get_user(store: Store, name: str) -> User | None:
    row = store.conn.execute("SELECT name, role FROM users WHERE name = ? AND disabled = 0", (name,)).fetchone()
    return User(row["name"], row["role"]) if row else None


def authenticate(store: Store, name: str, secret: str) -> User | None:
    row = store.conn.execute("SELECT name, role, secret_hash, disabled FROM users WHERE name = ?", (name,)).fetchone()
    if row is None:
        verify_secret(secret, _DUMMY_HASH)  # same work for unknown names: no user enumeration by timing
        return None
    if not verify_secret(secret, row["secret_hash"]) or row["disabled"]:
        return None
    return User(row["name"], row["role"])


def session_version(store: Store, name: str) -> int | None:
    """The number a live session of ``name`` must carry; None when the user is gone or disabled."""
    session = current_session(store, name)
    return None if session is None else session[1]


def current_session(store: Store, name: str) -> tuple[str, int] | None:
    """(role, session version) a live session of ``name`` must match, in one read; None when gone or disabled."""
    row = store.conn.execute("SELECT role, session_version FROM users WHERE name = ? AND disabled = 0",
                             (name,)).fetchone()
    return None if row is None else (row["role"], int(row["session_version"]))


def end_sessions(store: Store, name: str, *, by: str, why: str) -> None:
    """End every open session of ``name`` (logout, or an engineer's decision)."""
    with store.write() as conn:
        conn.execute("UPDATE users SET session_version = session_version + 1 WHERE name = ?", (name,))
        store._audit(conn, by, "sessions-ended", name, {"why": why})


def disable_user(store: Store, name: str, *, by: str = "cli") -> None:
    """Refuse ``name`` from now on: no login, and every open session ends at its next request."""
    with store.write() as conn:
        changed = conn.execute("UPDATE users SET disabled = 1, session_version = session_version + 1 WHERE name = ?",
                               (name,)).rowcount
        if not changed:
            raise AuthError(f"no user named {name!r}")
        store._audit(conn, by, "user-disabled", name, {})


def users_with_default_secret(store: Store) -> list[str]:
    bad = []
    for row in store.conn.execute("SELECT name, secret_hash FROM users"):
        if any(verify_secret(d, row["secret_hash"]) for d in KNOWN_DEFAULTS + (row["name"],)):
            bad.append(row["name"])
    return bad


def refuse_unsafe_production(store: Store) -> None:
    bad = users_with_default_secret(store)
    if bad:
        raise UnsafeConfigError(f"production mode refuses to start: user(s) {', '.join(bad)} have a known default "
                                "password; set new ones with 'qc station add-user NAME --role ROLE'")


# ------------------------------------------------------------------ API tokens
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(store: Store, name: str, by: str = "cli") -> str:
    """Create a token, store its hash, and return the token (shown once)."""
    token = "qct_" + secrets.token_urlsafe(32)
    try:
        with store.write() as conn:
            conn.execute("INSERT INTO api_tokens (name, token_hash, created_at) VALUES (?,?,?)",
                         (name, token_hash(token), time.time()))
            store._audit(conn, by, "token-add", name)
    except sqlite3.IntegrityError as exc:
        raise AuthError(f"an API token named {name!r} already exists") from exc
    return token


def revoke_token(store: Store, name: str, by: str = "cli") -> None:
    """Revoke the API token called ``name``; the export API refuses it from the next request on."""
    with store.write() as conn:
        changed = conn.execute("UPDATE api_tokens SET revoked = 1 WHERE name = ? AND revoked = 0", (name,)).rowcount
        if not changed:
            known = [r[0] for r in conn.execute("SELECT name FROM api_tokens WHERE revoked = 0 ORDER BY name")]
            raise AuthError(f"no active API token named {name!r}; active: {', '.join(known) or 'none'}")
        store._audit(conn, by, "token-revoke", name)


def check_token(store: Store, token: str) -> str | None:
    """Return the token's name when it is valid and not revoked."""
    if not token:
        return None
    row = store.conn.execute("SELECT name FROM api_tokens WHERE token_hash = ? AND revoked = 0",
                             (token_hash(token),)).fetchone()
    return row["name"] if row else None


_DUMMY_HASH = hash_secret(secrets.token_hex(8))
