"""One store connection per request (``get_db()``), closed at teardown; ``init_app`` wires it up.

Follows Flask's tutorial layout: the database is opened lazily on first use in a
request and closed when the app context ends. Migrations run once, when the app
is created, not per request.
"""
from __future__ import annotations

import click
from flask import Flask, current_app, g

from station_ui.store import Store


def get_db() -> Store:
    if "db" not in g:
        cfg = current_app.extensions["station"].cfg
        g.db = Store(cfg.db_path, migrate=False, station=cfg.station.name, queue_verdicts=cfg.mqtt.enabled)
    return g.db


def close_db(exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(migrate_command)


@click.command("migrate")
def migrate_command() -> None:
    """Apply pending schema migrations to the station database."""
    from station_ui import migrations

    db = get_db()
    migrations.migrations.apply(db.db)
    click.echo(f"schema version {migrations.schema_version(db.db)}")
