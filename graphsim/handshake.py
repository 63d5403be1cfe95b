"""The validation handshake Graph performs on a notification URL before it creates a subscription."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from urllib.parse import urlencode

import aiohttp
import yarl


def new_validation_token() -> str:
    """A token like Graph's (spaces and colons) plus characters that must be URL-encoded (``+/=``)."""
    noise = base64.b64encode(secrets.token_bytes(9) + b"\xfb\xff").decode()
    return f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()} {noise}"


def validation_url(url: str, token: str) -> yarl.URL:
    """``url`` with ``validationToken`` appended, form-encoded as Graph does (spaces as ``+``)."""
    separator = "&" if "?" in url else "?"
    return yarl.URL(url + separator + urlencode({"validationToken": token}), encoded=True)


async def validate_endpoint(session: aiohttp.ClientSession | None, url: str, timeout: float) -> bool:
    """POST the handshake to ``url``: True when it answers 200 with exactly the token within ``timeout``."""
    token = new_validation_token()
    own_session = session is None
    client = aiohttp.ClientSession() if session is None else session
    try:
        async with asyncio.timeout(timeout):
            async with client.post(
                validation_url(url, token), data=b"", headers={"Content-Type": "text/plain; charset=utf-8"}
            ) as response:
                body = await response.read()
                return response.status == 200 and body.decode("utf-8", "replace") == token
    except (aiohttp.ClientError, TimeoutError, UnicodeError):
        return False
    finally:
        if own_session:
            await client.close()
