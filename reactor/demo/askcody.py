"""An embedded AskCody stand-in: the real scim2-server (RFC 7643 schemas with the enterprise User
extension, in-memory storage) as an ASGI app that refuses requests without the bearer token."""

from __future__ import annotations

from typing import Any

from scim2_models import Bulk, ETag, ScimProvider
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.memory import AsyncInMemoryStorage
from scim2_server.requests import ScimRequest
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import load_default_resource_types, load_default_schemas, load_default_service_provider_config


class BearerTokenASGIApplication(ASGIApplication):
    """scim2-server's ASGI application, refusing requests without one of the bearer tokens (401)."""

    def __init__(self, storage: AsyncInMemoryStorage, provider: ScimProvider, bearer_tokens: set[str]) -> None:
        super().__init__(storage, provider)
        self.bearer_tokens = bearer_tokens

    def check_auth(self, request: ScimRequest) -> None:
        BearerTokenApplication.check_auth(self, request)  # type: ignore[arg-type]


def build_scim_application(token: str, *, bulk: bool = True, etag: bool = True) -> Any:
    """What ``scim2-server --bearer-token TOKEN`` serves, as an in-memory ASGI app; without ``bulk``
    its ServiceProviderConfig says that bulk requests are not supported (as a server without them),
    without ``etag`` that resources carry no version (no ``meta.version``, no ``ETag``; an
    ``If-Match`` naming a version then fails, 412)."""
    config = load_default_service_provider_config()
    if not bulk:
        config.bulk = Bulk(supported=False, max_operations=0, max_payload_size=0)
    if not etag:
        config.etag = ETag(supported=False)
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    return BearerTokenASGIApplication(AsyncInMemoryStorage(), provider, {token})
