"""pytest plugin: a real PostgreSQL cluster per test process, a fresh database per test.

Under pytest-xdist every worker is its own process with its own session: one cluster each
(its own folder, its own port), so workers never share a database or wait for each other.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pg_stack
import pytest

_serial = itertools.count(1)  # database names: never one an earlier test of the worker had


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pg_stack.PgCluster]:
    """The worker's cluster, started for its first PostgreSQL test (about half a second)
    and stopped at the end of the session. Tests may kill9()/restart() it; pg_url starts
    it again for the next test if one left it down."""
    reason = pg_stack.missing()
    if reason:
        pg_stack.unavailable(reason)
    try:
        cluster = pg_stack.start(tmp_path_factory.mktemp("pg"))
    except (RuntimeError, TimeoutError, OSError) as e:
        pg_stack.unavailable(str(e))
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pg_stack.PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database of the worker's cluster, dropped after the test."""
    pg_cluster.ensure_running()
    name = database_name(request.node.name)
    url = pg_cluster.new_database(name)
    yield url
    pg_cluster.ensure_running()  # the test may have killed it
    pg_cluster.drop_database(name)


def database_name(test_name: str) -> str:
    """t<n>_<test name>, plain and within PostgreSQL's 63 bytes: the log says which test."""
    plain = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")
    return f"t{next(_serial)}_{plain}"[:63]
