"""The PgBouncer harness: a real PgBouncer, in transaction mode, gone after the test."""

import shutil
import socket
import threading
from typing import Any

import psycopg
import pytest

from .harness.databases import POSTGRES_DSN
from .harness.pgbouncer import PgBouncer, pgbouncer


def pools(bouncer: PgBouncer, database: str) -> dict[str, Any]:
    (pool,) = [row for row in bouncer.show("POOLS") if row["database"] == database]
    return pool


@pytest.mark.full
def test_statements_reach_postgresql_through_pgbouncer() -> None:
    with pgbouncer() as bouncer:
        with psycopg.connect(bouncer.dsn("postgres"), autocommit=True) as conn:
            assert conn.info.port == bouncer.port
            row = conn.execute("SELECT inet_server_port(), 6 * 7").fetchone()
        server_port = int(psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN).get("port", 5432))
        assert row == (server_port, 42)
        assert pools(bouncer, "postgres")["pool_mode"] == "transaction"
        directory, port = bouncer.log.parent, bouncer.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not directory.exists()


@pytest.mark.full
def test_clients_share_one_server_connection_between_transactions() -> None:
    with (
        pgbouncer(default_pool_size=1) as bouncer,
        psycopg.connect(bouncer.dsn("postgres"), autocommit=True) as first,
        psycopg.connect(bouncer.dsn("postgres"), autocommit=True) as second,
    ):
        backend = "SELECT pg_backend_pid()"
        pid = first.execute(backend).fetchone()
        # Both clients are connected, and the second is served at once: in session mode
        # it would wait for the first to disconnect.
        assert second.execute(backend).fetchone() == pid

        # While the first client's transaction holds it, the second client waits...
        first.execute("BEGIN")
        first.execute("SELECT 1")
        seen: list[object] = []
        waiter = threading.Thread(
            target=lambda: seen.append(second.execute(backend).fetchone()), daemon=True
        )
        waiter.start()
        for _ in range(100):
            if pools(bouncer, "postgres")["cl_waiting"] == 1:
                break
            waiter.join(0.05)
        assert pools(bouncer, "postgres")["cl_waiting"] == 1
        assert seen == []
        # ...and gets it when that transaction ends.
        first.execute("COMMIT")
        waiter.join(5)
        assert seen == [pid]
        pool = pools(bouncer, "postgres")
        assert pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] == 1


def test_a_missing_binary_fails_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with (
        pytest.raises(pytest.fail.Exception, match="apt-get install -y pgbouncer"),
        pgbouncer(),
    ):
        pass
