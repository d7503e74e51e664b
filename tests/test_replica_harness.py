"""The replica harness: a real streaming standby of the test server, gone after the test."""

import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

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


def slots(prefix: str = "") -> dict[str, tuple[object, ...]]:
    """The server's replication slots named `prefix...`: (temporary, active, restart_lsn)."""
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as primary:
        query = (
            "SELECT slot_name, temporary, active, restart_lsn::text FROM pg_replication_slots"
            " WHERE starts_with(slot_name, %s)"
        )
        return {name: tuple(rest) for name, *rest in primary.execute(query, [prefix])}


@pytest.mark.full
def test_writes_on_the_primary_replay_on_the_replica_unless_paused() -> None:
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
        directory, port, slot = standby.directory, standby.port, standby.slot
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not directory.exists()
    # The replica left neither its slot nor a WAL sender on the server.
    assert slot not in slots(slot)
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as primary:
        senders = "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s"
        assert primary.execute(senders, [directory.name]).fetchall() == [(0,)]


def test_a_server_that_cannot_stream_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = {
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "walsenders_in_use": "0",
        "max_replication_slots": "3",
        "slots_in_use": "3",
    }
    monkeypatch.setattr(replica_module, "_primary_settings", lambda: settings)
    pattern = r"(?s)wal_level = replica.*max_wal_senders.*max_replication_slots"
    with (
        pytest.raises(pytest.fail.Exception, match=pattern),
        replica(),
    ):
        pass


@pytest.mark.full
def test_the_replica_holds_a_slot_that_keeps_the_wal_it_needs_until_it_stops() -> None:
    with replica() as standby, psycopg.connect(POSTGRES_DSN, autocommit=True) as primary:

        def one(query: str, *params: object) -> Any:
            ((value,),) = primary.execute(query.encode(), params).fetchall()
            return value

        # The replica's WAL sender streams through a permanent slot, named in its settings.
        in_use = primary.execute(
            "SELECT slot_name, temporary FROM pg_replication_slots JOIN pg_stat_replication"
            " ON pid = active_pid WHERE application_name = %s",
            [standby.directory.name],
        ).fetchall()
        assert in_use == [(standby.slot, False)]
        slot = standby.slot
        assert standby.fetch("SHOW primary_slot_name") == [(slot,)]

        # Cut off, the replica's WAL sender is gone; the slot stays, at most where it left.
        standby.cut_off()
        assert eventually(lambda: slots(slot)[slot][1] is False)
        needed = received(standby)
        assert lsn(str(slots(slot)[slot][2])) <= needed
        # Move the primary's checkpoints past the segment the replica needs next, by more
        # than wal_keep_size: without a slot, the checkpoint removes it.
        size = int(one("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"))
        kept = int(one("SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'"))
        kept_segments = kept * 2**20 // size
        for _ in range(kept_segments + 3):
            primary.execute("SELECT pg_switch_wal()")
            primary.execute("CHECKPOINT")
        redo = lsn(one("SELECT redo_lsn::text FROM pg_control_checkpoint()"))
        assert redo // size - needed // size > kept_segments
        # The segment the replica reads next is the one that holds the byte at `needed`.
        # pg_walfile_name_offset names, for an LSN on a segment boundary (where a switch
        # leaves the replica), the segment that ends there: ask for the byte after it.
        wal_file = (
            "SELECT count(*) FROM pg_ls_waldir()"
            " WHERE name = (pg_walfile_name_offset(%s::pg_lsn + 1)).file_name"
        )
        assert one(wal_file, f"{needed >> 32:X}/{needed & 0xFFFFFFFF:X}") == 1

        # Back on the network, it streams through its slot again and catches up.
        standby.reconnect()
        assert eventually(lambda: slots(slot)[slot][1] is True)
        target = lsn(one("SELECT pg_current_wal_lsn()::text"))
        assert eventually(lambda: standby.replay_lsn() >= target, 30)
    assert slot not in slots(slot)


@pytest.mark.full
def test_a_slot_left_by_a_killed_run_is_dropped_and_a_live_runs_slot_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This test's own prefix, so that slots of other runs on the server play no part.
    prefix = f"{replica_module.SLOT_PREFIX}test_{secrets.token_hex(4)}_"
    monkeypatch.setattr(replica_module, "SLOT_PREFIX", prefix)
    abandoned, owned = f"{prefix}abandoned", f"{prefix}owned"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as server:
        create = "SELECT pg_create_physical_replication_slot(%s, true)"
        lock = f"SELECT pg_advisory_lock({replica_module.SLOT_LOCK})"
        try:
            # A killed run's slot pins the server's WAL from where it stood; a live run's
            # slot, its standby stopped for a test, is no WAL sender's either, but owned.
            server.execute(create, [abandoned])
            server.execute(create, [owned])
            server.execute(lock, [owned])
            with replica() as standby:
                assert standby.slot.startswith(prefix)
                assert set(slots(prefix)) == {owned, standby.slot}
            assert set(slots(prefix)) == {owned}
        finally:
            for name in slots(prefix):
                server.execute("SELECT pg_drop_replication_slot(%s)", [name])


@pytest.mark.full
def test_a_replica_that_fails_to_start_leaves_no_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"{replica_module.SLOT_PREFIX}test_{secrets.token_hex(4)}_"
    monkeypatch.setattr(replica_module, "SLOT_PREFIX", prefix)
    made: list[dict[str, tuple[object, ...]]] = []
    start = Replica.start

    def noting_the_slots(standby: Replica, timeout: float = 60) -> None:
        made.append(slots(prefix))
        start(standby, timeout)

    monkeypatch.setattr(Replica, "start", noting_the_slots)
    # pg_basebackup made the slot; the standby then refuses a setting it does not know.
    with pytest.raises(AssertionError, match="no_such_setting"), replica(no_such_setting=1):
        pass
    # One slot when the standby started, none after.
    assert [len(found) for found in made] == [1]
    assert slots(prefix) == {}
