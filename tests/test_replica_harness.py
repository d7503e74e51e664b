"""The replica harness: a real streaming standby of the test server, gone after the test."""

import socket
import time
from collections.abc import Callable

import psycopg
import pytest

from .harness import replica as replica_module
from .harness.databases import POSTGRES_DSN, scratch_database
from .harness.replica import Replica, lsn, replica


def eventually(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def notes(standby: Replica, database: str) -> list[tuple[object, ...]]:
    return standby.fetch("SELECT id FROM note ORDER BY id", database)


def received(standby: Replica) -> int:
    ((position,),) = standby.fetch("SELECT pg_last_wal_receive_lsn()::text")
    return lsn(position)


def permanent_slots() -> list[tuple[object, ...]]:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as primary:
        query = "SELECT slot_name FROM pg_replication_slots WHERE NOT temporary ORDER BY 1"
        return primary.execute(query).fetchall()


@pytest.mark.full
def test_writes_on_the_primary_replay_on_the_replica_unless_paused() -> None:
    slots_before = permanent_slots()
    with replica() as standby, scratch_database("postgresql", "replica") as url:
        database = url.rsplit("/", 1)[1]
        assert standby.fetch("SELECT pg_is_in_recovery(), inet_server_port()") == [
            (True, standby.port)
        ]
        primary_dsn = psycopg.conninfo.make_conninfo(POSTGRES_DSN, dbname=database)
        with psycopg.connect(primary_dsn, autocommit=True) as primary:

            def write(statement: str) -> int:
                primary.execute(statement.encode())
                ((position,),) = primary.execute("SELECT pg_current_wal_lsn()::text").fetchall()
                return lsn(position)

            write("CREATE TABLE note (id integer PRIMARY KEY)")
            first = write("INSERT INTO note VALUES (1)")
            assert eventually(lambda: standby.replay_lsn() >= first)
            assert notes(standby, database) == [(1,)]

            standby.pause_replay()
            paused_at = standby.replay_lsn()
            second = write("INSERT INTO note VALUES (2)")
            # The replica has the row's WAL in hand: only the pause keeps the row out.
            assert eventually(lambda: received(standby) >= second)
            assert notes(standby, database) == [(1,)]
            assert standby.replay_lsn() == paused_at < second

            standby.resume_replay()
            assert eventually(lambda: standby.replay_lsn() >= second)
            assert notes(standby, database) == [(1,), (2,)]

            # Stopped mid-run, it refuses connections; started again, it catches up.
            standby.stop()
            with pytest.raises(psycopg.OperationalError):
                standby.fetch("SELECT 1")
            third = write("INSERT INTO note VALUES (3)")
            standby.start()
            assert eventually(lambda: standby.replay_lsn() >= third)
            assert notes(standby, database) == [(1,), (2,), (3,)]

            # Cut off from the primary, it serves what it has and receives nothing more...
            standby.cut_off()
            assert not standby.streaming()
            fourth = write("INSERT INTO note VALUES (4)")
            time.sleep(0.5)
            assert received(standby) < fourth
            assert notes(standby, database) == [(1,), (2,), (3,)]
            # ... until the outage ends.
            standby.reconnect()
            assert eventually(lambda: standby.replay_lsn() >= fourth)
            assert notes(standby, database) == [(1,), (2,), (3,), (4,)]
        directory, port = standby.directory, standby.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not directory.exists()
    # Neither the replica nor its base backup left a slot or a WAL sender on the server.
    assert permanent_slots() == slots_before
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as primary:
        senders = "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s"
        assert primary.execute(senders, [directory.name]).fetchall() == [(0,)]


def test_a_server_that_cannot_stream_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "walsenders_in_use": "0",
        "max_replication_slots": "10",
        "slots_in_use": "0",
    }
    monkeypatch.setattr(replica_module, "_primary_settings", lambda: settings)
    with (
        pytest.raises(pytest.fail.Exception, match=r"(?s)wal_level = replica.*max_wal_senders"),
        replica(),
    ):
        pass
