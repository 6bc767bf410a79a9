"""`pos-host serve`: the settlement host over HTTP, as the national platform is reached.

One route does the work: `POST /fsi/api/rsfComIfsService/callService` takes one JSON
envelope (infno, msgid, ..., input), runs the engine's `handle` in a worker thread (it
may block on a database) and answers its envelope as JSON. `GET /health` answers
`{"status":"ok"}`.

HTTP status, as the platform does it: every request to the route is answered HTTP 200
with an envelope, bad input included (not JSON, not an object, not
`application/json`, a body over 1 MiB, a body that does not arrive in time): infcode
-1 and an err_msg sentence, never a traceback. The one exception is a `handle` that
raises (a bug in the engine): HTTP 500 with an envelope saying the outcome is unknown,
so that a client treats it as no answer and reverses (host.transport.NoAnswer). Other
paths and methods get Starlette's plain 404 and 405.

Faults (`--faults drop-reply=P,delay=S,error=P`), for testing the terminal's recovery:

- error=P: the envelope is answered infcode -1 "injected fault"; `handle` is not called.
- drop-reply=P: `handle` is called (the transaction commits), then no answer is ever
  written. The connection is held silent until the client gives up and hangs up, as
  when a reply is lost on the way back and the client's read timeout fires; it is
  closed without an answer when the server stops, or after DROP_HOLD seconds.
- delay=S: `handle` is called and its answer written S seconds later.

Each applies to well-formed envelopes only (bad input is answered as above); a dropped
reply is not also delayed. Each injected fault is logged (logger `host.server`) with the
infno and msgid only. With --faults-seed the draws repeat in request order (two per
request: error, then drop-reply), so a run repeats when its requests come one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import itertools
import logging
import math
import random
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from cardio.errors import Exit, UsageError
from cardio.trace import failure
from cardio.usage import one_line
from host import wire
from host.api import HostError
from host.transport import CALL_PATH, Handle

HEALTH_PATH = "/health"
DEFAULT_LISTEN = "127.0.0.1:8765"

MAX_BODY = 1024 * 1024  # an envelope is a few KiB; 1 MiB is far beyond any real one
# A body over MAX_BODY is still read (and thrown away) up to this, so that the client
# reads our answer instead of a connection reset; beyond it we hang up.
DRAIN_LIMIT = 8 * MAX_BODY
BODY_TIMEOUT = 10.0  # s for the whole body: a client that stalls mid-body is answered
HEAD_TIMEOUT = 10.0  # s for a request's head: a client that sends none is hung up on
DROP_HOLD = 300.0  # s a dropped reply's connection is held at most
MAX_DELAY = 3600.0  # s: a longer delay is a typo, not a test
JSON_TYPE = "application/json; charset=utf-8"

# uvicorn: each connection is a coroutine, so a slow client holds only its own. These
# bound what many of them can take: idle keep-alive connections are closed after
# KEEP_ALIVE s (clients keep theirs for less: host.transport), at most CONCURRENCY
# connections or requests at once (more are answered 503 without running `handle`),
# and in-flight requests get GRACE s to finish when the server is told to stop.
KEEP_ALIVE = 5
CONCURRENCY = 200
BACKLOG = 128
GRACE = 30

_log = logging.getLogger("host.server")


# --- faults -------------------------------------------------------------------------------

_FAULT_FORM = "give it as drop-reply=P,delay=S,error=P (P from 0 to 1, S seconds)"


@dataclass(frozen=True)
class Faults:
    """Probabilities (0..1) of the injected faults, the delay in seconds, and the seed of
    their random draws (None: a fresh one each run)."""

    drop_reply: float = 0.0
    delay: float = 0.0
    error: float = 0.0
    seed: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.drop_reply or self.delay or self.error)


def parse_faults(spec: str, seed: int | None = None) -> Faults:
    """`drop-reply=P,delay=S,error=P`, any of them, in any order; else a UsageError."""
    if not spec.strip():
        raise UsageError(f"the fault spec is empty; {_FAULT_FORM}")
    values: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, text = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise UsageError(f"the fault {one_line(item.strip())!r} has no value; {_FAULT_FORM}")
        key = name.lower()
        if key not in ("drop-reply", "delay", "error"):
            raise UsageError(f"there is no fault named {one_line(name)!r}; {_FAULT_FORM}")
        if key in values:
            raise UsageError(f"the fault {key} is given twice; give each fault once")
        values[key] = _fault_value(key, text)
    return Faults(
        drop_reply=values.get("drop-reply", 0.0),
        delay=values.get("delay", 0.0),
        error=values.get("error", 0.0),
        seed=seed,
    )


def _fault_value(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if key == "delay":
        if not math.isfinite(value) or not 0 <= value <= MAX_DELAY:
            raise UsageError(
                f"the delay {one_line(text)!r} is not a number of seconds from 0 to "
                f"{MAX_DELAY:g}; give it as delay=S, such as delay=2.5"
            )
    elif not math.isfinite(value) or not 0 <= value <= 1:
        raise UsageError(
            f"the {key} probability {one_line(text)!r} is not a number from 0 to 1; "
            f"give it as {key}=P, such as {key}=0.1"
        )
    return value


class _Dice:
    """The fault draws. Used on the event loop only, so one Random needs no lock."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)

    def error(self) -> bool:
        return self._random.random() < self.faults.error

    def drop(self) -> bool:
        return self._random.random() < self.faults.drop_reply


