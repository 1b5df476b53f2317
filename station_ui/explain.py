"""The heat map of where the model looked, asked of the retraining server (training.explain), which has
the models and the edge's preprocessing; the station only passes the frame and keeps the picture."""
from __future__ import annotations

import urllib.error
import urllib.request

from station_ui.config import ExplainSection
from station_ui.errors import StationError


class ExplainError(StationError):
    """The heat map could not be drawn: the retraining server is away, refused, or did not know the model."""


def draw(cfg: ExplainSection, model: str, jpeg: bytes) -> bytes:
    """The PNG overlay for ``jpeg`` as model ``model`` saw it; ExplainError naming what went wrong."""
    if not model:
        raise ExplainError("this frame was not scored by a model: there is nothing to explain")
    try:
        token = cfg.token_file.read_text().strip() if cfg.token_file is not None else ""
    except OSError as exc:
        raise ExplainError(f"cannot read [explain].token_file {cfg.token_file}: {exc}") from exc
    url = f"{cfg.url.rstrip('/')}/explain/{model}"
    request = urllib.request.Request(url, data=jpeg, method="POST", headers={
        "Content-Type": "image/jpeg", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout_s) as reply:
            png = reply.read()
    except urllib.error.HTTPError as exc:
        raise ExplainError(f"the retraining server at {url} answered {exc.code}: {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ExplainError(f"cannot reach the retraining server at {url}: {exc}") from exc
    if not png.startswith(b"\x89PNG"):
        raise ExplainError(f"the retraining server at {url} did not send a PNG")
    return png
