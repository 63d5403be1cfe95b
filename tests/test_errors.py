"""One status → error rule for Graph and AskCody (reactor.errors.error_for_status), as each client
applies it to a real answer's status and headers."""

from __future__ import annotations

import pytest
from kiota_abstractions.api_error import APIError

from reactor.errors import (
    ConflictError,
    NotFoundError,
    PermanentError,
    ReactorError,
    ThrottledError,
    TransientError,
)
from reactor.graph.client import map_api_error
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
    api = APIError()
    api.response_status_code = status
    api.response_headers = {"Retry-After": retry_after} if retry_after else {}
    graph = map_api_error(api, method="GET", url="https://graph.microsoft.com/v1.0/users/x")
    _, scim = _classify("GET /Users", status, b'{"detail": "no"}', retry_after)
    for error in (graph, scim):
        assert type(error) is expected or (expected is PermanentError and type(error) is ScimError), (status, error)
        if isinstance(error, ThrottledError):
            assert error.retry_after == (float(retry_after) if retry_after else None)
        assert getattr(error, "status", status) == status