# --- envelopes ----------------------------------------------------------------------------

_refs = itertools.count(1)


def _now() -> str:
    return datetime.now().strftime("%Y%m%d%H%M%S%f")[:17]  # the platform's yyyyMMddHHmmssSSS


def error_answer(message: str, kind: str = "host_error") -> dict[str, Any]:
    """The platform's failure envelope with `message` as err_msg, and (ours, as the
    engine's) err_type: `bad_request` for what the client sent, `host_error` for the
    host's own passing trouble (a client may send the same message again)."""
    now = _now()
    return {
        "infcode": -1,
        "inf_refmsgid": f"{now[:14]}{next(_refs):016d}",
        "refmsg_time": now,
        "respond_time": now,
        "err_msg": message,
        "warn_msg": None,
        "output": None,
        "err_type": kind,
    }


def _json(body: bytes, status: int = 200, *, close: bool = False) -> Response:
    headers = {"connection": "close"} if close else None
    return Response(body, status_code=status, headers=headers, media_type=JSON_TYPE)


def _refuse(
    log: logging.Logger, message: str, *, close: bool = False, kind: str = "bad_request"
) -> Response:
    log.info("bad request answered infcode -1: %s", message)
    return _json(wire.dumps(error_answer(message, kind)), close=close)


def _tag(request: Mapping[str, Any], key: str) -> str:
    """infno or msgid for a log line: short, one line, whatever the client put there."""
    value = request.get(key)
    return one_line(value)[:40] if isinstance(value, str) else f"<{type(value).__name__}>"


# --- the app ------------------------------------------------------------------------------


def build_app(
    handle: Handle, faults: Faults | None = None, log: logging.Logger = _log
) -> Starlette:
    """The HTTP host around `handle`. `app.state.stopping` is set by `serve` when the
    server stops, which ends the held connections of dropped replies."""
    dice = _Dice(faults or Faults())
    stopping = asyncio.Event()

    async def call_service(request: Request) -> Response:
        body = await _read_body(request, log)
        if isinstance(body, Response):
            return body
        problem = _content_problem(request.headers.get("content-type"))
        if problem:
            return _refuse(log, problem)
        try:
            envelope = wire.loads(body)
        except wire.WireError as e:
            return _refuse(log, str(e))
        infno, msgid = _tag(envelope, "infno"), _tag(envelope, "msgid")
        if dice.error():
            log.warning("injected fault error: infno=%s msgid=%s not handled", infno, msgid)
            return _json(wire.dumps(error_answer("injected fault")))
        answer, status = await run_in_threadpool(_handled, handle, envelope, log)
        if dice.drop():
            log.warning("injected fault drop-reply: infno=%s msgid=%s handled", infno, msgid)
            return _NoReply(stopping)
        if dice.faults.delay:
            log.warning(
                "injected fault delay=%gs: infno=%s msgid=%s handled",
                dice.faults.delay,
                infno,
                msgid,
            )
            await asyncio.sleep(dice.faults.delay)
        return _json(answer, status)

    async def health(request: Request) -> Response:
        return _json(wire.dumps({"status": "ok"}))

    app = Starlette(
        routes=[
            Route(CALL_PATH, call_service, methods=["POST"]),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ]
    )
    app.state.stopping = stopping
    return app


