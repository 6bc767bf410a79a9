"""The PostgreSQL test stack itself: the server is real, its databases are separate, a
crash keeps what was committed, and nothing of it outlives stop()."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pg_fixtures
import pg_stack
import psycopg
import pytest


def pgrep(*args: str) -> set[int]:
    """pgrep's answer, an independent look at the process table (procps may be absent: then
    pg_stack.alive(), from /proc, is the only look)."""
    if shutil.which("pgrep") is None:
        return set()
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True, check=False)
    assert found.returncode in (0, 1), found.stderr  # 1: nothing matched
    return {int(pid) for pid in found.stdout.split()}


def server_pids(cluster: pg_stack.PgCluster) -> set[int]:
    """The postmaster and its children, as pgrep and /proc see them."""
    assert cluster.pid is not None
    pids = {cluster.pid, *pg_stack._children(cluster.pid)}
    assert pgrep("-P", str(cluster.pid)) <= pids
    return pids


def assert_gone(cluster: pg_stack.PgCluster, pids: set[int]) -> None:
    assert not [pid for pid in pids if pg_stack.alive(pid)]
    # The postmaster is the one with the data folder on its command line.
    assert not {p for p in pgrep("-f", str(cluster.data)) if pg_stack.alive(p)}
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", cluster.port), timeout=5),
    ):
        pass


def rows(url: str, table: str = "t") -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def test_a_table_round_trips(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO t VALUES (1, 'één'), (2, 'two')")
    assert rows(pg_url) == [(1, "één"), (2, "two")]


def test_each_test_gets_a_new_empty_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert name is not None
    assert name[0] != "postgres"
    assert name[0].endswith("_test_each_test_gets_a_new_empty_database")
    assert tables == []


def test_two_databases_are_separate(pg_cluster: pg_stack.PgCluster) -> None:
    a = pg_cluster.new_database(pg_fixtures.database_name("separate_a"))
    b = pg_cluster.new_database(pg_fixtures.database_name("separate_b"))
    try:
        assert a != b
        with psycopg.connect(a) as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.errors.UndefinedTable):
            rows(b)
        assert rows(a) == [(1,)]
    finally:
        for url in (a, b):
            pg_cluster.drop_database(url.rpartition("/")[2])


def test_dropped_databases_are_gone(pg_cluster: pg_stack.PgCluster) -> None:
    name = pg_fixtures.database_name("dropped")
    url = pg_cluster.new_database(name)
    pg_cluster.drop_database(name)
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(url).close()


def test_the_server_does_not_run_as_root(pg_cluster: pg_stack.PgCluster) -> None:
    """As root it runs as the postgres user; otherwise as us."""
    status = Path(f"/proc/{pg_cluster.pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    expected = pg_stack.pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert uid == expected
    assert uid != 0


def test_commits_are_synced(pg_url: str) -> None:
    """What the crash tests rely on: fsync and synchronous commit are on."""
    with psycopg.connect(pg_url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("fsync", "synchronous_commit")
        }
    assert settings == {"fsync": ("on",), "synchronous_commit": ("on",)}


def test_kill9_and_restart_keep_committed_rows_only(
    pg_cluster: pg_stack.PgCluster, pg_url: str
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (1)")
    open_tx = psycopg.connect(pg_url)  # a transaction in flight at the crash
    open_tx.execute("INSERT INTO t VALUES (2)")
    # A backend busy computing does not look for its postmaster's death: only a kill ends it.
    busy = psycopg.connect(pg_url)
    busy.pgconn.send_query(b"SELECT count(*) FROM generate_series(1, 10000000000)")
    before = server_pids(pg_cluster)
    assert {open_tx.info.backend_pid, busy.info.backend_pid} < before

    pg_cluster.kill9()
    assert_gone(pg_cluster, before)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url, connect_timeout=5).close()
    open_tx.close()
    busy.close()

    pg_cluster.restart()
    assert pg_cluster.pid not in before
    assert rows(pg_url) == [(1,)]  # the same URL: the same port and data
    assert "automatic recovery in progress" in pg_cluster.log_text()  # a crash, not a stop


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    cluster = pg_stack.start(tmp_path)
    try:
        with psycopg.connect(cluster.url) as conn:
            conn.execute("SELECT 1")
        pids = server_pids(cluster)
        assert pgrep("-f", str(cluster.data)) <= {cluster.pid}
    finally:
        cluster.stop()
    assert_gone(cluster, pids)
    assert not cluster.running
    assert "database system is shut down" in cluster.log_text()  # a fast shutdown, not a kill
    if cluster.scratch:
        assert not cluster.home.exists()


def test_stop_kills_a_server_that_does_not_shut_down(tmp_path: Path) -> None:
    cluster = pg_stack.start(tmp_path)
    pids = server_pids(cluster)
    assert cluster.pid is not None
    os.kill(cluster.pid, signal.SIGSTOP)  # deaf to the shutdown request
    began = time.monotonic()
    cluster.stop(timeout=1)
    assert time.monotonic() - began < 10
    assert_gone(cluster, pids)
    assert "database system is shut down" not in cluster.log_text()


def test_new_database_takes_only_plain_names(pg_cluster: pg_stack.PgCluster) -> None:
    for name in ("x; DROP DATABASE postgres", "Upper", "", "1st", "a" * 64):
        with pytest.raises(ValueError, match="not a plain database name"):
            pg_cluster.new_database(name)


def test_database_names_are_plain_and_unique() -> None:
    names = [pg_fixtures.database_name("test_x[Param-ün 1]" + "y" * 80) for _ in range(2)]
    assert names[0] != names[1]
    for name in names:
        assert pg_stack.DB_NAME.fullmatch(name), name


def test_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_stack, "DEBIAN_BINDIRS", "/nonexistent/*/bin")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "Debian package postgresql" in (pg_stack.missing() or "")


def outcome(reason: str) -> BaseException:
    """What unavailable() raised: skip and fail are BaseExceptions, made to get through."""
    try:
        pg_stack.unavailable(reason)
    except BaseException as e:
        return e
    raise AssertionError("unavailable() returned")


def test_unavailable_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_stack, "IN_CI", False)
    skipped = outcome("no server")
    assert isinstance(skipped, pytest.skip.Exception)
    assert "no server" in str(skipped)
    monkeypatch.setattr(pg_stack, "IN_CI", True)
    failed = outcome("no server")
    assert isinstance(failed, pytest.fail.Exception)
    assert "required under CI=true: no server" in str(failed)


def test_scratch_folders_of_dead_test_processes_are_swept() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    stale, live = (
        Path(tempfile.mkdtemp(prefix=pg_stack.SCRATCH_PREFIX, dir=pg_stack.SCRATCH_DIR))
        for _ in range(2)
    )
    try:
        (stale / pg_stack.SCRATCH_OWNER).write_text(f"{dead.pid}\n")
        (live / pg_stack.SCRATCH_OWNER).write_text(f"{os.getpid()}\n")
        pg_stack._sweep_scratch()
        assert not stale.exists()
        assert live.exists()
    finally:
        shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(live, ignore_errors=True)
