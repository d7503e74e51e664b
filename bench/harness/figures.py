"""From measured windows to figures: per endpoint and app, ratios to the floor, targets.

Each (endpoint, app) is measured in several rounds. Throughput and percentiles are
the median over rounds (one slow round does not move it); CPU per request is the
total CPU over the total requests of all rounds; max latency, timeouts and errors are
the worst and the sums, because a stall in any round is a stall.
"""

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from .endpoints import ENDPOINTS

TITLES = {endpoint.key: endpoint.title for endpoint in ENDPOINTS}
from .load import LoadResult

SERVICE, FLOOR, PING, PREVIOUS = "service", "floor", "service_ping", "previous"
# Issue 24's "today's render": the template at main's commit before the kit landed, which
# its second target holds the service against (run.py renders it by default).
TODAY_REF = "2a4d14cea3e1f4b797d682db6df7efa5f061c22a"


def previous_name(ref: str | None) -> str:
    """What the target calls the previous render: today's render, or the one of `ref`."""
    if ref is None or TODAY_REF.startswith(ref) or ref.startswith(TODAY_REF[:7]):
        return "today's render (main at 2a4d14c, before the kit)"
    return f"the render of {ref}"


# The endpoints whose server CPU per request may not rise by more than this factor
# against the previous render's, measured in the same run (in process, bench/layers.py).
# Issue 24: 1.03 on every endpoint (was 1.05 on four).
AGAINST_PREVIOUS = dict.fromkeys(
    ("get", "list_offset", "list_cursor", "with_tasks", "create"), 1.03
)
# Issue 17: the most the service's CPU per request may be, in process, as a multiple of
# the leanest ORM app's (target 1) and of the usual template pattern's (target 2), both
# in bench/orm_apps.py, measured in the same rounds and answering the same JSON.
AGAINST_ORM = {
    "against_lean": (
        "fastapi_orm",
        "the leanest ORM app's",
        dict.fromkeys(("get", "list_offset", "list_cursor", "with_tasks", "create"), 1.10),
    ),
    "against_usual": ("usual", "the usual template pattern's", {"get": 0.6, "create": 0.5}),
}
# Issue 24: the service at most 1.10x the leanest app written with the same production
# features (request ids, body limit, request metrics, `Location` on 201, a create that
# returns its key), every endpoint, in process, paired rounds.
AGAINST_FEATURES = dict.fromkeys(
    ("get", "list_offset", "list_cursor", "with_tasks", "create"), 1.10
)


def pooled(layers: dict[str, Any], key: str, others: list[dict[str, Any]]) -> dict[str, Any]:
    """`layers[key]` per endpoint, with `cpu` the median of this run's paired ratio and
    the same ratio of each other machine's run given (`--other-runs`): a verdict that no
    one machine's speed, clock or neighbours decide."""
    out: dict[str, Any] = {}
    for endpoint, ratio in layers.get(key, {}).items():
        theirs = [
            run["layers"][key][endpoint]["cpu"]
            for run in others
            if endpoint in ((run.get("layers") or {}).get(key) or {})
        ]
        out[endpoint] = {**ratio, "this_run": ratio["cpu"], "other_runs": theirs}
        if theirs:
            out[endpoint]["cpu"] = round(statistics.median([ratio["cpu"], *theirs]), 4)
    return out


