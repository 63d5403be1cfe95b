"""Many Graph GETs in few requests: JSON batching (``POST /$batch``, at most 20 requests a batch).

Graph answers a batch with one response per request, in any order, each with its own status: a
batch can succeed while some of its requests are throttled (429 with ``Retry-After``) or failed
(5xx). :func:`get_many` sends the requests again that may pass (429, 408, 5xx), waiting as the
longest ``Retry-After`` says (or the policy's backoff), for at most ``policy.attempts`` rounds; a
404 is an answer (``None``); any other failure raises the error of the project's one mapping
(:func:`reactor.errors.error_for_status`). The ``POST /$batch`` itself is retried like any
idempotent call (it only carries GETs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reactor import retry as retry_mod
from reactor.errors import NotFoundError, TransientError, error_for_status
from reactor.retry import RetryPolicy, parse_retry_after

MAX_REQUESTS = 20
"""Graph's limit of requests in one batch."""


class BatchClient(Protocol):
    retry: RetryPolicy

    async def post_json(
        self, path: str, body: Mapping[str, Any] | None = None, *, operation: str = "post", retry: bool = False
    ) -> dict[str, Any]: ...


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    for k, v in headers.items():
        if str(k).lower() == name:
            return str(v)
    return None


async def get_many(client: BatchClient, paths: Sequence[str], *, operation: str = "batch") -> dict[str, dict[str, Any] | None]:
    """GET every relative ``path`` (``users/{id}?$select=…``) through ``$batch``; the body of each, or
    ``None`` for a 404. Raises the mapped error of a request that failed for good."""
    results: dict[str, dict[str, Any] | None] = {}
    pending = list(dict.fromkeys(paths))
    policy = client.retry
    attempt = 0
    while pending:
        attempt += 1
        retry_later: list[str] = []
        waits: list[float] = []
        errors: list[TransientError] = []
        last: TransientError | None = None
        for start in range(0, len(pending), MAX_REQUESTS):
            chunk = pending[start : start + MAX_REQUESTS]
            body = {"requests": [{"id": str(i), "method": "GET", "url": "/" + p.lstrip("/")} for i, p in enumerate(chunk)]}
            answer = await client.post_json("$batch", body, operation=operation, retry=True)
            by_id = {str(i): p for i, p in enumerate(chunk)}
            seen: set[str] = set()
            for r in answer.get("responses") or ():
                path = by_id.get(str(r.get("id"))) if isinstance(r, dict) else None
                if path is None:
                    continue
                seen.add(path)
                status = int(r.get("status") or 0)
                if 200 <= status < 300:
                    results[path] = r.get("body") if isinstance(r.get("body"), dict) else {}
                    continue
                text = f"Graph GET /{path.split('?')[0]} (in a batch): {status}"
                error = error_for_status(status, text, retry_after=parse_retry_after(_header(r.get("headers"), "retry-after")))
                if isinstance(error, NotFoundError):
                    results[path] = None
                elif isinstance(error, TransientError):
                    retry_later.append(path)
                    errors.append(error)
                    last = error
                    ra = getattr(error, "retry_after", None)
                    if ra:
                        waits.append(float(ra))
                else:
                    raise error
            # A request the batch did not answer at all is asked again.
            missing = [p for p in chunk if p not in seen]
            if missing:
                retry_later.extend(missing)
                last = TransientError(f"Graph $batch left {len(missing)} request(s) unanswered")
        pending = retry_later
        if not pending:
            break
        if attempt >= policy.attempts:
            assert last is not None
            for error in errors:
                retry_mod.failed_attempt(attempt, "graph", error, None)
            raise last
        delay = min(max(waits) if waits else policy.backoff(attempt), policy.horizon)
        for error in errors:  # each request asked again is a retry, as the client counts and logs them
            retry_mod.failed_attempt(attempt, "graph", error, delay)
        if not retry_mod.TESTING:
            await asyncio.sleep(delay)  # Graph asked us to hold back, not a wait for work
    return results