def _handled(handle: Handle, envelope: dict[str, Any], log: logging.Logger) -> tuple[bytes, int]:
    """`handle`'s answer as bytes, in the worker thread. An engine that raises or answers
    what cannot be sent is a bug: HTTP 500 with an envelope, as its outcome is unknown."""
    try:
        answer = handle(envelope)
        if not isinstance(answer, dict):
            raise TypeError("handle answered something other than a dict")
        return wire.dumps(answer), 200
    except Exception as e:  # its message may quote the request: type and place only
        log.error("handle failed (%s): infno=%s", failure(e), _tag(envelope, "infno"))
        message = (
            "the host failed on this request with an internal error, so its outcome is "
            "unknown; query or reverse the transaction before sending it again"
        )
        return wire.dumps(error_answer(message)), 500


async def _read_body(request: Request, log: logging.Logger) -> bytes | Response:
    """The body, or the answer to give instead (too big, too slow, client gone)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > DRAIN_LIMIT:
        return _refuse(log, _too_big(), close=True)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > DRAIN_LIMIT:
                    return _refuse(log, _too_big(), close=True)
                if size <= MAX_BODY:
                    chunks.append(chunk)
    except TimeoutError:
        message = (
            f"the request did not arrive whole within {BODY_TIMEOUT:g} seconds; "
            "send it again in one piece"
        )
        return _refuse(log, message, close=True, kind="host_error")  # may be the network's
    except ClientDisconnect:
        return Response(status_code=204)  # nobody to answer: uvicorn writes nothing
    if size > MAX_BODY:
        return _refuse(log, _too_big(), close=True)
    return b"".join(chunks)


def _too_big() -> str:
    return f"the request is over {MAX_BODY // 2**20} MiB; send one envelope of the platform"


def _content_problem(content_type: str | None) -> str | None:
    """Why the content type is not JSON in UTF-8, or None when it is."""
    if content_type is None:
        return "the request has no content type; send it as application/json"
    kind, *params = (part.strip().lower() for part in content_type.split(";"))
    if kind != "application/json":
        return (
            f"the request's content type is {one_line(kind)[:60]!r}, not JSON; "
            "send it as application/json"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            return "the request is not in UTF-8; send it as application/json; charset=utf-8"
    return None


class _NoReply(Response):
    """A lost reply: nothing is written; the connection is held silent until the client
    hangs up (its timeout fired), the server stops or DROP_HOLD passes, and then closed."""

    def __init__(self, stopping: asyncio.Event) -> None:
        super().__init__(status_code=204)
        self._stopping = stopping

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hung_up = asyncio.ensure_future(_disconnected(receive))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait(
            {hung_up, stopping}, timeout=DROP_HOLD, return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()
        if not hung_up.done():
            _hang_up(receive)
        # uvicorn writes a 500 for an app that ends without answering a live client:
        # end only once it knows the client is gone.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hung_up, timeout=5.0)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _hang_up(receive: Receive) -> None:
    """Close the connection without a word. ASGI has no way to say so: uvicorn's receive
    is a method of its request cycle, which holds the connection's transport."""
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.BaseTransport) and not transport.is_closing():
        transport.close()


# --- serving ------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) as (host, port); port 0 picks a free one."""
    text = text.strip()
    form = "give it as HOST:PORT, such as 127.0.0.1:8765"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise UsageError(f"the address {one_line(text)!r} has no port after ]; {form}")
        if not _ipv6(host):
            raise UsageError(f"{one_line(host)!r} in brackets is not an IPv6 address; {form}")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise UsageError(f"the address {one_line(text)!r} has no port; {form}")
        if ":" in host:
            raise UsageError(
                f"the IPv6 address in {one_line(text)!r} needs brackets; give it as [::1]:8765"
            )
    if not host:
        raise UsageError(f"the address {one_line(text)!r} has no host; {form}")
    if not _host_ok(host):
        raise UsageError(f"{one_line(host)!r} is not a host name or IP address; {form}")
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise UsageError(f"the port {one_line(port)!r} is not a number from 0 to 65535; {form}")
    return host, int(port)


