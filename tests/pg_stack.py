"""A real, throw-away PostgreSQL server for tests: Debian's `postgresql` package, one cluster
in a temp folder that the tests start and stop themselves.

PostgreSQL refuses to run as root. As root (the suite in a CI container) initdb and the
server run as the `postgres` user that the Debian package creates; a root-only temp folder
(pytest's are 0700) then holds only the log, and the cluster goes to a folder of its own
under /tmp. As anyone else they run as that user, in the folder given.

The server listens on 127.0.0.1 on a free port (the URL) and on a Unix socket in the
cluster's folder; local connections are trusted. fsync stays on: the host's crash tests
count on what PostgreSQL promises about a commit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"  # Debian keeps the server off PATH
SERVER_USER = "postgres"  # the OS user the Debian package creates, to run the server as root
SUPERUSER = "postgres"  # the database role initdb makes; trusted, no password
WAIT = 30.0
SOCKET_DIR_MAX = 90  # sun_path is 108 bytes, with "/.s.PGSQL.<port>" and the NUL after it
DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SCRATCH_DIR = "/tmp"  # world-traversable (1777) on every Debian, whatever TMPDIR says
SCRATCH_PREFIX = "shebao-pg-"
SCRATCH_OWNER = "owner.pid"  # the test process's pid: its folder is stale once it is gone


def bindir() -> Path | None:
    """The newest installed server's bin folder (Debian's, else the one on PATH), or None."""
    found = [Path(p) for p in glob.glob(DEBIAN_BINDIRS) if (Path(p) / "postgres").exists()]
    if found:
        return max(found, key=lambda p: _version_key(p.parent.name))
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def missing() -> str | None:
    """Why a cluster cannot run here, or None."""
    bin_dir = bindir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        return "the PostgreSQL server is not installed (Debian package postgresql; `make db`)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    if os.geteuid() == 0 and _server_user() is None:
        return f"running as root and there is no {SERVER_USER!r} user to run the server as"
    return None


def unavailable(reason: str) -> None:
    """Skip the test, except under CI=true, where a missing PostgreSQL is a failure."""
    if IN_CI:
        pytest.fail(f"PostgreSQL required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _server_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


@dataclass(frozen=True)
class RunAs:
    """Who initdb and the server run as: Popen's own uid switch, no su/PAM in between, so
    the Popen's pid is the postmaster's own."""

    uid: int
    gid: int
    home: str

    @staticmethod
    def for_this_process() -> RunAs | None:
        """None: run as we are. As root: the postgres user (the server will not run as root)."""
        if os.geteuid() != 0:
            return None
        user = _server_user()
        if user is None:
            raise RuntimeError(f"running as root and there is no {SERVER_USER!r} user")
        return RunAs(user.pw_uid, user.pw_gid, user.pw_dir)

    def popen_args(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def can_write(self, folder: Path) -> bool:
        """Whether the user can reach and write `folder`: asked as that user, so that modes,
        ACLs and every parent folder count."""
        probe = subprocess.run(["test", "-w", str(folder)], **self.popen_args(), check=False)
        return probe.returncode == 0

    def give(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


def _server_env(run_as: RunAs | None) -> dict[str, str]:
    """Ours without PG* (a PGDATA, PGPORT... of the machine must not steer the cluster)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if run_as is not None:
        env["HOME"] = run_as.home
    return env


def free_port() -> int:
    """A free TCP port on 127.0.0.1. Another process may take it before the server binds
    it: start() then tries another."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig SIGQUIT`: if the test process dies (a killed xdist worker), the
    postmaster gets SIGQUIT, an immediate shutdown of it and its children, instead of
    outliving the run. Linux sends it when the *thread* that started the server ends, so
    only from the main thread, which lives as long as the process."""
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")  # util-linux, essential on Debian
    return [setpriv, "--pdeathsig", "SIGQUIT"] if setpriv else []


