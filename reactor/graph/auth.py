"""Authentication for Graph: a static bearer token (simulators, tests) or an azure-identity credential.

The token is only ever attached to requests for the host of ``graph.base_url`` (an ``@odata.nextLink``
to any other host goes out without it), and plain ``http`` is refused except on loopback, as
msgraph-sdk's own Azure provider does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    AuthenticationProvider,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_authentication_azure.azure_identity_access_token_provider import AzureIdentityAccessTokenProvider

from reactor.config import GraphSettings
from reactor.errors import ConfigurationError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_base_url(base_url: str) -> str:
    """Return the host of ``base_url``; raise ConfigurationError unless it is https (or http on loopback)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("http", "https"):
        raise ConfigurationError(f"graph.base_url is not a valid http(s) URL: {base_url!r}")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ConfigurationError("graph.base_url must be https (plain http only for localhost, 127.0.0.1, ::1)")
    return host


def scope_for(base_url: str) -> str:
    """The ``.default`` scope of the Graph instance behind ``base_url`` (national clouds included)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}/.default"


class StaticTokenProvider(AccessTokenProvider):
    """Hands out one fixed bearer token for requests to the allowed host."""

    def __init__(self, token: str, allowed_host: str) -> None:
        self._token = token
        self._validator = AllowedHostsValidator([allowed_host])

    def __repr__(self) -> str:
        return "StaticTokenProvider(<redacted>)"

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] = {}) -> str:  # noqa: B006
        parts = urlsplit(uri)
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            return ""
        if not self._validator.is_url_host_valid(uri):
            return ""
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator


def build_credential(settings: GraphSettings) -> AsyncTokenCredential:
    """The azure-identity (aio) credential named by the settings: secret, certificate, else the default chain.

    ``authority`` selects the national cloud's login host. With neither a secret nor a certificate,
    :class:`~azure.identity.aio.DefaultAzureCredential` is used (managed identity first in Azure, with
    ``client_id`` as the user-assigned identity when given).
    """
    from azure.identity.aio import CertificateCredential, ClientSecretCredential, DefaultAzureCredential

    authority = settings.authority.removeprefix("https://").rstrip("/")
    if settings.client_secret:
        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret.reveal(), authority=authority
        )
    if settings.certificate_path:
        return CertificateCredential(
            settings.tenant_id, settings.client_id, certificate_path=settings.certificate_path, authority=authority
        )
    return DefaultAzureCredential(
        authority=authority,
        managed_identity_client_id=settings.client_id or None,
        exclude_interactive_browser_credential=True,
    )


def build_auth_provider(
    settings: GraphSettings, credential: AsyncTokenCredential | None = None
) -> tuple[AuthenticationProvider, AsyncTokenCredential | None]:
    """An authentication provider for the request adapter, and the credential it created (to close), if any."""
    host = check_base_url(settings.base_url)
    if settings.token and credential is None:
        return BaseBearerTokenAuthenticationProvider(StaticTokenProvider(settings.token.reveal(), host)), None
    owned = build_credential(settings) if credential is None else None
    cred = credential if credential is not None else owned
    assert cred is not None
    provider = AzureIdentityAccessTokenProvider(cred, None, [scope_for(settings.base_url)], [host])
    return BaseBearerTokenAuthenticationProvider(provider), owned
