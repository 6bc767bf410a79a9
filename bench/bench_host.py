"""Settlements per second through `pos-host serve`, beside the same database's bare floor.

For each database (a SQLite file in a temp folder; a throw-away PostgreSQL cluster from
tests/pg_stack.py, fsync on), and for 1 and 8 clients (threads), in the same run:

- **ours**: 2102 settlements over HTTP to a `pos-host --db DB serve --listen
  127.0.0.1:0` subprocess. Each client is a thread with its own `HttpTransport`,
  `InsuranceClient` and device id, signed in (9001) and with its person read (1101)
  before the timing; then `settle(person, 12.34 yuan, ...)` with a new message id each
  time. Each client pays for a holder of its own (the seeded holders, their balances
  raised so that none runs out), as counters serving different people do.
- **floor**: what a settlement must durably do at the least, on the same database, from
  the same number of threads, directly (no HTTP, no engine): one transaction with one
  INSERT of a settlement row (the `settlements` table itself, all 19 columns) and one
  UPDATE of a balance (`holders`), committed. SQLite as host/sqlite.py opens it (WAL,
  synchronous=FULL, BEGIN IMMEDIATE), on one connection shared by the threads under a
  lock, as the host does: SQLite writes one transaction at a time anyway, and threads
  with connections of their own would wait in SQLite's busy handler, which sleeps
  milliseconds. PostgreSQL with its defaults (fsync and synchronous_commit on), one
  connection per thread, as the host's pool does.

Between the two, to say where the time goes, two more on the same database, and one
for HTTP alone:

- **sql**: the engine's six statements for a 2102, bare, in one transaction: the
  message id looked up, the sign-in, the holder (FOR UPDATE on PostgreSQL, as the
  store asks), the balance's compare-and-set, the settlement row and the message row
  with a real answer (its JSON, about 1.2 KB). sql - floor is the engine's extra
  statements.
- **engine**: `InsuranceClient` over `EmbeddedTransport(Platform.handle)` in this
  process: the engine, plus the wire codec both ways as over HTTP, without HTTP.
  engine - sql is the engine's and the client's Python (checks, the split, ids, the
  envelopes) and JSON; ours - engine is HTTP (httpx, uvicorn, Starlette, the hop to
  a worker thread and back).
- **http**: `GET /health` to the same `serve`, from httpx clients like HttpTransport's:
  the HTTP stack's own round trip, without a body, the engine or a worker thread.

Each measurement is a burst: its threads start together and send as many as they can
for `--seconds`; the rate is all their settlements over the burst's wall time. The
bursts are interleaved. In each round, every (database, clients) group runs its five
series back to back, so that a round's ours/floor compares bursts a second apart;
the groups come in a shuffled order, and the series in an order that rotates each
round. One short warm-up burst of each comes first, unrecorded. The figures are the
medians of the rounds' rates. Ratios are floor rate / our rate, i.e. our time per
settlement in floors: the ratio of the medians, and the median of the rounds' ratios.

CPU per settlement is read from /proc over all rounds, for each process that works for
it: this one (the clients; or the in-process engine, and SQLite, which runs in the
process that uses it), `pos-host serve`, and the PostgreSQL server's processes. Their
sum per series gives a second ladder, in CPU, which the machine's load disturbs far
less than the rates. The machine has few CPUs: clients, server and database share
them, so the clients' own CPU counts in ours.

Every process started here (two `serve`s, the PostgreSQL server) is stopped at the end,
also on Ctrl-C or SIGTERM. No machine lock: nothing here is one per machine.

    .venv/bin/python bench/bench_host.py [--seconds 0.2] [--rounds 8] [--clients 1,8]
        [--db sqlite,postgresql] [--dir DIR] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_verify import filesystem_type

from host import wire
from host.client import InsuranceClient, Person
from host.platform import Platform
from host.sqlite import seed_file
from host.store import Store
from host.transport import KEEPALIVE_EXPIRY, EmbeddedTransport, HttpTransport

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
SERIES = ("floor", "sql", "engine", "ours", "http")
LADDER = SERIES[:4]  # floor -> ours; "http" is apart
AMOUNT_FEN = 1234
BALANCE_FEN = 10**13  # no holder runs out, however long the run
CARD_NUMBER = "BENCH0000001"
SERVE_WAIT = 30.0
TICK = os.sysconf("SC_CLK_TCK")

Op = Callable[[], None]


# --- CPU accounting from /proc ---------------------------------------------------------


def _ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (PostgreSQL's backends and workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    out.append(int(entry))
    return out


# --- the databases ---------------------------------------------------------------------


INSERT_SETTLEMENT = (
    "INSERT INTO settlements (setl_id, mdtrt_id, psn_no, ssn, sender, msgid, "
    "fixmedins_code, insutype, medfee_fen, inscp_fen, ownpay_fen, dedc_fen, hifp_fen, "
    "acct_fen, cash_fen, balc_fen, setl_time, day, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'settled')"
)
FLOOR_UPDATE = "UPDATE holders SET balance_fen = balance_fen - ? WHERE ssn = ?"
SQL_STATEMENTS = (
    "SELECT digest, answer FROM messages WHERE sender = ? AND msgid = ?",
    "SELECT sender, day FROM signins WHERE sign_no = ?",
    "SELECT ssn, name, phone, scheme, balance_fen, lost FROM holders WHERE ssn = ?",
    "UPDATE holders SET balance_fen = ? WHERE ssn = ? AND balance_fen = ?",
    INSERT_SETTLEMENT,
    "INSERT INTO messages (sender, msgid, infno, digest, answer, received) "
    "VALUES (?, ?, ?, ?, ?, ?)",
)


Exec = Callable[[str, tuple[object, ...]], Any]  # a SELECT's first row, or a write's rowcount


class Bare:
    """Direct statements on the database: `run(body)` calls body(execute) in one
    transaction and commits it. Any thread may use its own (SQLite: the shared one)."""

    # what the store appends to a SELECT of a row the unit will change (host/store.py)
    lock = ""

    def run(self, body: Callable[[Exec], Any]) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class BareSqlite(Bare):
    """One connection, as host/sqlite.py: WAL, synchronous=FULL, BEGIN IMMEDIATE, a lock."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.mutex = threading.Lock()

    def _execute(self, sql: str, params: tuple[object, ...]) -> Any:
        cur = self.db.execute(sql, params)
        return cur.fetchone() if sql.startswith("SELECT") else cur.rowcount

    def run(self, body: Callable[[Exec], Any]) -> Any:
        with self.mutex:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = body(self._execute)
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
        return result

    def close(self) -> None:
        self.db.close()


