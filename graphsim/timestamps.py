"""Graph's timestamp format: ISO 8601 in UTC with seven fractional digits and a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(epoch_seconds: float) -> str:
    """Format epoch seconds the way Graph does, e.g. ``2024-05-01T12:00:00.1234560Z``."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def parse_iso(value: str) -> float:
    """Epoch seconds of a timezone-aware ISO 8601 string; ``ValueError`` when invalid or naive."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{value!r} has no timezone offset")
    return moment.timestamp()
