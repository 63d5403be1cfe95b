"""Graph's timestamps: always timezone-aware ISO 8601 out, any ISO 8601 with an offset in."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_FRACTION = re.compile(r"\.(\d{6})\d+")


def to_iso(epoch_seconds: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp with an explicit offset (Graph rejects naive ones)."""
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="seconds")


def parse_iso(value: str) -> float:
    """Epoch seconds of a Graph timestamp (``Z`` or an offset, up to seven fractional digits)."""
    moment = datetime.fromisoformat(_FRACTION.sub(r".\1", value.strip()))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
