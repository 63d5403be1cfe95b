"""The reactor's exception tree, drawn once.

    ReactorError
    ├── ConfigurationError      bad settings or mapping; fix the configuration (CLI exit 2)
    ├── TransientError          retry with backoff: 429, 5xx, timeouts, connection errors
    │   └── ThrottledError      carries ``retry_after`` (seconds) from a ``Retry-After`` header
    ├── PermanentError          retrying cannot help; the change goes to the dead letters
    │   └── NotFoundError       the remote object is gone (404)
    ├── ConflictError           the remote already has it (409): look up and adopt
    ├── DeltaTokenExpired       a stored delta link is no longer accepted: start a full sync
    ├── StoreError              the store (SQLite or PostgreSQL) could not read or write
    └── LeadershipLost          a write of the leader's (subscriptions) after its lease moved on

Code that talks to Graph or AskCody maps every failure into this tree, so that the retry policy
(``reactor.retry``) and the dead-letter decision look at one type, never at a status code. HTTP
answers are mapped by one function for both, :func:`error_for_status`.
"""

from __future__ import annotations

from collections.abc import Callable


class ReactorError(Exception):
    """Base of every error the reactor raises on purpose."""


class ConfigurationError(ReactorError):
    """The configuration or the group mapping is invalid."""


class TransientError(ReactorError):
    """A failure that may pass: retry with backoff."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ThrottledError(TransientError):
    """The remote asked us to slow down (429, or 503 with ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: float | None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PermanentError(ReactorError):
    """A failure that retrying cannot mend (a 4xx other than 404/409/429)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(PermanentError):
    """The remote object does not exist (404)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


class ConflictError(ReactorError):
    """The remote object exists already (409)."""


class DeltaTokenExpired(ReactorError):
    """A delta link was refused (410 Gone, ``syncStateNotFound``): a full sync is needed."""


class StoreError(ReactorError):
    """The store failed (its message names no secret)."""


class LeadershipLost(ReactorError):
    """A write fenced by the leader lease was refused: another replica leads now (or the lease
    expired), so this one must stop doing the leader's work (see ``reactor.coordination``)."""


def error_for_status(
    status: int,
    text: str,
    *,
    retry_after: float | None = None,
    permanent: Callable[[str, int], ReactorError] | None = None,
) -> ReactorError:
    """The error for an HTTP answer that is not a success, the same for Graph and AskCody:

    ==========================  =====================================================
    429                         ThrottledError (``retry_after`` when the answer gave one)
    503 with ``Retry-After``    ThrottledError
    408, 5xx but 501            TransientError (a 503 without ``Retry-After`` too)
    404                         NotFoundError
    409                         ConflictError
    other 4xx, 501              ``permanent(text, status)`` (default PermanentError)
    ==========================  =====================================================
    """
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledError(text, retry_after=retry_after, status=status)
    if status == 408 or (status >= 500 and status != 501):
        return TransientError(text, status=status)
    if status == 404:
        return NotFoundError(text)
    if status == 409:
        return ConflictError(text)
    if permanent is not None:
        return permanent(text, status)
    return PermanentError(text, status=status)
