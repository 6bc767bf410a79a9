"""How a terminal reaches the settlement host: in process, or over HTTP (`pos-host serve`).

Both send one envelope and return the host's answer envelope with the types HTTP gives
(money as Decimal: host.wire). Neither ever retries: whether to send again, and with
which msgid, is the caller's decision (a 2102 sent twice settles twice).

When HTTP fails, what matters is whether the host may have acted:

- `HostUnreachable`: the request surely never reached the host (refused, no route, bad
  address, connect timeout). Nothing happened there; it is safe to send it again.
- `NoAnswer`: the request was sent, or may have been, and no usable answer came (read
  timeout, connection broken after sending, an HTTP 5xx, an answer that is not an
  envelope). The outcome is unknown: a settlement must be reversed.
- `HostError` (plain): the host refused the request as such (HTTP 3xx/4xx: wrong URL,
  say), so it did not act on it; fix the configuration.

An answer that is not JSON counts as no answer, not as a refusal: the host may have
committed the transaction before something mangled its reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

from cardio.errors import UsageError
from cardio.usage import one_line
from host import wire
from host.api import HostError

# The national platform's path, which `pos-host serve` serves too.
CALL_PATH = "/fsi/api/rsfComIfsService/callService"

# What the engine (host.platform) gives: one envelope in, one answer envelope out.
Handle = Callable[[dict[str, Any]], dict[str, Any]]

# Shorter than the server's keep-alive (host.server.KEEP_ALIVE, 5 s), so that we drop an
# idle connection before the server closes it under a request we are sending.
KEEPALIVE_EXPIRY = 2.0


class HostUnreachable(HostError):
    """The request never reached the host, so the host did nothing."""

    default = (
        "the settlement host cannot be reached and nothing was done there; check the "
        "network and the host address, then send the same request again"
    )


class NoAnswer(HostError):
    """The request was sent but no answer came: the host may or may not have acted."""

    default = (
        "the settlement host did not answer, so whether it acted is unknown; reverse "
        "the settlement (or query it) before trying again"
    )


class Transport(Protocol):
    def send(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class EmbeddedTransport:
    """The host in this process. The request and the answer go through the wire codec
    both ways, so that both sides see exactly the types HTTP would give them."""

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        envelope: dict[str, Any] = wire.loads(wire.dumps(request))
        answer: dict[str, Any] = wire.loads(wire.dumps(self._handle(envelope)))
        return answer

    def close(self) -> None:
        pass


class HttpTransport:
    """The host at `url` (`http://HOST:PORT`, the callService path added; a URL that
    already ends with it is used as is). One keep-alive connection pool; `timeout` s for
    connecting, for sending and for each wait on the answer. Thread-safe."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = _call_url(url)
        if not timeout > 0:
            raise UsageError("the host timeout must be above 0 seconds; give it in seconds")
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
            follow_redirects=False,  # a redirected POST might be sent twice
            trust_env=False,  # settlements never go through a proxy picked up from the env
            headers={"content-type": "application/json; charset=utf-8"},
        )

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        body = wire.dumps(request)  # before sending: a bad request is never half sent
        try:
            response = self._client.post(self.url, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
            # Before the first byte left: httpx sends nothing until connected.
            raise HostUnreachable() from None
        except httpx.RequestError:
            # Read/write timeouts, resets, a close before the answer, an answer that
            # cannot be decoded: the request may have arrived and been acted on.
            raise NoAnswer() from None
        return _answer(response)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _call_url(url: str) -> str:
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(
            f"the host URL {one_line(url)!r} is not an http address; give it as http://HOST:PORT"
        )
    text = str(parsed).rstrip("/")
    return text if text.endswith(CALL_PATH) else text + CALL_PATH


def _answer(response: httpx.Response) -> dict[str, Any]:
    status = response.status_code
    if 300 <= status < 500:
        raise HostError(
            f"the settlement host refused the request with HTTP {status}, so it did "
            "nothing; check the host URL"
        )
    if status != 200:
        raise NoAnswer()  # 5xx: it may have failed halfway, after committing
    try:
        answer: dict[str, Any] = wire.loads(response.content)
    except wire.WireError:
        raise NoAnswer(
            "the settlement host's answer was not an envelope, so whether it acted is "
            "unknown; reverse the settlement (or query it) before trying again"
        ) from None
    return answer