def issue24(
    layers: dict[str, Any], others: list[dict[str, Any]], previous_ref: str | None = TODAY_REF
) -> list[dict[str, Any]]:
    """Issue 24's two targets, per endpoint: over the leanest app with features (1.10)
    and over the previous render (1.03). Where callgrind counted them, each judges the
    ratio of machine instructions per request, which no machine's speed, clock or
    neighbours move; the paired in-process CPU ratio (pooled over the runs of every
    machine given) is shown beside. Without instructions, the CPU ratio judges, and
    function calls per request must not pass the limit either."""
    checks: list[dict[str, Any]] = []
    calls = layers.get("calls_against", {})
    counted = layers.get("instructions_against", {})
    same_json = layers.get("same_json", {})
    targets = (
        (
            "24a",
            "against_features",
            "fastapi_orm_features",
            AGAINST_FEATURES,
            "the leanest app with the same features",
        ),
        ("24b", "against_previous", "previous", AGAINST_PREVIOUS, previous_name(previous_ref)),
    )
    for number, key, app, limits, whose in targets:
        measured = pooled(layers, key, others)
        for endpoint in ENDPOINTS:
            limit, ratio = limits.get(endpoint.key), measured.get(endpoint.key)
            if limit is None or ratio is None:
                continue
            json = {k: c for k, c in same_json.get(app, {}).items() if k.startswith(endpoint.key)}
            differ = not json or not all(check["identical"] for check in json.values())
            call_ratio = calls.get(app, {}).get(endpoint.key)
            instructions = counted.get(app, {}).get(endpoint.key)
            value = f"{ratio['cpu']:.3f}x CPU"
            if instructions is not None:
                value = f"{instructions:.3f}x instructions; " + value
            if ratio["other_runs"]:
                value += f" (median of {len(ratio['other_runs']) + 1} runs; this one {ratio['this_run']:.3f}x)"
            else:
                value += f" (rounds {min(ratio['by_round']):.3f}-{max(ratio['by_round']):.3f})"
            value += (
                f", {call_ratio:.3f}x calls" if call_ratio is not None else ", calls not counted"
            )
            if differ:
                value += "; JSON not the service's" if json else "; JSON not checked"
            checks.append(
                {
                    "endpoint": endpoint.title,
                    "check": f"issue 24 target {number}, {endpoint.title}: <= {limit:g}x {whose} "
                    "(in process: instructions per request where counted, else paired CPU "
                    "and function calls)",
                    "value": value,
                    "judged_on": "instructions" if instructions is not None else "cpu",
                    "passed": not differ
                    and (
                        instructions <= limit
                        if instructions is not None
                        else ratio["cpu"] <= limit and (call_ratio is None or call_ratio <= limit)
                    ),
                }
            )
    return checks


@dataclass(frozen=True)
class Window:
    endpoint: str
    app: str
    round: int
    load: LoadResult
    server_cpu_s: float
    pg_cpu_s: float
    pg_new_backends: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = self.load.as_dict()
        return data


def _per_request_ms(seconds: float, requests: int) -> float | None:
    return round(1000 * seconds / requests, 4) if requests else None


