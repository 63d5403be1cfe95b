"""One status → error rule for Graph and AskCody (reactor.errors.error_for_status), as each client
applies it to a real answer's status and headers."""

from __future__ import annotations

import pytest

from reactor.errors import (
    ConflictError,
    DeltaTokenExpired,
    NotFoundError,
    PermanentError,
    ReactorError,
    ThrottledError,
    TransientError,
)
from reactor.graph.client import map_graph_error
from reactor.scim.client import ScimError, _classify

CASES: list[tuple[int, str | None, type[ReactorError]]] = [
    (429, "3", ThrottledError),
    (429, None, ThrottledError),
    (503, "2", ThrottledError),
    (503, None, TransientError),
    (500, None, TransientError),
    (502, None, TransientError),
    (504, None, TransientError),
    (408, None, TransientError),
    (501, None, PermanentError),
    (404, None, NotFoundError),
    (409, None, ConflictError),
    (400, None, PermanentError),
    (401, None, PermanentError),
    (403, None, PermanentError),
]


@pytest.mark.parametrize(("status", "retry_after", "expected"), CASES)
def test_graph_and_scim_map_a_status_to_the_same_error(status: int, retry_after: str | None, expected: type) -> None:
    body = b'{"error": {"code": "SomeCode", "message": "no"}}'
    graph = map_graph_error(status, body, method="GET", url="https://graph.microsoft.com/v1.0/users/x", retry_after=retry_after)
    _, scim = _classify("GET /Users", status, b'{"detail": "no"}', retry_after)
    for error in (graph, scim):
        assert type(error) is expected or (expected is PermanentError and type(error) is ScimError), (status, error)
        if isinstance(error, ThrottledError):
            assert error.retry_after == (float(retry_after) if retry_after else None)
        assert getattr(error, "status", status) == status


def test_graph_error_text_names_the_code_and_message_and_delta_expiry() -> None:
    body = b'{"error": {"code": "Request_ResourceNotFound", "message": "Resource \'x\' does not exist."}}'
    error = map_graph_error(404, body, method="GET", url="https://graph.microsoft.com/v1.0/users/x?$select=id")
    assert str(error) == "Graph GET /v1.0/users/x: 404 Request_ResourceNotFound: Resource 'x' does not exist."
    assert str(map_graph_error(502, b"<html>bad gateway</html>", method="POST", url="https://g/v1.0/$batch")) == (
        "Graph POST /v1.0/$batch: 502"
    )
    delta = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc"
    assert type(map_graph_error(410, b"", method="GET", url=delta)) is DeltaTokenExpired
    resync = b'{"error": {"code": "SyncStateNotFound", "message": "gone"}}'
    assert type(map_graph_error(400, resync, method="GET", url=delta)) is DeltaTokenExpired
    assert type(map_graph_error(400, resync, method="GET", url="https://g/v1.0/users")) is PermanentError
    assert type(map_graph_error(410, b"", method="GET", url="https://g/v1.0/users/x")) is PermanentError