class BarePg(Bare):
    """One psycopg connection (a thread's own), PostgreSQL's defaults."""

    lock = " FOR UPDATE"  # as host/postgres.py: a second counter waits instead of colliding

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url)

    def run(self, body: Callable[[Exec], Any]) -> Any:
        with self.conn.transaction(), self.conn.cursor() as cur:

            def execute(sql: str, params: tuple[object, ...]) -> Any:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchone() if sql.startswith("SELECT") else cur.rowcount

            return body(execute)

    def close(self) -> None:
        self.conn.close()


@dataclass
class Database:
    """One database under test: its `--db` argument, its serve process, its connections."""

    name: str
    db: str  # a path or a URL, as `--db` takes it
    where: str  # for the report
    open_store: Callable[[], Store]
    bare: Callable[[], Bare]  # a thread's bare connection (SQLite: the shared one)
    server_pids: Callable[[], list[int]] = lambda: []  # PostgreSQL's processes
    serve: subprocess.Popen[bytes] | None = None
    url: str = ""
    closers: list[Callable[[], None]] = field(default_factory=list)


def sqlite_database(folder: Path) -> Database:
    path = folder / "host.sqlite3"
    shared: list[BareSqlite] = []

    def bare() -> Bare:
        if not shared:
            shared.append(BareSqlite(path))
        return shared[0]

    from host.sqlite import SqliteHost

    database = Database(
        "sqlite",
        str(path),
        f"{path} ({filesystem_type(folder)})",
        lambda: SqliteHost(path),
        bare,
    )

    def close() -> None:
        for b in shared:
            b.close()

    database.closers.append(close)
    return database


def postgres_database(folder: Path, stack: Any) -> Database:
    from host.postgres import PostgresStore

    cluster = stack.start(folder)
    url = cluster.url
    home = cluster.home
    database = Database(
        "postgresql",
        url,
        f"{url}, cluster in {home} ({filesystem_type(home)}), started in "
        f"{cluster.start_seconds:.1f} s",
        lambda: PostgresStore(url),
        lambda: BarePg(url),
        lambda: [cluster.pid, *_children(cluster.pid)] if cluster.pid else [],
    )
    database.closers.append(cluster.stop)
    return database


