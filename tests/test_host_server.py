"""`pos-host serve` (host.server) and its clients (host.transport), over real HTTP.

Each server is a real uvicorn in a child process (`python -c CHILD`) on 127.0.0.1 port
0, around a small handler of this file's own: it records each call's msgid in a file
(so a test can count calls), echoes `input` as `output`, waits in `handle` until the
file `input.gate` exists, and raises for infno "boom". The engine (host.platform) is not needed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from host_server_helpers import listening_url

from cardio.errors import UsageError
from host import server, wire
from host.api import HostError
from host.transport import (
    CALL_PATH,
    EmbeddedTransport,
    HostUnreachable,
    HttpTransport,
    NoAnswer,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "310104198503122174"  # personal data that must never reach a log or an answer

CHILD = r"""
import argparse, os, sys, time
from pathlib import Path
from host import server

calls = Path(sys.argv[1])
# Short deadlines for the tests of stuck clients, by the environment.
for name in ("HEAD_TIMEOUT", "BODY_TIMEOUT"):
    if os.environ.get(name):
        setattr(server, name, float(os.environ[name]))

def handle(request):
    with calls.open("a") as f:
        f.write(f"{request.get('msgid')}\n")
    data = request.get("input") or {}
    if data.get("gate"):  # held in handle until the test makes this file
        deadline = time.monotonic() + 20
        while not Path(data["gate"]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    if request.get("infno") == "boom":
        raise RuntimeError("engine bug with " + str(data.get("psn_no")))
    return {"infcode": 0, "inf_refmsgid": "R1", "refmsg_time": "20261130120000000",
            "respond_time": "20261130120000001", "err_msg": None, "warn_msg": None,
            "output": data}

parser = argparse.ArgumentParser()
server.add_serve_arguments(parser)
sys.exit(server.run_serve(parser.parse_args(sys.argv[2:]), handle))
"""


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    calls_file: Path
    stderr_file: Path

    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []

    def log(self) -> str:
        return self.stderr_file.read_text()

    def wait_call(self, msgid: str) -> None:
        """Until `handle` has been called for `msgid` (it records the call first)."""
        deadline = time.monotonic() + 10
        while msgid not in self.calls():
            assert time.monotonic() < deadline, f"handle was not called for {msgid}"
            time.sleep(0.02)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def start(tmp: Path, *options: str, env: dict[str, str] | None = None) -> Served:
    calls, err = tmp / "calls.txt", tmp / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(calls), "--listen", "127.0.0.1:0", *options],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    return Served(proc, listening_url(proc, err), calls, err)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def spawn(*options: str, env: dict[str, str] | None = None) -> Served:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        started.append(start(folder, *options, env=env))
        return started[-1]

    yield spawn
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()
        assert "Traceback" not in s.log(), s.log()


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One fault-free server for the tests that do not stop it."""
    served = start(tmp_path_factory.mktemp("echo"))
    yield served
    assert served.terminate() == 0
    assert "Traceback" not in served.log(), served.log()
    assert SECRET not in served.log()


@pytest.fixture
def client(echo: Served) -> Iterator[HttpTransport]:
    with HttpTransport(echo.url, timeout=5.0) as transport:
        yield transport


def envelope(msgid: str, infno: str = "1101", **data: object) -> dict[str, Any]:
    return {
        "infno": infno,
        "msgid": msgid,
        "dev_no": "",
        "opter": "01",
        "inf_time": "2026-11-30 12:00:00",
        "fixmedins_code": "H31010400001",
        "sign_no": "",
        "input": data,
    }


def post(url: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    headers = {"content-type": content_type}
    return httpx.post(url + CALL_PATH, content=body, headers=headers, timeout=5.0)


# --- the route ----------------------------------------------------------------------------


def test_round_trip(echo: Served, client: HttpTransport) -> None:
    answer = client.send(envelope("rt-1", psn_no="P1", 名="张三"))
    assert answer["infcode"] == 0
    assert answer["output"] == {"psn_no": "P1", "名": "张三"}
    assert echo.calls().count("rt-1") == 1
    # The same client again: its keep-alive connection is reused and still answers.
    assert client.send(envelope("rt-2"))["infcode"] == 0


def test_health(echo: Served) -> None:
    response = httpx.get(echo.url + "/health", timeout=5.0)
    assert response.status_code == 200
    assert wire.loads(response.content) == {"status": "ok"}


def test_money_survives_byte_exact(echo: Served, client: HttpTransport) -> None:
    sent = b'{"infno":"2102","msgid":"m-1","input":{"medfee_sumamt":12.50,"cash":0.10,"big":98765432109876.01}}'  # noqa: E501
    response = post(echo.url, sent)
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert b'"output":{"medfee_sumamt":12.50,"cash":0.10,"big":98765432109876.01}' in (
        response.content
    )
    money = {"medfee_sumamt": Decimal("12.50"), "cash": Decimal("0.10")}
    answer = client.send(envelope("m-2", **money))
    assert [str(v) for v in answer["output"].values()] == ["12.50", "0.10"]
    # The embedded transport gives exactly what HTTP gives.
    embedded = EmbeddedTransport(lambda request: {"infcode": 0, "output": request["input"]})
    assert wire.dumps(embedded.send(envelope("m-3", **money))["output"]) == wire.dumps(
        answer["output"]
    )


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"not json", "application/json", "not JSON"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (b"", "application/json", "not JSON"),
        (b'{"infno": NaN}', "application/json", "not JSON"),
        (b'{"infno": "\xff"}', "application/json", "not UTF-8"),
        (b'{"infno": "1101"}', "text/plain", "not JSON; send it as application/json"),
        (b'{"infno": "1101"}', "application/json; charset=gbk", "not in UTF-8"),
    ],
)
def test_bad_input_is_an_envelope(echo: Served, body: bytes, content_type: str, said: str) -> None:
    before = len(echo.calls())
    response = post(echo.url, body, content_type)
    assert response.status_code == 200
    answer = wire.loads(response.content)
    assert answer["infcode"] == -1
    assert said in answer["err_msg"]
    assert "\n" not in answer["err_msg"]
    assert len(echo.calls()) == before  # handle never saw it


