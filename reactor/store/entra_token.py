"""Microsoft Entra access tokens as the PostgreSQL password (``store.entra_auth``).

Azure Database for PostgreSQL accepts an access token of the scope :data:`SCOPE` as the password of
a role mapped to an Entra principal (the Container App's managed identity). A token lives about an
hour or more; a pool opens connections at any time, so :class:`EntraTokenPassword` is handed to
asyncpg as the pool's ``password`` callable: each new connection asks it, it answers with the cached
token, and fetches a new one once the cached one is within ``refresh_before`` seconds of its
``expires_on``. When a refresh fails while the cached token is still valid, that one is used and the
failure logged; when there is no valid token the connection fails with a
:class:`~reactor.errors.StoreError` that names the credential's failure, never a token.

Each fetch uses a credential of its own (``credentials()``, closed after the fetch): no credential
and no HTTP session outlives it, and a fetch happens once per token lifetime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from azure.core.credentials_async import AsyncTokenCredential

from reactor.errors import StoreError
from reactor.log import event
from reactor.secret import Secret

SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
REFRESH_BEFORE_SECONDS = 300.0
# A cached token is still handed out after a failed refresh while it has this much life left.
_STILL_USABLE_SECONDS = 30.0


def default_credential() -> AsyncTokenCredential:
    """The default chain of azure-identity (aio): in Azure the managed identity (``AZURE_CLIENT_ID``
    names a user-assigned one), on a workstation e.g. ``az login``."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


class EntraTokenPassword:
    """An async callable giving the current access token for :data:`SCOPE` (asyncpg's ``password``)."""

    def __init__(
        self,
        credentials: Callable[[], AsyncTokenCredential] = default_credential,
        *,
        refresh_before: float = REFRESH_BEFORE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self.refresh_before = refresh_before
        self._clock = clock
        self._token = Secret("")
        self.expires_on = 0.0
        self.fetches = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EntraTokenPassword(scope={SCOPE!r}, expires_on={self.expires_on!r})"

    @property
    def current(self) -> Secret:
        """The cached token (empty before the first fetch), to keep it out of messages."""
        return self._token

    async def __call__(self) -> str:
        if self._fresh():
            return self._token.reveal()
        async with self._lock:  # connections opening at once share one fetch
            if self._fresh():
                return self._token.reveal()
            try:
                token, expires_on = await self._fetch()
            except Exception as exc:  # whatever the credential raises is a failed fetch
                reason = self._reason(exc)
                left = self.expires_on - self._clock()
                if self._token and left > _STILL_USABLE_SECONDS:
                    event("store_token_refresh_failed", level="warning", error=reason, seconds_left=round(left))
                    return self._token.reveal()
                raise StoreError(f"cannot get a Microsoft Entra access token for the PostgreSQL store: {reason}") from None
            self._token = Secret(token)
            self.expires_on = expires_on
            self.fetches += 1
            event("store_token_fetched", expires_in=round(expires_on - self._clock()))
            return token

    def _fresh(self) -> bool:
        return bool(self._token) and self._clock() < self.expires_on - self.refresh_before

    async def _fetch(self) -> tuple[str, float]:
        async with self._credentials() as credential:
            got = await credential.get_token(SCOPE)
        if not got.token:
            raise ValueError("the credential returned an empty token")
        return got.token, float(got.expires_on)

    def _reason(self, exc: BaseException) -> str:
        """The first line of what the credential said, the cached token cut out."""
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        secret = self._token.reveal()
        return text.replace(secret, "<redacted>") if secret else text