def prepare(database: Database) -> list[tuple[str, str]]:
    """The tables, the seeded holders with raised balances; the holders (ssn, scheme)."""
    from host.postgres import PostgresStore
    from host.sqlite import SqliteHost

    store: Store
    if database.name == "sqlite":
        store = SqliteHost(Path(database.db), seed=seed_file())
    else:
        store = PostgresStore(database.db, seed=seed_file())
    try:
        Platform(store)  # makes the platform's tables
        with store.atomic() as sql:
            sql.run("UPDATE holders SET balance_fen = ?, lost = 0", (BALANCE_FEN,))
            rows = sql.rows("SELECT ssn, scheme FROM holders ORDER BY ssn")
    finally:
        store.close()
    return [(str(ssn), str(scheme)) for ssn, scheme in rows]


# --- pos-host serve --------------------------------------------------------------------


def start_serve(database: Database, folder: Path) -> None:
    log = open(folder / f"serve-{database.name}.log", "ab")  # noqa: SIM115 - the child holds it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(REPO / ".venv" / "pycache")
    try:
        database.serve = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "--db", database.db, "serve"]
            + ["--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=REPO,
        )
    finally:
        log.close()
    assert database.serve.stdout is not None
    line = _readline(database.serve.stdout, SERVE_WAIT)
    prefix = "pos-host serve: listening on "
    if not line.startswith(prefix):
        tail = (folder / f"serve-{database.name}.log").read_text("utf-8", "replace")[-2000:]
        raise SystemExit(f"pos-host serve on {database.name} did not start: {line!r}\n{tail}")
    database.url = line[len(prefix) :].strip()


def _readline(stream: Any, timeout: float) -> str:
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0].decode("utf-8", "replace") if got else ""


def stop_serve(database: Database) -> None:
    proc = database.serve
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


# --- the four series -------------------------------------------------------------------


class Ids:
    """Unique 30-character ids per thread, cheap: the floor pays no randomness."""

    def __init__(self, tag: str) -> None:
        self.tag = f"{tag:<12.12}"
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"{self.tag}{self.n:018d}"


def settlement_row(
    ids: Ids, ssn: str, scheme: str, sender: str, msgid: str, after: int
) -> tuple[object, ...]:
    now = dt.datetime.now()
    return (
        ids.next(),
        ids.next(),
        "P" + ssn,
        ssn,
        sender,
        msgid,
        "H31010100001",
        scheme,
        AMOUNT_FEN,
        0,
        AMOUNT_FEN,
        0,
        0,
        AMOUNT_FEN,
        0,
        after,
        now.strftime("%Y-%m-%d %H:%M:%S"),
        now.date().isoformat(),
    )


def floor_op(bare: Bare, index: int, holder: tuple[str, str]) -> Op:
    ssn, scheme = holder
    ids = Ids(f"F{index}-{os.getpid()}")
    sender = f"BENCH-F{index}"

    def op() -> None:
        row = settlement_row(ids, ssn, scheme, sender, ids.next(), 0)

        def body(execute: Exec) -> None:
            execute(INSERT_SETTLEMENT, row)
            if execute(FLOOR_UPDATE, (AMOUNT_FEN, ssn)) != 1:
                raise RuntimeError("the floor's UPDATE changed no row")

        bare.run(body)

    return op


def sql_op(bare: Bare, index: int, holder: tuple[str, str], answer: str) -> Op:
    """The engine's six statements of a 2102 (host/platform.py's _once, _bill and _settle),
    in one transaction, with the same parameters: reads first, then the writes."""
    ssn, scheme = holder
    ids = Ids(f"Q{index}-{os.getpid()}")
    sender = f"H31010100001/BENCH-Q{index}"  # institution/device, as the engine's sender_of
    sign_no = f"bench-sign-{index}-{os.getpid()}"
    today = dt.date.today().isoformat()
    bare.run(
        lambda execute: execute(
            "INSERT INTO signins (sign_no, sender, opter, day, time) VALUES (?, ?, ?, ?, ?)",
            (sign_no, sender, "clerk", today, "00:00:00"),
        )
    )
    digest = "0" * 64
    select_msg, select_sign, select_holder, cas, insert_setl, insert_msg = SQL_STATEMENTS

    def op() -> None:
        msgid = ids.next()

        def body(execute: Exec) -> None:
            if execute(select_msg, (sender, msgid)) is not None:
                raise RuntimeError("a message id came twice")
            if execute(select_sign, (sign_no,)) is None:
                raise RuntimeError("the sign-in is gone")
            person = execute(select_holder + bare.lock, (ssn,))
            before = person[4]
            after = before - AMOUNT_FEN
            if execute(cas, (after, ssn, before)) != 1:
                raise RuntimeError("the compare-and-set changed no row")
            execute(insert_setl, settlement_row(ids, ssn, scheme, sender, msgid, after))
            now = dt.datetime.now().isoformat()
            execute(insert_msg, (sender, msgid, "2102", digest, answer, now))

        bare.run(body)

    return op


