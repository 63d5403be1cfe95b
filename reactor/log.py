"""Structured logs: one JSON line per event, with the object ids involved and never a secret.

Callers pass plain values; anything that is a :class:`~reactor.config.Secret` is redacted, and so is
every key whose name says it holds a secret.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from reactor.secret import Secret

_LOGGER = logging.getLogger("reactor")
_SECRET_WORDS = ("token", "secret", "password", "clientstate", "client_state", "authorization")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            return orjson.dumps(fields, default=str).decode()
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": "log",
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


HEADER_LOGGERS = ("azure", "httpx", "httpcore", "hpack", "h2", "hyperframe", "kiota", "msal", "urllib3", "aiohttp.client")
"""Loggers kept at WARNING or above at every ``log_level``: they can write headers or tokens."""


def configure(level: str = "info", stream: Any = None) -> None:
    """Send every log line (ours and the libraries') as JSON to ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    # Libraries that log request headers (hpack and h2 write HTTP/2 header blocks, bearer tokens
    # included, at debug): at WARNING whatever log_level says.
    for noisy in HEADER_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _LOGGER.handlers[:] = []
    _LOGGER.setLevel(logging.NOTSET)
    _LOGGER.propagate = True


def _clean(key: str, value: Any) -> Any:
    if isinstance(value, Secret):
        return "<redacted>"
    if any(w in key.lower().replace("-", "_") for w in _SECRET_WORDS) and value:
        return "<redacted>"
    if isinstance(value, dict):
        return {k: _clean(str(k), v) for k, v in value.items()}
    return value


def enabled(level: str) -> bool:
    """Whether lines of ``level`` are written (to skip building costly fields)."""
    return _LOGGER.isEnabledFor(_LEVELS.get(level, logging.INFO))


def event(name: str, *, level: str = "info", **fields: Any) -> None:
    """Log one event as a JSON line: ``{"ts", "level", "event", ...fields}``."""
    lvl = _LEVELS.get(level, logging.INFO)
    if not _LOGGER.isEnabledFor(lvl):
        return
    record = {"ts": round(time.time(), 3), "level": level, "event": name}
    record.update({k: _clean(k, v) for k, v in fields.items()})
    _LOGGER.log(lvl, name, extra={"fields": record})