@pytest.mark.parametrize("size", [server.MAX_BODY + 1, 3 * server.MAX_BODY])
def test_huge_body_is_refused(echo: Served, size: int) -> None:
    before = len(echo.calls())
    body = b'{"infno":"1101","input":{"x":"' + b"a" * size + b'"}}'
    response = post(echo.url, body)
    assert response.status_code == 200
    answer = wire.loads(response.content)
    assert answer["infcode"] == -1
    assert "over 1 MiB" in answer["err_msg"]
    assert len(echo.calls()) == before


def test_a_declared_giant_is_refused_unread(echo: Served) -> None:
    with socket.create_connection(("127.0.0.1", _port(echo.url)), timeout=5) as sock:
        sock.sendall(
            f"POST {CALL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**10}\r\n\r\n{{".encode()
        )
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b'"infcode":-1' in reply and b"over 1 MiB" in reply


def test_a_failing_handle_is_no_answer_without_internals(echo: Served) -> None:
    response = post(echo.url, wire.dumps(envelope("boom-1", infno="boom", psn_no=SECRET)))
    assert response.status_code == 500
    answer = wire.loads(response.content)
    assert answer["infcode"] == -1 and "outcome is unknown" in answer["err_msg"]
    assert SECRET not in response.text and "RuntimeError" not in response.text
    with HttpTransport(echo.url, timeout=5.0) as transport, pytest.raises(NoAnswer):
        transport.send(envelope("boom-2", infno="boom", psn_no=SECRET))


def test_a_wrong_path_is_a_refusal_not_a_lost_answer(echo: Served) -> None:
    transport = HttpTransport(echo.url + "/wrong", timeout=5.0)
    with transport, pytest.raises(HostError) as caught:
        transport.send(envelope("w-1"))
    assert type(caught.value) is HostError
    assert "HTTP 404" in str(caught.value)


# --- slow and stuck clients ---------------------------------------------------------------


def test_stuck_clients_do_not_stall_others(echo: Served, client: HttpTransport) -> None:
    port = _port(echo.url)
    half_head = socket.create_connection(("127.0.0.1", port), timeout=5)
    half_body = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        half_head.sendall(f"POST {CALL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
        half_body.sendall(
            f"POST {CALL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"infno":'.encode()
        )
        time.sleep(0.1)  # let the server take them in before we ask
        assert client.send(envelope("past-stuck"))["infcode"] == 0
    finally:
        for sock in (half_head, half_body, idle):
            sock.close()


def test_stuck_clients_are_cut_off(spawn: Callable[..., Served]) -> None:
    """Without deadlines each would hold a connection slot (CONCURRENCY) for ever."""
    served = spawn(env={"HEAD_TIMEOUT": "0.3", "BODY_TIMEOUT": "0.3"})
    port = _port(served.url)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as silent,
        socket.create_connection(("127.0.0.1", port), timeout=10) as half_head,
        socket.create_connection(("127.0.0.1", port), timeout=10) as half_body,
    ):
        half_head.sendall(f"POST {CALL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Le".encode())
        half_body.sendall(
            f"POST {CALL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"infno":'.encode()
        )
        assert _read_all(silent) == b""  # hung up on, without a word
        assert _read_all(half_head) == b""
        reply = _read_all(half_body)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b'"infcode":-1' in reply and b"did not arrive whole" in reply
    assert served.calls() == []
    # A client that keeps to the deadlines is served, on the same connection twice.
    with HttpTransport(served.url, timeout=5.0) as transport:
        assert transport.send(envelope("ok-1"))["infcode"] == 0
        assert transport.send(envelope("ok-2"))["infcode"] == 0
    assert served.terminate() == 0