def client_op(client: InsuranceClient, person: Person) -> Op:
    def op() -> None:
        client.settle(person, AMOUNT_FEN, CARD_NUMBER, client.new_msgid())

    return op


# --- bursts and rounds -----------------------------------------------------------------


def burst(ops: list[Op], seconds: float) -> tuple[int, float]:
    """All `ops` in threads of their own for `seconds`: (settlements, wall seconds)."""
    n = len(ops)
    counts = [0] * n
    ends = [0.0] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)
    deadline = [0.0]

    def run(i: int) -> None:
        op = ops[i]
        barrier.wait()
        stop = deadline[0]
        done = 0
        try:
            while time.perf_counter() < stop:
                op()
                done += 1
        except BaseException as e:  # told after the burst, with its type
            errors.append(e)
        counts[i] = done
        ends[i] = time.perf_counter()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a settlement failed: {type(errors[0]).__name__}: {errors[0]}")
    return sum(counts), max(ends) - started


# --- setting up and measuring ----------------------------------------------------------


@dataclass
class Cell:
    """One (database, series, clients): each round's rate, and CPU over all rounds."""

    db: str
    series: str
    clients: int
    rates: list[float] = field(default_factory=list)
    settlements: int = 0
    bench_cpu_s: float = 0.0
    serve_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def summary(self) -> dict[str, Any]:
        n = max(self.settlements, 1)
        return {
            "db": self.db,
            "series": self.series,
            "clients": self.clients,
            "median_per_s": self.rate,
            "mean_per_s": statistics.fmean(self.rates),
            "min_per_s": min(self.rates),
            "max_per_s": max(self.rates),
            "ms_each": 1000 / self.rate,
            "rounds_per_s": self.rates,
            "settlements": self.settlements,
            "cpu_ms_each": {
                "bench": 1000 * self.bench_cpu_s / n,
                "serve": 1000 * self.serve_cpu_s / n,
                "postgres": 1000 * self.postgres_cpu_s / n,
            },
        }


@dataclass
class Workers:
    """A database's ops, one list per series, `max(clients)` long; and what to close."""

    ops: dict[str, list[Op]] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    sample_request: dict[str, Any] = field(default_factory=dict)
    sample_answer: dict[str, Any] = field(default_factory=dict)


def signed_client(transport: Any, device: str, ssn: str) -> tuple[InsuranceClient, Person]:
    client = InsuranceClient(transport, device=device)
    client.sign_in()
    return client, client.person(ssn)


