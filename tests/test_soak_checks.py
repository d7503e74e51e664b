"""The soak's checks (bench/harness/soak_report.py) fail when they should.

The soak itself runs for an hour outside CI (bench/soak.py); these feed its checks
made-up records, to show that each one catches what it is there to catch: a lost
acknowledged write, a 5xx away from any sweep or other than a 503, memory growth and
a p99 window out of line.
"""

import sys
from collections import Counter

from .harness.paths import TEMPLATE_ROOT

sys.path.insert(0, str(TEMPLATE_ROOT / "bench"))

from harness.soak_api import State
from harness.soak_load import Results, Tracked, Unexpected
from harness.soak_report import checks, classify, latency, memory, verify
from harness.soak_watch import Sample, Sweep

V1 = State("a", "s-1", "first", 1)
V2 = State("a v2", "s-1", "second", 2)


def _row(state: State) -> tuple[str, State]:
    return ("id-1", state)


def test_an_acknowledged_update_missing_afterwards_is_a_lost_write() -> None:
    ledger = {"s-1": Tracked("s-1", "id-1", V2)}
    assert verify(ledger, {"s-1": _row(V2)})["lost"] == []
    lost = verify(ledger, {"s-1": _row(V1)})["lost"]
    assert [item["slug"] for item in lost] == ["s-1"]
    assert lost[0]["found"] == ["id-1", *V1.as_list()]


def test_an_acknowledged_create_or_delete_must_show() -> None:
    assert verify({"s-1": Tracked("s-1", "id-1", V1)}, {})["lost"]
    deleted = State(**{**V1.__dict__, "deleted": True})
    ledger = {"s-1": Tracked("s-1", "id-1", deleted)}
    assert verify(ledger, {"s-1": _row(V1)})["lost"], "a delete answered 204 left the row live"
    assert not verify(ledger, {"s-1": _row(deleted)})["lost"]
    assert not verify(ledger, {})["lost"], "a hard delete removes the row"


def test_an_unacknowledged_write_may_have_committed_or_not() -> None:
    ledger = {"s-1": Tracked("s-1", "id-1", V1, [V2])}
    for found, committed in ((V1, False), (V2, True)):
        verified = verify(ledger, {"s-1": _row(found)})
        assert verified["lost"] == []
        assert verified["committed_by_slug"] == {"s-1": committed}
    other = State("x", "s-1", "neither", 3)
    assert verify(ledger, {"s-1": _row(other)})["lost"]


def _failure(started: float, ended: float, status: int | None) -> Unexpected:
    kind = "no answer" if status is None else "5xx"
    return Unexpected(0, "update", "PATCH", "/p", started, ended, status, kind, "", "s-1")


def test_5xx_are_matched_against_the_sweeps() -> None:
    sweeps = [Sweep(1, 60.0, 60.3)]
    failures = [
        _failure(59.0, 60.1, 503),  # under way when the sweep began
        _failure(61.0, 61.2, 503),  # within the second after it ended
        _failure(59.9, 60.5, 500),  # during it, but a 500
        _failure(62.0, 62.5, 503),  # after it: unexplained
        _failure(10.0, 40.0, None),  # no answer, long before it
    ]
    found = classify(failures, sweeps, {"s-1": True})
    assert [u["started"] for u in found["during_sweep"]] == [59.0, 61.0, 59.9]
    assert [u["started"] for u in found["outside_sweep"]] == [62.0, 10.0]
    assert found["outside_sweep"][0]["seconds_after_last_sweep"] == 1.7
    assert [u["status"] for u in found["during_sweep_not_503"]] == [500]
    assert found["during_sweep"][2]["committed"] is True


def _results(p99s: list[float]) -> Results:
    latencies = [[1.0] * 99 + [p99] for p99 in p99s]
    return Results(60.0, latencies, [{"get": values} for values in latencies], Counter())


def test_a_window_whose_p99_doubles_is_flagged() -> None:
    steady = latency(_results([50.0, 10.0, 12.0, 19.0]), warmup_windows=1)
    assert steady["reference_p99_ms"] == 10.0
    assert not any(w.get("flagged") for w in steady["windows"]), "the warm-up is not judged"
    slow = latency(_results([10.0, 10.0, 12.0, 21.0]), warmup_windows=1)
    assert [w["window"] for w in slow["windows"] if w.get("flagged")] == [4]


def _samples(sizes: list[int]) -> list[Sample]:
    return [Sample(10.0 * n, size, {1: size}) for n, size in enumerate(sizes)]


def test_memory_growth_after_warm_up_is_measured_from_window_medians() -> None:
    # Windows of 30 s: 0-30 warm-up (ignored), 30-60 the baseline, 90-120 the end.
    warm = [50, 70, 90]  # 0, 10, 20 s
    flat = memory(_samples([*warm, 100, 101, 99, 100, 100, 100, 104, 200, 103]), 30, 30, 120)
    assert flat["growth"] == 0.04, "the medians: 100 after warm-up, 104 at the end"
    grown = memory(_samples([*warm, 100, 101, 99, 100, 100, 100, 106, 105, 107]), 30, 30, 120)
    assert grown["growth"] == 0.06


def test_every_check_can_fail() -> None:
    verified = verify({"s-1": Tracked("s-1", "id-1", V1)}, {})
    failures = [_failure(62.0, 62.5, 503), _failure(59.0, 60.1, 500)]
    classified = classify(failures, [Sweep(1, 60.0, 60.3)], {})
    stale = Unexpected(0, "get_own", "GET", "/p", 1.0, 1.1, 404, "stale read", "", None)
    mem = memory(_samples([50, 100, 100, 100, 110, 110]), 20, 20, 60)
    lat = latency(_results([10.0, 10.0, 30.0]), warmup_windows=1)
    results = checks(verified, classified, [*failures, stale], mem, 1, lat)
    assert [check["passed"] for check in results] == [False] * len(results)