def summarise(windows: list[Window]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    apps = list(dict.fromkeys(w.app for w in windows))  # the anchors' too, in load order
    for endpoint in ENDPOINTS:
        for app in apps:
            own = [w for w in windows if w.endpoint == endpoint.key and w.app == app]
            if not own:
                continue
            requests = sum(w.load.requests for w in own)
            errors = {
                kind: sum(w.load.errors.get(kind, 0) for w in own)
                for kind in ("connect", "read", "write", "status", "timeout")
            }
            summary.setdefault(endpoint.key, {})[app] = {
                "rounds": len(own),
                "requests": requests,
                "rps": round(statistics.median(w.load.rps for w in own), 1),
                "p50_ms": round(statistics.median(w.load.p50_ms for w in own), 2),
                "p99_ms": round(statistics.median(w.load.p99_ms for w in own), 2),
                "max_ms": round(max(w.load.max_ms for w in own), 1),
                "slow": sum(w.load.slow for w in own),
                "timeouts": errors["timeout"],
                "errors": sum(errors.values()) - errors["timeout"],
                "error_kinds": errors,
                "cpu_ms": _per_request_ms(sum(w.server_cpu_s for w in own), requests),
                "cpu_ms_by_round": [_per_request_ms(w.server_cpu_s, w.load.requests) for w in own],
                "pg_cpu_ms": _per_request_ms(sum(w.pg_cpu_s for w in own), requests),
                "pg_new_backends": sum(w.pg_new_backends for w in own),
            }
    return summary


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def ratios(
    summary: dict[str, dict[str, dict[str, Any]]], counts: dict[str, dict[str, Any]], app: str
) -> dict[str, dict[str, Any]]:
    """`app` divided by the floor, per endpoint; per-round CPU ratios show the spread."""
    out: dict[str, dict[str, Any]] = {}
    for endpoint, apps in summary.items():
        if app not in apps or FLOOR not in apps:
            continue
        mine, floor = apps[app], apps[FLOOR]
        by_round = [
            _ratio(a, b)
            for a, b in zip(mine["cpu_ms_by_round"], floor["cpu_ms_by_round"], strict=False)
        ]
        trips = counts.get(endpoint, {})
        out[endpoint] = {
            "cpu": _ratio(mine["cpu_ms"], floor["cpu_ms"]),
            "cpu_by_round": by_round,
            "rps": _ratio(mine["rps"], floor["rps"]),
            "p50": _ratio(mine["p50_ms"], floor["p50_ms"]),
            "p99": _ratio(mine["p99_ms"], floor["p99_ms"]),
            "pg_cpu": _ratio(mine["pg_cpu_ms"], floor["pg_cpu_ms"]),
            "round_trips": _ratio(
                trips.get(app, {}).get("round_trips"), trips.get(FLOOR, {}).get("round_trips")
            ),
        }
    return out


def against_previous(
    summary: dict[str, dict[str, dict[str, Any]]],
    counts: dict[str, dict[str, Any]],
    layers: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """The current render next to the previous one, per endpoint: CPU per request in
    process (layers) and under HTTP load, round trips and statements on the wire."""
    out: dict[str, dict[str, Any]] = {}
    in_process = layers.get("against_previous", {})
    for endpoint in ENDPOINTS:
        key = endpoint.key
        http = summary.get(key, {})
        wire = counts.get(key, {})
        if PREVIOUS not in http and key not in in_process and PREVIOUS not in wire:
            continue
        mine, theirs = http.get(SERVICE, {}), http.get(PREVIOUS, {})
        by_round = [
            _ratio(a, b)
            for a, b in zip(
                mine.get("cpu_ms_by_round", []), theirs.get("cpu_ms_by_round", []), strict=False
            )
        ]
        out[key] = {
            "layers": in_process.get(key),
            "http_cpu_ms": {PREVIOUS: theirs.get("cpu_ms"), SERVICE: mine.get("cpu_ms")},
            "http_cpu": _ratio(mine.get("cpu_ms"), theirs.get("cpu_ms")),
            "http_cpu_by_round": by_round,
            "round_trips": {
                app: wire.get(app, {}).get("round_trips") for app in (PREVIOUS, SERVICE)
            },
            "statements": {app: wire.get(app, {}).get("statements") for app in (PREVIOUS, SERVICE)},
        }
    return out


def against_anchors(
    summary: dict[str, dict[str, dict[str, Any]]],
    counts: dict[str, dict[str, Any]],
    anchors: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """The service over each hand-written app served by uvicorn, per endpoint: server CPU
    per request (and by round), PostgreSQL's CPU per request, and round trips."""
    out: dict[str, dict[str, Any]] = {}
    for anchor in anchors:
        for endpoint in ENDPOINTS:
            http = summary.get(endpoint.key, {})
            wire = counts.get(endpoint.key, {})
            if anchor not in http and anchor not in wire:
                continue
            mine, theirs = http.get(SERVICE, {}), http.get(anchor, {})
            out.setdefault(anchor, {})[endpoint.key] = {
                "cpu": _ratio(mine.get("cpu_ms"), theirs.get("cpu_ms")),
                "cpu_by_round": [
                    _ratio(a, b)
                    for a, b in zip(
                        mine.get("cpu_ms_by_round", []),
                        theirs.get("cpu_ms_by_round", []),
                        strict=False,
                    )
                ],
                "cpu_ms": {anchor: theirs.get("cpu_ms"), SERVICE: mine.get("cpu_ms")},
                "pg_cpu_ms": {anchor: theirs.get("pg_cpu_ms"), SERVICE: mine.get("pg_cpu_ms")},
                "pg_cpu": _ratio(mine.get("pg_cpu_ms"), theirs.get("pg_cpu_ms")),
                "round_trips": {a: wire.get(a, {}).get("round_trips") for a in (anchor, SERVICE)},
                "statements": {a: wire.get(a, {}).get("statements") for a in (anchor, SERVICE)},
            }
    return out


def targets(
    summary: dict[str, dict[str, dict[str, Any]]],
    service_ratios: dict[str, dict[str, Any]],
    counts: dict[str, dict[str, Any]],
    slow_ms: int,
    layers: dict[str, Any] | None = None,
    others: list[dict[str, Any]] | None = None,
    previous_ref: str | None = TODAY_REF,
) -> list[dict[str, Any]]:
    """Every pass/fail the issue asks for, each with the figure it was judged on."""
    checks: list[dict[str, Any]] = []
    for endpoint in ENDPOINTS:
        ratio = service_ratios.get(endpoint.key, {}).get("cpu")
        if endpoint.cpu_target is not None and ratio is not None:
            checks.append(
                {
                    "endpoint": endpoint.title,
                    "check": f"issue 17 target 3, {endpoint.title}: server CPU/request below "
                    f"{endpoint.cpu_target:g}x the floor (the run of 2026-11-28)",
                    "value": f"{ratio:.2f}x",
                    "passed": ratio < endpoint.cpu_target,
                }
            )
    for app in (SERVICE, PING, PREVIOUS):
        for endpoint in ENDPOINTS:
            figures = summary.get(endpoint.key, {}).get(app)
            if figures is None:
                continue
            stalled = figures["timeouts"] or figures["errors"] or figures["slow"]
            checks.append(
                {
                    "endpoint": endpoint.title,
                    "check": f"no stall, {app}, {endpoint.title} "
                    f"(no timeout, no error, no request over {slow_ms} ms)",
                    "value": f"max {figures['max_ms']:.0f} ms, {figures['timeouts']} timeouts, "
                    f"{figures['errors']} errors, {figures['slow']} slow",
                    "passed": not stalled,
                }
            )
    small = counts.get("with_tasks_5", {}).get(SERVICE, {}).get("statements")
    large = counts.get("with_tasks_50", {}).get(SERVICE, {}).get("statements")
    if small is not None and large is not None:
        checks.append(
            {
                "check": "parents with children: same statements per request for page sizes 5 and 50",
                "value": f"{small:g} and {large:g}",
                "passed": small == large,
            }
        )
    in_process = (layers or {}).get("against_previous", {})
    for endpoint in ENDPOINTS:
        limit = AGAINST_PREVIOUS.get(endpoint.key)
        measured = in_process.get(endpoint.key)
        if limit is not None and measured is not None:
            checks.append(
                {
                    "check": f"{endpoint.title}: server CPU/request <= {limit:g}x the previous "
                    "render's (in process)",
                    "value": f"{measured['cpu']:.3f}x (rounds "
                    f"{min(measured['by_round']):.3f}-{max(measured['by_round']):.3f})",
                    "passed": measured["cpu"] <= limit,
                }
            )
    checks += against_orm_apps(layers or {})
    checks += issue24(layers or {}, others or [], previous_ref)
    for endpoint in ENDPOINTS:
        wire = counts.get(endpoint.key, {})
        if PREVIOUS in wire and SERVICE in wire:
            before, after = wire[PREVIOUS]["round_trips"], wire[SERVICE]["round_trips"]
            checks.append(
                {
                    "check": f"{endpoint.title}: round trips/request as the previous render's",
                    "value": f"{after:g} (previous {before:g})",
                    "passed": after <= before,
                }
            )
    return checks


def against_orm_apps(layers: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's targets 1 and 2: the service over each hand-written ORM app, per
    endpoint. A ratio counts only if that app answered the service's JSON (checked by
    bench/layers.py before it measured): otherwise the two did different work."""
    checks: list[dict[str, Any]] = []
    same_json = layers.get("same_json", {})
    for number, (key, (app, whose, limits)) in enumerate(AGAINST_ORM.items(), start=1):
        measured = layers.get(key, {})
        for endpoint in ENDPOINTS:
            limit, ratio = limits.get(endpoint.key), measured.get(endpoint.key)
            if limit is None or ratio is None:
                continue
            json = {k: c for k, c in same_json.get(app, {}).items() if k.startswith(endpoint.key)}
            differ = not json or not all(check["identical"] for check in json.values())
            rounds = ratio["by_round"]
            value = f"{ratio['cpu']:.3f}x (rounds {min(rounds):.3f}-{max(rounds):.3f})"
            if differ:
                value += "; JSON not the service's" if json else "; JSON not checked"
            checks.append(
                {
                    "endpoint": endpoint.title,
                    "check": f"issue 17 target {number}, {endpoint.title}: server CPU/request "
                    f"<= {limit:g}x {whose} (in process)",
                    "value": value,
                    "passed": ratio["cpu"] <= limit and not differ,
                }
            )
    return checks


# Round trips a read may take: one per statement it needs (issue 17, target 4).
READ_STATEMENTS = {"get": 1, "list_offset": 2, "list_cursor": 1, "with_tasks": 3}


def verdict(
    checks: list[dict[str, Any]],
    counts: dict[str, dict[str, Any]],
    previous_ref: str | None = TODAY_REF,
) -> list[dict[str, Any]]:
    """Issue 17's four targets, each judged on every check that belongs to it."""

    def rolled(title: str, mine: list[dict[str, Any]]) -> dict[str, Any]:
        failed = [c for c in mine if not c["passed"]]
        shown = failed or mine
        value = "; ".join(f"{c['endpoint']} {c['value']}" for c in shown)
        if not mine:
            return {"target": title, "value": "not measured in this run", "passed": False}
        head = f"{len(mine) - len(failed)} of {len(mine)} pass"
        return {"target": title, "value": f"{head}: {value}", "passed": not failed}

    def numbered(n: int) -> list[dict[str, Any]]:
        return [c for c in checks if c["check"].startswith(f"issue 17 target {n},")]

    stalls = [c for c in checks if c["check"].startswith("no stall, service,")]
    trips = []
    for key, statements in READ_STATEMENTS.items():
        measured = counts.get(key, {}).get(SERVICE, {}).get("round_trips")
        if measured is not None:
            trips.append(
                {
                    "endpoint": TITLES[key],
                    "check": "round trips",
                    "value": f"{measured:g} for {statements} statement(s)",
                    "passed": measured <= statements,
                }
            )

    def issue_24(n: str) -> list[dict[str, Any]]:
        return [c for c in checks if c["check"].startswith(f"issue 24 target {n},")]

    return [
        rolled(
            "24a. service <= 1.10x the leanest app with the same features, every endpoint "
            "(instructions per request, in process)",
            issue_24("24a"),
        ),
        rolled(
            f"24b. service <= 1.03x {previous_name(previous_ref)}, every endpoint "
            "(instructions per request, in process)",
            issue_24("24b"),
        ),
        rolled(
            "1. service <= 1.10x the leanest ORM app's CPU/request, every endpoint", numbered(1)
        ),
        rolled("2. service <= 0.6x (get), 0.5x (create) the usual template pattern's", numbered(2)),
        rolled("3. service / floor below the run of 2026-11-28, every endpoint", numbered(3)),
        rolled("4a. no timeout, no error, no request over 1 s at 32 connections", stalls),
        rolled("4b. one round trip per read statement", trips),
    ]
