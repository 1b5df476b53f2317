"""The order of model versions, one rule for every part: which is newer, how tables sort them.

Natural order: "0.9.0" < "0.10.0"; runs of digits compare as numbers, other runs as text, and
numbers sort before text at the same position, so "1.0.0" < "1.0.0-builtin" < "1.0.1".
"""

from __future__ import annotations

import re


def version_key(version: str) -> tuple:
    """The sort key of ``version`` in natural order (module docstring)."""
    parts = re.findall(r"\d+|[^\d.\-+_]+", version)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def is_newer(a: str, b: str) -> bool:
    """True when version ``a`` sorts after version ``b``."""
    return version_key(a) > version_key(b)
