"""Errors of the review station.

    qcloop.errors.QcError
    └── StationError               the station cannot do what was asked
        ├── StoreError             the SQLite store cannot read or write
        │   ├── ReviewNotFound     no review with that id
        │   ├── AlreadyDecided     the review already has a counting verdict (or needs another reviewer)
        │   └── UndoRefused        nothing of this user's is undoable (too old, confirmed, none)
        ├── AuthError              a login, user or API token is refused
        │   └── WeakSecretError    a password/PIN is too short or a known default
        └── UnsafeConfigError      production mode refuses to start (e.g. a default password exists)

Library errors (sqlite3, paho) are translated here with ``raise ... from exc``.
"""
from qcloop.errors import QcError


class StationError(QcError):
    """The station cannot do what was asked."""


class StoreError(StationError):
    """The SQLite store cannot read or write."""


class ReviewNotFound(StoreError):
    """No review with that id."""


class AlreadyDecided(StoreError):
    """The review already has a counting verdict, or it needs a different second reviewer."""


class UndoRefused(StoreError):
    """There is no verdict of this user that may still be undone."""


class AuthError(StationError):
    """A login, user or API token is refused."""


class WeakSecretError(AuthError):
    """A password or PIN is too short or a known default."""


class UnsafeConfigError(StationError):
    """Production mode refuses to start with this configuration or database."""