def _children(pid: int) -> list[int]:
    """The live children of `pid`, from /proc (no procps needed)."""
    return [p for p, ppid, state in _proc_table() if ppid == pid and state != "Z"]


def _proc_table() -> list[tuple[int, int, str]]:
    """(pid, ppid, state) of every process."""
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # comm, in parentheses, may hold spaces: the fields after its last ')' are fixed.
        state, ppid = stat.rpartition(")")[2].split()[:2]
        table.append((int(entry), int(ppid), state))
    return table


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class PgCluster:
    """One cluster: its data folder, its port, and the postmaster while it runs."""

    folder: Path  # the caller's: the server log, and the cluster when the server can reach it
    home: Path  # holds data/ and the Unix socket
    port: int
    run_as: RunAs | None
    scratch: bool = False  # home is a /tmp folder of our own, removed on stop()
    proc: subprocess.Popen[bytes] | None = None
    start_seconds: float = 0.0  # how long the last start took (start(): initdb included)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def socket_dir(self) -> Path | None:
        """Where the Unix socket is (psql -h), or None when the path would be too long."""
        return self.home if len(str(self.home)) <= SOCKET_DIR_MAX else None

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace") if self.log.exists() else ""

    # --- the server ------------------------------------------------------------------

    def _launch(self) -> None:
        """Start the postmaster and wait until it accepts connections (after crash recovery
        when it was killed)."""
        socket_dirs = str(self.socket_dir) if self.socket_dir else ""
        command = [
            *_pdeathsig_prefix(),
            str(_require_bindir() / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={socket_dirs}",
            "-c",
            "shared_buffers=16MB",  # one cluster per xdist worker: keep each small
            "-c",
            "fsync=on",  # said, not assumed: the crash tests rely on it
        ]
        log: IO[bytes] = open(self.log, "ab")  # noqa: SIM115 - the server holds it
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_server_env(self.run_as),
                **(self.run_as.popen_args() if self.run_as else {}),
            )
        finally:
            log.close()
        try:
            wait_for(self._ready, f"PostgreSQL on port {self.port}")
        except TimeoutError:
            self.kill9()
            raise TimeoutError(f"PostgreSQL did not start; log:\n{self.log_text()}") from None
        self.start_seconds = time.monotonic() - started

    def _ready(self) -> bool:
        """Line 8 of postmaster.pid says "ready" once connections are accepted (what pg_ctl
        waits for). A server that exited raises: waiting longer would not help."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerExited(self.proc.returncode, self.log_text())
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready"

    def restart(self) -> None:
        """Start the server again on the same data folder and port: after kill9() that is
        crash recovery. A running server is stopped first."""
        if self.running:
            self.stop(keep=True)
        self._launch()

    def ensure_running(self) -> None:
        if not self.running:
            self.restart()

    def stop(self, timeout: float = WAIT, keep: bool = False) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); killed when
        it takes longer than `timeout`. A /tmp folder of our own goes too, unless `keep`."""
        try:
            if self.running:
                assert self.proc is not None
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.kill9()
            self._reap()
        finally:
            if self.scratch and not keep:
                shutil.rmtree(self.home, ignore_errors=True)

    def kill9(self) -> None:
        """SIGKILL the postmaster and every process it started, as a crash would: nothing
        is written, flushed or cleaned up. restart() then runs crash recovery.

        Backends call setsid(), so a process group does not hold them: the postmaster is
        stopped (it cannot start another), its children are listed and killed, then it."""
        if not self.running:
            self._reap()
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)
        children = _children(self.proc.pid)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(WAIT)
        # The children are not ours to wait for; a restart needs them gone (they hold the
        # shared memory, and PostgreSQL will not start while anyone is attached to it).
        wait_for(lambda: not any(alive(c) for c in children), "the killed backends to go")

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()
        if self.proc is not None:
            self.proc.wait(WAIT)

    # --- databases -------------------------------------------------------------------

    def new_database(self, name: str) -> str:
        """CREATE DATABASE `name` (a copy of the empty template1) and its URL: a clean
        database per test costs milliseconds, a cluster per test a second."""
        self._admin(f"CREATE DATABASE {_checked(name)}")
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, its connections cut (WITH FORCE): each kept database costs disk."""
        self._admin(f"DROP DATABASE IF EXISTS {_checked(name)} WITH (FORCE)")

    def _admin(self, statement: str) -> None:
        import psycopg

        # CREATE/DROP DATABASE cannot run in a transaction: autocommit.
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)


class ServerExited(RuntimeError):
    def __init__(self, code: int, log: str) -> None:
        super().__init__(f"PostgreSQL exited with {code} while starting; log:\n{log}")
        self.log = log


def _checked(name: str) -> str:
    """A database name as SQL: only plain lower-case names, so that no quoting is needed."""
    if not DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def _require_bindir() -> Path:
    found = bindir()
    if found is None:
        raise RuntimeError("the PostgreSQL server is not installed")
    return found


# --- starting a cluster -------------------------------------------------------------------


def start(folder: Path, attempts: int = 3) -> PgCluster:
    """initdb a new cluster and start it; `folder` (empty, the caller's temp folder) keeps
    the server log and, when the server's user can write there, the cluster."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run_as = RunAs.for_this_process()
    began = time.monotonic()
    cluster = _new_cluster(folder, run_as)
    try:
        _initdb(cluster)
        _launch_on_a_free_port(cluster, attempts)
    except BaseException:
        cluster.stop()  # never a server or a /tmp folder left behind
        raise
    cluster.start_seconds = time.monotonic() - began
    return cluster


def _launch_on_a_free_port(cluster: PgCluster, attempts: int) -> None:
    for attempt in range(attempts):
        try:
            cluster._launch()
            return
        except ServerExited as e:
            # Another process took the port between free_port() and the server's bind.
            if "could not bind" not in e.log or attempt == attempts - 1:
                raise
            cluster.port = free_port()


def _new_cluster(folder: Path, run_as: RunAs | None) -> PgCluster:
    home = folder / "cluster"
    scratch = False
    if run_as is not None and not run_as.can_write(folder):
        # As root in a root-only folder: a folder of the server's own under /tmp.
        _sweep_scratch()
        home = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=SCRATCH_DIR))
        (home / SCRATCH_OWNER).write_text(f"{os.getpid()}\n")
        scratch = True
    home.mkdir(exist_ok=True)
    if run_as is not None:
        run_as.give(home)
    return PgCluster(folder, home, free_port(), run_as, scratch)


def _initdb(cluster: PgCluster) -> None:
    command = [
        str(_require_bindir() / "initdb"),
        "-D",
        str(cluster.data),
        f"--username={SUPERUSER}",
        "--auth=trust",  # only this machine reaches it, and only for the tests' run
        "--encoding=UTF8",
        "--no-locale",  # the same sorting on every machine, whatever its locales
        "--no-sync",  # a fresh throw-away cluster: the server's own fsync is what counts
    ]
    with open(cluster.log, "ab") as log:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(cluster.run_as),
            check=False,
            **(cluster.run_as.popen_args() if cluster.run_as else {}),
        )
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed ({done.returncode}); log:\n{cluster.log_text()}")


def _sweep_scratch() -> None:
    """Remove the /tmp folders of test processes that died before their stop() (killed by a
    timeout, say; their servers went with them: setpriv --pdeathsig). A folder is swept only
    when the process its owner file names is gone."""
    for home in Path(SCRATCH_DIR).glob(f"{SCRATCH_PREFIX}*"):
        try:
            owner = int((home / SCRATCH_OWNER).read_text())
        except (OSError, ValueError):
            continue  # being made, or not one of ours: leave it
        if not alive(owner):
            shutil.rmtree(home, ignore_errors=True)