def build_workers(database: Database, holders: list[tuple[str, str]], n: int) -> Workers:
    workers = Workers()
    mine = [holders[k % len(holders)] for k in range(n)]

    store = database.open_store()
    workers.closers.append(store.close)
    engine = Platform(store)
    answers: list[dict[str, Any]] = []

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        answer = engine.handle(request)
        if request.get("infno") == "2102" and not answers:
            workers.sample_request.update(request)
            answers.append(answer)
        return answer

    engine_clients = [
        signed_client(EmbeddedTransport(handle), f"BENCH-E{k}", mine[k][0]) for k in range(n)
    ]
    first, person = engine_clients[0]
    first.settle(person, AMOUNT_FEN, CARD_NUMBER, first.new_msgid())  # the sample answer
    workers.sample_answer.update(answers[0])
    answer_text = wire.dumps(answers[0]).decode("utf-8")
    workers.ops["engine"] = [client_op(c, p) for c, p in engine_clients]

    transports = [HttpTransport(database.url) for _ in range(n)]
    workers.closers.extend(t.close for t in transports)
    workers.ops["ours"] = [
        client_op(*signed_client(t, f"BENCH-H{k}", mine[k][0])) for k, t in enumerate(transports)
    ]

    def health_op() -> Op:
        import httpx

        # as HttpTransport's: idle connections dropped before the server drops them
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)
        client = httpx.Client(timeout=10.0, limits=limits, trust_env=False)
        workers.closers.append(client.close)
        url = database.url + "/health"

        def op() -> None:
            if client.get(url).status_code != 200:
                raise RuntimeError("GET /health did not answer 200")

        return op

    workers.ops["http"] = [health_op() for _ in range(n)]

    def bares() -> list[Bare]:
        made = [database.bare() for _ in range(n)]
        workers.closers.extend(b.close for b in {id(b): b for b in made}.values())
        return made

    floor_bares = bares()
    workers.ops["floor"] = [floor_op(floor_bares[k], k, mine[k]) for k in range(n)]
    sql_bares = bares()
    workers.ops["sql"] = [sql_op(sql_bares[k], k, mine[k], answer_text) for k in range(n)]
    return workers


