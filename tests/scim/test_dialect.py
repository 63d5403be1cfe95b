"""The request forms of both dialects, as a tiny recording server receives them.

scim2-server is strict RFC 7644 and refuses the entra dialect's member removal, so the entra forms are
checked here, on the bytes sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from reactor.config import AskCodySettings, Dialect
from reactor.domain.model import UserAttributes
from reactor.ratelimit import TokenBucket
from reactor.scim import AskCodyClient, ScimError
from reactor.scim.resources import ENTERPRISE_USER, PATCH_OP
from tests.support.servers import serve_asgi

TOKEN = "s3cr3t-token-value"
ATTRS = UserAttributes("alice@contoso.com", "e-1", "Alice Jensen", "Alice", "Jensen", "alice@contoso.com", "CC-1")


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """An ASGI app that records each request and answers like a minimal SCIM server."""

    requests: list[Recorded] = field(default_factory=list)
    answers: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].removeprefix("/scim/v2")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            Recorded(scope["method"], path, scope["query_string"].decode(), headers, json.loads(raw) if raw else None)
        )
        status, body = self.answers.get((scope["method"], path), self.default(scope["method"]))
        payload = b"" if body is None else json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/scim+json")]})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    def default(method: str) -> tuple[int, Any]:
        if method == "POST":
            return 201, {"id": "new-id", "userName": "alice@contoso.com"}
        if method == "GET":
            return 200, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0, "Resources": []}
        return 204, None

    def last(self) -> Recorded:
        return self.requests[-1]


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    app = Recorder()
    async with serve_asgi(app) as root:
        yield app, root + "/scim/v2"


@pytest.fixture
def make_client(
    recorder: tuple[Recorder, str], settings_for: Callable[..., AskCodySettings]
) -> Callable[[Dialect], AskCodyClient]:
    def make(dialect: Dialect) -> AskCodyClient:
        return AskCodyClient(settings_for(recorder[1], TOKEN, dialect), TokenBucket(10_000))

    return make


async def test_entra_dialect_bodies(recorder: tuple[Recorder, str], make_client: Callable[[Dialect], AskCodyClient]) -> None:
    app, _ = recorder
    async with make_client("entra") as client:
        await client.set_active("u-1", False)
        assert app.last().body == {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
        await client.set_active("u-1", True)
        assert app.last().body["Operations"] == [{"op": "Replace", "path": "active", "value": "True"}]

        await client.remove_members("g-1", ["u-1", "u-2"])
        assert (app.last().method, app.last().path) == ("PATCH", "/Groups/g-1")
        assert app.last().body["Operations"] == [
            {"op": "Remove", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]}
        ]

        await client.add_members("g-1", ["u-1", "u-2", "u-1"])
        assert app.last().body["Operations"] == [{"op": "Add", "path": "members", "value": [{"value": "u-1"}, {"value": "u-2"}]}]

        await client.update_user("u-1", {"email": "new@contoso.com", "cost_center": "CC-2", "given_name": None})
        assert app.last().body["Operations"] == [
            {"op": "Replace", "path": f"{ENTERPRISE_USER}:costCenter", "value": "CC-2"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@contoso.com"},
            {"op": "Remove", "path": "name.givenName"},
        ]


async def test_rfc_dialect_bodies(recorder: tuple[Recorder, str], make_client: Callable[[Dialect], AskCodyClient]) -> None:
    app, _ = recorder
    async with make_client("rfc") as client:
        await client.set_active("u-1", False)
        assert app.last().body["Operations"] == [{"op": "replace", "path": "active", "value": False}]
        await client.remove_members("g-1", ["u-1", 'we"ird'])
        assert app.last().body["Operations"] == [
            {"op": "remove", "path": 'members[value eq "u-1"]'},
            {"op": "remove", "path": 'members[value eq "we\\"ird"]'},
        ]
        await client.update_user("u-1", {"email": "new@contoso.com"})
        assert app.last().body["Operations"] == [
            {"op": "replace", "path": "emails", "value": [{"type": "work", "value": "new@contoso.com", "primary": True}]}
        ]


async def test_create_body_and_headers(recorder: tuple[Recorder, str], make_client: Callable[[Dialect], AskCodyClient]) -> None:
    app, _ = recorder
    async with make_client("entra") as client:
        created, _ = await client.create_user(ATTRS, active=True)
    assert created.id == "new-id"
    sent = app.last()
    assert (sent.method, sent.path) == ("POST", "/Users")
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["content-type"] == "application/scim+json"
    assert sent.headers["accept"] == "application/scim+json"
    assert sent.body == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
        "externalId": "e-1",
        "userName": "alice@contoso.com",
        "name": {"givenName": "Alice", "familyName": "Jensen"},
        "displayName": "Alice Jensen",
        "active": True,
        "emails": [{"value": "alice@contoso.com", "type": "work", "primary": True}],
        ENTERPRISE_USER: {"costCenter": "CC-1"},
    }


async def test_lookup_filters(recorder: tuple[Recorder, str], make_client: Callable[[Dialect], AskCodyClient]) -> None:
    app, _ = recorder
    async with make_client("rfc") as client:
        assert await client.find_user("e-1", "alice@contoso.com", "alice@contoso.com") is None
    from urllib.parse import parse_qs

    filters = [parse_qs(r.query)["filter"][0] for r in app.requests]
    assert filters == [
        'externalId eq "e-1" or userName eq "alice@contoso.com" or emails[type eq "work"].value eq "alice@contoso.com"'
    ]


async def test_errors_carry_the_scim_detail_never_the_token(
    recorder: tuple[Recorder, str], make_client: Callable[[Dialect], AskCodyClient]
) -> None:
    app, _ = recorder
    app.answers[("PATCH", "/Users/u-1")] = (
        400,
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400", "scimType": "mutability", "detail": "no"},
    )
    async with make_client("rfc") as client:
        with pytest.raises(ScimError) as info:
            await client.set_active("u-1", False)
    assert str(info.value) == "PATCH /Users/u-1: 400 mutability: no"
    assert TOKEN not in repr(info.value) and TOKEN not in repr(client.settings)


CHANGES: list[dict[str, str | None]] = [
    {"cost_center": "CC-1"},
    {"cost_center": "Kostenstelle \"Nord\" 4711", "display_name": "Zoë O'Brien-Łukasiewicz"},
    {"display_name": "山田 太郎", "given_name": "太郎", "family_name": None},
    {"cost_center": None, "user_name": "ngozi.okafor@contoso.onmicrosoft.com"},
    {"email": "ngozi@contoso.co.uk", "cost_center": "NG-7"},
    {"email": None},
]


@pytest.mark.parametrize("dialect", ["rfc", "entra"])
def test_a_patch_of_a_shape_seen_before_is_what_scim2_models_makes_of_it(dialect: Dialect) -> None:
    """The second PATCH of a shape is written directly, without validating it again: it must be the
    very body scim2-models validates and dumps, whatever the values (quotes, scripts, removals)."""
    from reactor.scim import dialect as forms

    for changes in CHANGES:
        forms._PLAIN_SHAPES.clear()
        validated = forms.replace_attributes(changes, dialect)
        has_list = changes.get("email") is not None and dialect == "rfc"  # the rfc form replaces ``emails`` whole
        assert any(forms._PLAIN_SHAPES.values()) is not has_list  # remembered, unless a value is a list
        assert forms.replace_attributes(changes, dialect) == validated
        other = {name: (None if value is None else value + " (2)") for name, value in changes.items()}
        written = forms.replace_attributes(other, dialect)  # the same shape, other values
        forms._PLAIN_SHAPES.clear()
        assert written == forms.replace_attributes(other, dialect)
    for active in (True, False):
        forms._PLAIN_SHAPES.clear()
        assert forms.set_active(active, dialect) == forms.set_active(active, dialect)
        assert forms.set_active(active, dialect)["Operations"][0]["value"] == (
            active if dialect == "rfc" else str(active))