def test_a_slow_handle_does_not_stall_others(echo: Served, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    answers: list[dict[str, Any]] = []

    def slow() -> None:
        with HttpTransport(echo.url, timeout=15.0) as transport:
            answers.append(transport.send(envelope("slow", gate=str(gate))))

    worker = threading.Thread(target=slow)
    worker.start()
    try:
        echo.wait_call("slow")  # held in handle (a database that does not answer, say)
        with HttpTransport(echo.url, timeout=5.0) as transport:
            assert transport.send(envelope("quick"))["infcode"] == 0
        assert answers == []  # the quick one was answered while the slow one was held
    finally:
        gate.touch()
        worker.join(timeout=15)
    assert [a["infcode"] for a in answers] == [0]


# --- faults -------------------------------------------------------------------------------


def test_error_fault_never_calls_handle(spawn: Callable[..., Served]) -> None:
    served = spawn("--faults", "error=1")
    with HttpTransport(served.url, timeout=5.0) as transport:
        answer = transport.send(envelope("e-1", infno="2102", psn_no=SECRET))
    assert answer["infcode"] == -1
    assert answer["err_msg"] == "injected fault"
    assert served.calls() == []
    assert served.terminate() == 0
    log = served.log()
    assert "injected fault error: infno=2102 msgid=e-1" in log
    assert SECRET not in log


def test_drop_reply_commits_then_never_answers(spawn: Callable[..., Served]) -> None:
    served = spawn("--faults", "drop-reply=1.0", "--faults-seed", "7")
    started = time.monotonic()
    with HttpTransport(served.url, timeout=0.5) as transport, pytest.raises(NoAnswer):
        transport.send(envelope("d-1", infno="2102", psn_no=SECRET))
    assert time.monotonic() - started < 5  # its own timeout ended it, not the server
    assert served.calls() == ["d-1"]  # handled exactly once: the settlement happened

    # A client that would wait longer is hung up on, without an answer, when the
    # server stops; the server still exits 0.
    outcome: list[BaseException] = []

    def patient() -> None:
        with HttpTransport(served.url, timeout=30.0) as transport:
            try:
                transport.send(envelope("d-2", infno="2102"))
            except HostError as e:
                outcome.append(e)

    worker = threading.Thread(target=patient)
    worker.start()
    served.wait_call("d-2")
    assert served.terminate() == 0
    worker.join(timeout=15)
    assert [type(e) for e in outcome] == [NoAnswer]
    log = served.log()
    assert "injected fault drop-reply: infno=2102 msgid=d-1" in log
    assert "msgid=d-2" in log
    assert SECRET not in log
    # no 500 answer, nor the ASGI error behind one (a timestamp's ",500" is neither)
    assert not re.search(r'" 500\b|\b500 Internal', log), log
    assert "without starting response" not in log and "Exception in ASGI" not in log


def test_delay_fault_answers_late(spawn: Callable[..., Served]) -> None:
    served = spawn("--faults", "delay=0.4")
    started = time.monotonic()
    with HttpTransport(served.url, timeout=10.0) as transport:
        answer = transport.send(envelope("late-1", x=Decimal("1.00")))
    assert time.monotonic() - started >= 0.4
    assert answer["infcode"] == 0 and str(answer["output"]["x"]) == "1.00"
    assert served.calls() == ["late-1"]
    assert "injected fault delay=0.4s: infno=1101 msgid=late-1" in served.log()


# --- stopping -----------------------------------------------------------------------------


def test_sigterm_finishes_in_flight_then_exits_0(
    spawn: Callable[..., Served], tmp_path: Path
) -> None:
    served = spawn()
    gate = tmp_path / "gate"
    answers: list[dict[str, Any]] = []

    def in_flight() -> None:
        with HttpTransport(served.url, timeout=15.0) as transport:
            answers.append(transport.send(envelope("f-1", gate=str(gate))))

    worker = threading.Thread(target=in_flight)
    worker.start()
    served.wait_call("f-1")
    served.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # the server is stopping, the request still in handle
    assert served.proc.poll() is None
    gate.touch()
    assert served.proc.wait(timeout=15) == 0
    worker.join(timeout=15)
    assert [a["infcode"] for a in answers] == [0]
    with HttpTransport(served.url, timeout=2.0) as transport, pytest.raises(HostUnreachable):
        transport.send(envelope("after"))


def test_sigint_exits_0(spawn: Callable[..., Served]) -> None:
    served = spawn()
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(timeout=15) == 0


# --- the client ---------------------------------------------------------------------------


def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as sock:  # a port surely free: bound, then let go
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = HttpTransport(f"http://127.0.0.1:{port}", timeout=2.0)
    with transport, pytest.raises(HostUnreachable) as caught:
        transport.send(envelope("nobody"))
    assert isinstance(caught.value, HostError)
    assert "nothing was done" in str(caught.value)


def test_a_reply_that_is_not_an_envelope_is_no_answer() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\noops!")

        worker = threading.Thread(target=garbage)
        worker.start()
        transport = HttpTransport(f"http://127.0.0.1:{port}", timeout=5.0)
        with transport, pytest.raises(NoAnswer):
            transport.send(envelope("g-1"))
        worker.join(timeout=5)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765" + CALL_PATH),
        ("http://127.0.0.1:8765/", "http://127.0.0.1:8765" + CALL_PATH),
        ("http://h:1" + CALL_PATH, "http://h:1" + CALL_PATH),
    ],
)
def test_http_transport_url(url: str, expected: str) -> None:
    transport = HttpTransport(url)
    assert transport.url == expected
    transport.close()


