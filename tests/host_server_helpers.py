"""A real `pos-host serve` in a child process for the terminal's platform tests
(tests/test_terminal_platform.py), and reads of its database from the test.

The child is `python -m host.cli --db DB serve --listen 127.0.0.1:0 [--faults ...]`; its
URL is read from the one stdout line `pos-host serve: listening on URL`. It is stopped
with SIGTERM (`stop`), which must end it with exit 0.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.desk import open_store
from host.postgres import is_url
from host.transport import Transport

ROOT = Path(__file__).resolve().parent.parent
START_DEADLINE = 20.0  # s for the child to say it listens (a loaded machine)
STOP_DEADLINE = 20.0


@dataclass
class HostServer:
    proc: subprocess.Popen[str]
    url: str
    db: str
    stderr_file: Path

    def log(self) -> str:
        return self.stderr_file.read_text("utf-8", errors="replace")

    def stop(self) -> int:
        """SIGTERM, and its exit status (0 expected)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"pos-host serve ignored SIGTERM: {self.log()}") from None


def start_server(db: str, folder: Path, *options: str) -> HostServer:
    """`pos-host --db DB serve` on a free port of 127.0.0.1, with `options` after serve."""
    folder.mkdir(parents=True, exist_ok=True)
    err = folder / "stderr.txt"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host.cli",
                "--db",
                db,
                "serve",
                "--listen",
                "127.0.0.1:0",
                *options,
            ],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    return HostServer(proc, listening_url(proc, err), db, err)


def listening_url(proc: subprocess.Popen[str], err: Path) -> str:
    """The URL a starting server prints first ('... listening on URL'); the server is
    killed and the test fails with its stderr when that line does not come in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_DEADLINE)
    line = proc.stdout.readline() if ready else ""
    found = re.search(r"listening on (http://\S+)", line)
    if not found:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the server did not start: {line!r} {err.read_text()}")
    return found.group(1)


def closed_url() -> str:
    """An address of this machine where nothing listens (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the host's database, read from the test ------------------------------------------------


class HostDb:
    """The servers' database as the test reads it: a PostgreSQL URL through the host's
    own store, or a SQLite file through one plain sqlite3 connection held for the whole
    test and opened before any server.

    Why one held connection: host/sqlite.py's SqliteHost opens and closes SQLite's -shm
    and -wal itself once its connection is open (`_companions_private`), which drops that
    process's POSIX locks on them; the next process to open the database then believes
    it is alone and truncates the -shm under the server's mapping: SIGBUS in the server
    (test_a_desk_command_beside_a_serving_host_does_not_kill_it shows it). A connection
    of ours that keeps its lock stops that, so the other tests test the terminal."""

    def __init__(self, db: str) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None
        if not is_url(db):
            from host.sqlite import SqliteHost, seed_file

            SqliteHost(Path(db), seed=seed_file()).close()  # made and seeded, then ours
            self._conn = sqlite3.connect(db, isolation_level=None, timeout=10)
            self._conn.execute("SELECT COUNT(*) FROM holders").fetchone()  # holds the -shm

    def rows(self, sql_text: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self._conn is not None:
            return list(self._conn.execute(sql_text, params).fetchall())
        store = open_store(self.db)
        try:
            with store.atomic() as sql:
                return [tuple(r) for r in sql.rows(sql_text, params)]
        finally:
            store.close()

    def settlements(self) -> list[tuple[Any, ...]]:
        """(setl_id, msgid, status, acct_fen, sender) of every settlement, oldest first."""
        return self.rows(
            "SELECT setl_id, msgid, status, acct_fen, sender FROM settlements "
            "ORDER BY setl_time, setl_id"
        )

    def balance(self, ssn: str) -> int:
        rows = self.rows("SELECT balance_fen FROM holders WHERE ssn = ?", (ssn,))
        assert len(rows) == 1, rows
        value = rows[0][0]
        assert isinstance(value, int)
        return value

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(step)


class Routed:
    """A transport that sends some messages (by infno) over another transport: a lost
    answer for the settlement alone, the rest over the healthy host. A list of
    transports for an infno is used in turn, its last one for the rest."""

    def __init__(self, default: Transport, routes: dict[str, Transport | list[Transport]]) -> None:
        self.default = default
        self.routes = {k: v if isinstance(v, list) else [v] for k, v in routes.items()}
        self._all = [t for ts in self.routes.values() for t in ts]
        self.sent: list[str] = []
        self.msgids: list[str] = []

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        infno = str(request.get("infno"))
        self.sent.append(infno)
        self.msgids.append(str(request.get("msgid")))
        queue = self.routes.get(infno)
        if not queue:
            return self.default.send(request)
        transport = queue.pop(0) if len(queue) > 1 else queue[0]
        return transport.send(request)

    def close(self) -> None:
        self.default.close()
        for transport in self._all:
            transport.close()
