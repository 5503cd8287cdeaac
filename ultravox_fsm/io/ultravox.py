"""The Ultravox side of the I/O: create a call over REST, open its serverWebSocket.

No LiveKit here. Failures are typed so a caller can decide what to retry: `CallRejected`
carries the HTTP status, the body text and any ``Retry-After``; `CallUnreachable` is a network
failure or timeout. The API key travels only in the ``X-API-Key`` header and never appears in
an exception message.
"""

from __future__ import annotations

import asyncio
import ipaddress
from email.utils import parsedate_to_datetime
from time import time
from typing import Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import msgspec

from ..call import CallResponse, decode_call_response
from . import lean_socket

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class CallRejected(Exception):
    """The API answered call creation with an error status."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.retryable = status in RETRYABLE_STATUS or status >= 500
        hint = {401: " (invalid Ultravox API key)", 403: " (the API key may not do this)"}
        super().__init__(
            f"Ultravox call creation failed: HTTP {status}{hint.get(status, '')}: {body[:500]}"
        )


class CallUnreachable(Exception):
    """The API or the call's socket could not be reached in time."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return None


async def create_call(
    http: aiohttp.ClientSession,
    *,
    base_url: str,
    api_key: str,
    body: bytes,
    query: dict[str, str],
    timeout: float,
) -> CallResponse:
    """``POST {base_url}/calls``; returns the 201 body or raises a typed error."""
    url = f"{base_url.rstrip('/')}/calls"
    if query:
        url += "?" + urlencode(query)
    headers = {
        "X-API-Key": api_key,
        "Content-Type": "application/json",
        "User-Agent": "ultravox-fsm",
    }
    try:
        async with http.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            text = await resp.text()
            if resp.status not in (200, 201):
                # A server may echo the key into its error body; it never reaches a log from us.
                text = text.replace(api_key, "[api key]") if api_key else text
                raise CallRejected(resp.status, text, _retry_after(resp.headers.get("Retry-After")))
            data = text.encode()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise CallUnreachable(
            f"Ultravox API unreachable at {url}: {type(exc).__name__} {exc}"
        ) from None
    try:
        call = decode_call_response(data)
    except msgspec.DecodeError as exc:
        raise CallRejected(201, f"unreadable call object: {exc}", None) from None
    if not call.join_url:
        raise CallRejected(201, "the call object has no joinUrl", None)
    return call


def check_join_url(url: str, base_url: str | None = None) -> None:
    """Refuse a join URL that is not ws/wss. Plain ws only to a loopback host, or to the host of
    a plain-http base URL (the caller already chose an unencrypted API there)."""
    parts = urlsplit(url)
    if parts.scheme == "wss":
        return
    if parts.scheme == "ws":
        host = parts.hostname or ""
        base = urlsplit(base_url or "")
        if base.scheme == "http" and base.hostname == host:
            return
        try:
            if host == "localhost" or ipaddress.ip_address(host).is_loopback:
                return
        except ValueError:
            pass
        raise ValueError(f"refusing unencrypted join URL to {host!r}: wss is required")
    raise ValueError(f"join URL must be ws:// or wss://, got {parts.scheme!r}")


MAX_MESSAGE = 4 * 1024 * 1024


async def open_socket(
    http: aiohttp.ClientSession,
    join_url: str,
    *,
    timeout: float,
    base_url: str | None = None,
    transport: Literal["aiohttp", "lean"] = "aiohttp",
) -> aiohttp.ClientWebSocketResponse[bool] | lean_socket.LeanSocket:
    """Open the call's socket; the URL is a capability, so it is used as given.

    ``transport="lean"`` opens it with `lean_socket` instead of aiohttp; either way a network
    failure, a timeout or a refused upgrade is `CallUnreachable`.
    """
    check_join_url(join_url, base_url)
    if transport == "lean":
        try:
            return await lean_socket.connect(join_url, timeout=timeout, max_msg_size=MAX_MESSAGE)
        # ValueError: a URL the client cannot use (aiohttp's InvalidURL is retried the same way)
        except (OSError, asyncio.TimeoutError, ValueError, lean_socket.HandshakeError) as exc:
            raise CallUnreachable(f"call socket unreachable: {type(exc).__name__} {exc}") from None

    async def join() -> aiohttp.ClientWebSocketResponse[bool]:
        # Ultravox has been seen not echoing a client close frame (protocol §2.4): wait 1 s.
        return await http.ws_connect(
            join_url,
            max_msg_size=MAX_MESSAGE,
            timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
        )

    try:
        return await asyncio.wait_for(join(), timeout)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise CallUnreachable(f"call socket unreachable: {type(exc).__name__} {exc}") from None