def _ipv6(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return False
    return True


def _host_ok(host: str) -> bool:
    if ":" in host:  # IPv6, from inside brackets
        return _ipv6(host)
    labels = host.split(".")
    return all(
        label and len(label) <= 63 and label.isascii() and label.replace("-", "").isalnum()
        for label in labels
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so that its errors are one sentence and port 0's
    choice is known before uvicorn starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise UsageError(
            f"the host {one_line(host)!r} is not known; give an address of this machine, "
            "such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise HostError(f"cannot listen on {one_line(host)}:{port}: {_why(e)}") from None
    return sock


def _why(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is in use; stop what uses it or choose another port with --listen"
    if error.errno == errno.EACCES:
        return "permission denied; choose a port above 1023 with --listen"
    if error.errno == errno.EADDRNOTAVAIL:
        return "the address is not one of this machine's; give one of its addresses"
    return f"{error.strerror or type(error).__name__}; check the --listen address"


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 with a deadline on each request's head. uvicorn waits for ever
    for a client that connects and says nothing, or half a head, and each such client
    counts against CONCURRENCY: enough of them would turn everyone else away."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self.loop.call_later(HEAD_TIMEOUT, self._head_overdue, self.cycle)

    def _head_overdue(self, cycle: object) -> None:
        # The same cycle as when armed: no new request has begun since. A request still
        # being handled (a pipelined one started at arming) is never cut off.
        idle = self.cycle is None or self.cycle.response_complete
        if self.cycle is cycle and idle and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, but it says when it accepts connections, ends held dropped
    replies when it stops, and exits normally on SIGTERM/SIGINT (uvicorn re-raises the
    signal after its shutdown, which would end the process by that signal)."""

    def __init__(
        self, config: uvicorn.Config, stopping: asyncio.Event, on_ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._stopping = stopping
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; whoever runs us stops us
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def serve(
    handle: Handle,
    listen: str,
    faults: Faults | None = None,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve `handle` on `listen` (HOST:PORT) until SIGTERM or SIGINT; in-flight requests
    are finished first (a second SIGINT stops at once). `ready` gets the base URL once
    connections are accepted."""
    host, port = parse_listen(listen)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    app = build_app(handle, faults)
    config = uvicorn.Config(
        app,
        http=_Protocol,
        loop="asyncio",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,  # the caller's logging; uvicorn's own would reconfigure it
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=CONCURRENCY,
        backlog=BACKLOG,
        timeout_graceful_shutdown=GRACE,
    )

    def on_ready() -> None:
        if faults is not None and faults.active:
            _log.warning("serving with injected faults: %s", faults)
        (ready or (lambda u: _log.info("listening on %s", u)))(url)

    server = _Server(config, app.state.stopping, on_ready)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


# --- the command line ---------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"address to serve on; port 0 picks a free one (default: {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--faults",
        metavar="SPEC",
        help="inject faults for testing: drop-reply=P,delay=S,error=P",
    )
    parser.add_argument(
        "--faults-seed",
        metavar="N",
        type=int,
        help="seed of the fault draws, to repeat a run (default: random)",
    )


def run_serve(args: argparse.Namespace, handle: Handle) -> int:
    """`pos-host serve`: one `listening on URL` line on stdout once it accepts
    connections, the log on stderr, exit 0 when stopped. Bad options raise UsageError and
    an address that cannot be listened on HostError (the CLI's run_command says them)."""
    spec: str | None = args.faults
    faults = parse_faults(spec, args.faults_seed) if spec is not None else Faults()
    parse_listen(args.listen)  # bad input is told before anything starts
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    def ready(url: str) -> None:
        print(f"pos-host serve: listening on {url}", flush=True)

    serve(handle, args.listen, faults, ready=ready)
    return Exit.OK