def codec_us(request: dict[str, Any], answer: dict[str, Any], n: int = 300) -> float:
    """The wire codec's work for one settlement, hot, in one thread (median µs): the
    request and the answer each encoded and decoded once, as over HTTP and embedded."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        wire.loads(wire.dumps(request))
        wire.loads(wire.dumps(answer))
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def measure(
    databases: list[Database],
    workers: dict[str, Workers],
    clients: list[int],
    rounds: int,
    seconds: float,
    progress: Callable[[str], None],
) -> list[Cell]:
    import random

    cells = {(d.name, s, c): Cell(d.name, s, c) for d in databases for s in SERIES for c in clients}
    by_name = {d.name: d for d in databases}

    def run(cell: Cell, record: bool, length: float) -> None:
        database = by_name[cell.db]
        ops = workers[cell.db].ops[cell.series][: cell.clients]
        serve_pid = database.serve.pid if database.serve else 0
        pg_pids = database.server_pids()
        bench0, serve0 = time.process_time(), _ticks(serve_pid)
        pg0 = sum(_ticks(p) for p in pg_pids)
        done, elapsed = burst(ops, length)
        bench1, serve1 = time.process_time(), _ticks(serve_pid)
        pg1 = sum(_ticks(p) for p in pg_pids)
        if record:
            cell.rates.append(done / elapsed)
            cell.settlements += done
            cell.bench_cpu_s += bench1 - bench0
            cell.serve_cpu_s += (serve1 - serve0) / TICK
            cell.postgres_cpu_s += (pg1 - pg0) / TICK

    for cell in cells.values():  # warm-up: connections, prepared statements, caches
        run(cell, record=False, length=min(seconds, 0.1))
    groups = [(d.name, c) for d in databases for c in clients]
    for r in range(rounds):
        random.Random(r).shuffle(groups)
        order = SERIES[r % len(SERIES) :] + SERIES[: r % len(SERIES)]
        for db, n in groups:  # a group's series back to back: their ratios compare like times
            for series in order:
                run(cells[(db, series, n)], record=True, length=seconds)
        progress(f"round {r + 1}/{rounds} done")
    return list(cells.values())


# --- the report ------------------------------------------------------------------------


def _cpu_ms(cell: Cell) -> float:
    """CPU per settlement in every process that works for it: this one, PostgreSQL, and
    serve for the series that go through it (idle, it still wakes up now and then)."""
    cpu = cell.summary()["cpu_ms_each"]
    serve = cpu["serve"] if cell.series in ("ours", "http") else 0.0
    return float(cpu["bench"] + serve + cpu["postgres"])


def analyse(cells: list[Cell], clients: list[int]) -> dict[str, Any]:
    got = {(c.db, c.series, c.clients): c for c in cells}
    dbs = list(dict.fromkeys(c.db for c in cells))
    ratios = []
    for db in dbs:
        for n in clients:
            floor, ours = got[(db, "floor", n)], got[(db, "ours", n)]
            per_round = [f / o for f, o in zip(floor.rates, ours.rates, strict=True)]
            ms = {s: 1000 / got[(db, s, n)].rate for s in SERIES}
            cpu = {s: _cpu_ms(got[(db, s, n)]) for s in LADDER}
            ratios.append(
                {
                    "db": db,
                    "clients": n,
                    "floor_per_s": floor.rate,
                    "ours_per_s": ours.rate,
                    "ours_vs_floor": floor.rate / ours.rate,
                    "ours_vs_floor_rounds": per_round,
                    "ours_vs_floor_median_of_rounds": statistics.median(per_round),
                    "ms_each": ms,
                    "ms_added": {
                        "extra statements (sql - floor)": ms["sql"] - ms["floor"],
                        "engine's Python and JSON (engine - sql)": ms["engine"] - ms["sql"],
                        "HTTP (ours - engine)": ms["ours"] - ms["engine"],
                    },
                    "cpu_ms_each": cpu,
                    "cpu_ms_added": {
                        "extra statements (sql - floor)": cpu["sql"] - cpu["floor"],
                        "engine's Python and JSON (engine - sql)": cpu["engine"] - cpu["sql"],
                        "HTTP (ours - engine)": cpu["ours"] - cpu["engine"],
                    },
                    "serve_ceiling_per_s": 1000 / max(ours.summary()["cpu_ms_each"]["serve"], 1e-9),
                }
            )
    return {"ratios": ratios}


def print_report(res: dict[str, Any]) -> None:
    print(
        "pos-host serve: 2102 settlements per second, beside the same database's bare "
        "INSERT+UPDATE (the floor)"
    )
    print(
        f"{res['rounds']} interleaved rounds of {res['seconds']:g} s bursts (+1 warm-up); "
        f"{AMOUNT_FEN / 100:.2f} yuan a settlement; Python {res['python']}, "
        f"{res['cpus']} CPUs"
    )
    load = res["load_average"]
    print(f"load average (1 min) {load['before']:.1f} before, {load['after']:.1f} after")
    for name, where in res["databases"].items():
        print(f"{name}: {where}")
    for note in res["notes"]:
        print(f"note: {note}")
    print()
    header = (
        f"{'db':<11} {'series':<7} {'clients':>7} {'per s':>8} {'ms each':>8} "
        f"{'rounds: per s':>16}   {'CPU ms each: bench':>18} {'serve':>6} {'pg':>6}"
    )
    print(header)
    print("-" * len(header))
    for c in res["cells"]:
        cpu = c["cpu_ms_each"]
        spread = f"{c['min_per_s']:.0f}-{c['max_per_s']:.0f}"
        pg = f"{cpu['postgres']:6.2f}" if c["db"] == "postgresql" else f"{'':>6}"
        serve = f"{cpu['serve']:6.2f}" if c["series"] in ("ours", "http") else f"{'':>6}"
        print(
            f"{c['db']:<11} {c['series']:<7} {c['clients']:>7} {c['median_per_s']:>8.0f} "
            f"{c['ms_each']:>8.3f} {spread:>16}   {cpu['bench']:>18.2f} {serve} {pg}"
        )
    print()
    print("ours/floor = floor rate / our rate = our time per settlement in floors")
    header = (
        f"{'db':<11} {'clients':>7} {'floor/s':>8} {'ours/s':>8}  {'ours/floor':>10}  "
        f"{'median of rounds':>16}  {'rounds':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in res["analysis"]["ratios"]:
        rounds = r["ours_vs_floor_rounds"]
        spread = f"{min(rounds):.2f}-{max(rounds):.2f}x"
        print(
            f"{r['db']:<11} {r['clients']:>7} {r['floor_per_s']:>8.0f} {r['ours_per_s']:>8.0f}  "
            f"{r['ours_vs_floor']:>9.2f}x  {r['ours_vs_floor_median_of_rounds']:>15.2f}x  "
            f"{spread:>12}"
        )
    print()
    print("where a settlement's time goes (ms each, from the medians: 1000 / rate)")
    header = (
        f"{'db':<11} {'clients':>7} {'floor':>7} {'+6 stmts':>9} {'+engine':>8} "
        f"{'+HTTP':>7} {'= ours':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in res["analysis"]["ratios"]:
        ms, added = r["ms_each"], list(r["ms_added"].values())
        print(
            f"{r['db']:<11} {r['clients']:>7} {ms['floor']:>7.3f} {added[0]:>+9.3f} "
            f"{added[1]:>+8.3f} {added[2]:>+7.3f} {ms['ours']:>7.3f}"
        )
    print()
    print(
        "where a settlement's CPU goes (ms each, this process + serve + PostgreSQL; "
        "serve's alone, and the rate its one GIL allows)"
    )
    header = (
        f"{'db':<11} {'clients':>7} {'floor':>7} {'+6 stmts':>9} {'+engine':>8} "
        f"{'+HTTP':>7} {'= ours':>7}  {'serve':>6} {'1/serve':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in res["analysis"]["ratios"]:
        cpu, added = r["cpu_ms_each"], list(r["cpu_ms_added"].values())
        serve = 1000 / r["serve_ceiling_per_s"]
        print(
            f"{r['db']:<11} {r['clients']:>7} {cpu['floor']:>7.3f} {added[0]:>+9.3f} "
            f"{added[1]:>+8.3f} {added[2]:>+7.3f} {cpu['ours']:>7.3f}  {serve:>6.2f} "
            f"{r['serve_ceiling_per_s']:>6.0f}/s"
        )
    print(
        f"the wire codec both ways, hot in one thread: {res['codec_us']:.0f} µs a settlement "
        f"(request {res['request_bytes']} bytes, answer {res['answer_bytes']} bytes)"
    )
    print()
    parts = [
        f"{r['db']} {r['clients']} client{'s' if r['clients'] > 1 else ''} "
        f"{r['ours_vs_floor']:.1f}x"
        for r in res["analysis"]["ratios"]
    ]
    print("ours/floor, time per settlement (median): " + ", ".join(parts))


# --- main ------------------------------------------------------------------------------


def _clients(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("give client counts as 1,8") from None
    if not values or any(v < 1 or v > 64 for v in values):
        raise argparse.ArgumentTypeError("client counts go from 1 to 64, such as 1,8")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="a burst (default 0.2)")
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds (default 8)")
    parser.add_argument("--clients", type=_clients, default=[1, 8], help="default 1,8")
    parser.add_argument(
        "--db", default="sqlite,postgresql", help="sqlite, postgresql or both (the default)"
    )
    parser.add_argument("--dir", type=Path, help="folder for the databases (default: a temp one)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the folder and its logs")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not args.seconds > 0:
        parser.error("--rounds must be at least 1 and --seconds above 0")
    wanted = [d.strip() for d in args.db.split(",") if d.strip()]
    if not wanted or any(d not in ("sqlite", "postgresql") for d in wanted):
        parser.error("--db takes sqlite, postgresql or sqlite,postgresql")

    # SIGTERM unwinds like Ctrl-C, so every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    def progress(text: str) -> None:
        print(f"bench_host: {text}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="shebao-bench-host-", dir=args.dir))
    databases: list[Database] = []
    workers: dict[str, Workers] = {}
    notes: list[str] = []
    try:
        if "sqlite" in wanted:
            (folder / "sqlite").mkdir()
            databases.append(sqlite_database(folder / "sqlite"))
        if "postgresql" in wanted:
            sys.path.insert(0, str(TESTS))
            import pg_stack

            why = pg_stack.missing()
            if why:
                notes.append(f"PostgreSQL not measured: {why}")
            else:
                progress("starting a PostgreSQL cluster")
                databases.append(postgres_database(folder / "pg", pg_stack))
        if not databases:
            raise SystemExit("bench_host: no database to measure: " + "; ".join(notes))
        for database in databases:
            holders = prepare(database)
            progress(f"starting pos-host serve on {database.name}")
            start_serve(database, folder)
            workers[database.name] = build_workers(database, holders, max(args.clients))
        first = workers[databases[0].name]
        codec = codec_us(first.sample_request, first.sample_answer)
        cells = measure(databases, workers, args.clients, args.rounds, args.seconds, progress)
    finally:
        for w in workers.values():
            for close in w.closers:
                with contextlib.suppress(Exception):
                    close()
        for database in databases:
            stop_serve(database)
            for close in database.closers:
                with contextlib.suppress(Exception):
                    close()
        if args.keep:
            progress(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    results: dict[str, Any] = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "clients": args.clients,
        "amount_fen": AMOUNT_FEN,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "databases": {d.name: d.where for d in databases},
        "notes": notes,
        "codec_us": codec,
        "request_bytes": len(wire.dumps(first.sample_request)),
        "answer_bytes": len(wire.dumps(first.sample_answer)),
        "cells": [c.summary() for c in cells],
        "analysis": analyse(cells, args.clients),
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