@pytest.mark.parametrize("url", ["", "127.0.0.1:8765", "ftp://h/", "http://"])
def test_http_transport_bad_url(url: str) -> None:
    with pytest.raises(UsageError):
        HttpTransport(url)


def test_embedded_transport_gives_wire_types() -> None:
    seen: list[dict[str, Any]] = []

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        return {"infcode": 0, "output": {"amt": Decimal("3.10"), "rows": ("a", "b")}}

    answer = EmbeddedTransport(handle).send(envelope("emb", amt=Decimal("3.10")))
    assert str(seen[0]["input"]["amt"]) == "3.10"
    assert seen[0]["input"] is not None and isinstance(seen[0]["input"]["amt"], Decimal)
    # A tuple arrives as a list, as it would over HTTP.
    assert answer["output"] == {"amt": Decimal("3.10"), "rows": ["a", "b"]}


# --- options ------------------------------------------------------------------------------


def test_parse_faults() -> None:
    assert server.parse_faults("drop-reply=0.1,delay=2.5,error=1", seed=3) == server.Faults(
        drop_reply=0.1, delay=2.5, error=1.0, seed=3
    )
    assert server.parse_faults(" error = 0 ") == server.Faults()
    assert not server.Faults().active


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("", "empty"),
        ("error", "has no value"),
        ("=1", "has no value"),
        ("lose=0.5", "no fault named 'lose'"),
        ("error=0.1,error=0.2", "given twice"),
        ("error=1.5", "from 0 to 1"),
        ("drop-reply=-0.1", "from 0 to 1"),
        ("error=nan", "from 0 to 1"),
        ("error=half", "from 0 to 1"),
        ("delay=-1", "seconds from 0"),
        ("delay=inf", "seconds from 0"),
        ("delay=1e9", "seconds from 0"),
    ],
)
def test_parse_faults_bad(spec: str, said: str) -> None:
    with pytest.raises(UsageError) as caught:
        server.parse_faults(spec)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:80", ("::1", 80)),
        ("host-1.example:65535", ("host-1.example", 65535)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert server.parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:65536", "from 0 to 65535"),
        ("127.0.0.1:-1", "is not a number"),
        (":8765", "has no host"),
        ("bad host:1", "not a host name"),
        ("a..b:1", "not a host name"),
        ("::1:80", "needs brackets"),
        ("[::1]", "no port after ]"),
        ("[nope]:80", "not an IPv6 address"),
    ],
)
def test_parse_listen_bad(text: str, said: str) -> None:
    with pytest.raises(UsageError) as caught:
        server.parse_listen(text)
    assert said in str(caught.value)


def test_a_port_in_use_is_one_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HostError) as caught:
            server.serve(lambda r: r, f"127.0.0.1:{port}")
    assert "the port is in use" in str(caught.value)


def test_serve_arguments() -> None:
    parser = server.argparse.ArgumentParser()
    server.add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.listen, args.faults, args.faults_seed) == ("127.0.0.1:8765", None, None)
    args = parser.parse_args(["--faults", "error=2"])
    with pytest.raises(UsageError):
        server.run_serve(args, lambda r: r)


# --- helpers ------------------------------------------------------------------------------


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _read_all(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
