"""The soak's checks, computed from what the run recorded, and its two reports.

Pure functions of the ledger, the rows read back, the sweeps, the memory samples and
the latencies, so that each check can be read (and rerun on a saved JSON) apart from
the servers that produced them.
"""

import json
import statistics
from pathlib import Path
from typing import Any

from .soak_api import State
from .soak_load import Results, Tracked, Unexpected
from .soak_watch import Sample, Sweep

# A terminated backend exits within milliseconds of the sweep's statement returning;
# the service notices when it next reads from that socket. A request counts as caught
# by a sweep if it was under way at any moment from the sweep's start to this long after
# its end.
SWEEP_GRACE_S = 1.0
RSS_GROWTH_LIMIT = 0.05
P99_FACTOR = 2.0


def _matches(row: State | None, state: State) -> bool:
    if state.deleted:  # soft delete marks the row; a hard delete removes it
        return row is None or row.deleted
    return row is not None and row == state


def verify(ledger: dict[str, Tracked], rows: dict[str, tuple[str, State]]) -> dict[str, Any]:
    """Every acknowledged write against the rows the primary holds afterwards."""
    lost: list[dict[str, Any]] = []
    acknowledged = deleted = 0
    committed: dict[str, bool] = {}  # slug -> whether its unacknowledged write committed
    for slug, tracked in ledger.items():
        key, row = rows.get(slug, (None, None))
        if tracked.acked is None:  # the create itself got no acknowledgement
            if tracked.unacknowledged:
                committed[slug] = row is not None
            continue
        acknowledged += 1
        deleted += tracked.acked.deleted
        if any(_matches(row, s) for s in [tracked.acked, *tracked.unacknowledged]):
            if tracked.unacknowledged:
                committed[slug] = not _matches(row, tracked.acked)
            continue
        lost.append(
            {
                "slug": slug,
                "id": tracked.key,
                "acknowledged": tracked.acked.as_list(),
                "unacknowledged": [s.as_list() for s in tracked.unacknowledged],
                "found": None if row is None else [key, *row.as_list()],
            }
        )
    strangers = sorted(set(rows) - set(ledger))
    return {
        "projects_written": len(ledger),
        "acknowledged_projects": acknowledged,
        "acknowledged_deleted": deleted,
        "lost": lost,
        "rows_nobody_wrote": strangers[:50],
        "rows_nobody_wrote_count": len(strangers),
        "unacknowledged_committed": sum(committed.values()),
        "unacknowledged_not_committed": len(committed) - sum(committed.values()),
        "committed_by_slug": committed,
    }


def classify(
    unexpected: list[Unexpected], sweeps: list[Sweep], committed: dict[str, bool]
) -> dict[str, Any]:
    """Each 5xx and each request left unanswered: during a sweep, or not; for a write,
    whether it committed all the same (`committed`: by slug, from `verify`)."""
    during: list[dict[str, Any]] = []
    outside: list[dict[str, Any]] = []
    for item in unexpected:
        if item.kind not in ("5xx", "no answer"):
            continue
        caught = [
            s.number
            for s in sweeps
            if item.started <= s.ended + SWEEP_GRACE_S and item.ended >= s.started
        ]
        record = {**item.as_dict(), "sweeps": caught, "committed": committed.get(item.slug or "")}
        if not caught:
            before = [s for s in sweeps if s.ended <= item.started]
            record["seconds_after_last_sweep"] = (
                round(item.started - before[-1].ended, 3) if before else None
            )
        (during if caught else outside).append(record)
    return {
        "during_sweep": during,
        "outside_sweep": outside,
        # A lost connection is a database fault, answered 503; a 500 says the service
        # did not recognise it (and, for a write that committed, misreports a success).
        "during_sweep_not_503": [u for u in during if u["status"] != 503],
    }


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "requests": len(ordered),
        "p50_ms": round(_percentile(ordered, 50), 2),
        "p99_ms": round(_percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2) if ordered else 0.0,
    }


def latency(results: Results, warmup_windows: int) -> dict[str, Any]:
    """p50/p99 per window, overall and per operation; windows whose p99 passes twice the
    first post-warm-up window's are flagged."""
    windows: list[dict[str, Any]] = []
    for number, values in enumerate(results.latencies):
        windows.append(
            {
                "window": number + 1,
                "from_s": round(number * results.window_s),
                "to_s": round((number + 1) * results.window_s),
                "warmup": number < warmup_windows,
                **_stats(values),
                "by_op": {op: _stats(v) for op, v in sorted(results.by_op[number].items())},
            }
        )
    measured = [w for w in windows if not w["warmup"] and w["requests"]]
    reference = measured[0]["p99_ms"] if measured else None
    for window in measured:
        window["flagged"] = bool(reference and window["p99_ms"] > P99_FACTOR * reference)
    return {"windows": windows, "reference_p99_ms": reference}


def memory(
    samples: list[Sample], warmup_s: float, window_s: float, total_s: float
) -> dict[str, Any]:
    """Growth of the workers' summed RSS from the first post-warm-up window (median of its
    samples) to the last window (median of its samples)."""
    first = [s.rss_bytes for s in samples if warmup_s <= s.at < warmup_s + window_s]
    last = [s.rss_bytes for s in samples if total_s - window_s <= s.at]
    after = [s for s in samples if s.at >= warmup_s]
    slope = None
    if len(after) >= 3:
        xs = [s.at for s in after]
        ys = [s.rss_bytes for s in after]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        if var:
            per_s = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
            slope = round(per_s * 3600 / 2**20, 2)
    baseline = statistics.median(first) if first else None
    end = statistics.median(last) if last else None
    growth = (end / baseline - 1) if baseline and end else None
    return {
        "baseline_mib": round(baseline / 2**20, 1) if baseline else None,
        "end_mib": round(end / 2**20, 1) if end else None,
        "max_mib": round(max(s.rss_bytes for s in samples) / 2**20, 1) if samples else None,
        "growth": round(growth, 4) if growth is not None else None,
        "slope_mib_per_hour": slope,
        "samples": [[round(s.at, 1), s.rss_bytes, len(s.workers)] for s in samples],
    }


def checks(
    verified: dict[str, Any],
    classified: dict[str, Any],
    unexpected: list[Unexpected],
    mem: dict[str, Any],
    restarts: int,
    lat: dict[str, Any],
) -> list[dict[str, Any]]:
    others = [u for u in unexpected if u.kind not in ("5xx", "no answer")]
    flagged = [w["window"] for w in lat["windows"] if w.get("flagged")]
    growth = mem["growth"]
    return [
        {
            "check": "acknowledged writes lost",
            "value": len(verified["lost"]),
            "passed": not verified["lost"] and verified["acknowledged_projects"] > 0,
        },
        {
            "check": "5xx or unanswered requests outside a sweep",
            "value": len(classified["outside_sweep"]),
            "passed": not classified["outside_sweep"],
        },
        {
            "check": "5xx or unanswered requests during a sweep that are not a 503",
            "value": len(classified["during_sweep_not_503"]),
            "passed": not classified["during_sweep_not_503"],
        },
        {
            "check": "unexpected 4xx, stale reads of a client's own write, wrong answers",
            "value": len(others),
            "passed": not others,
        },
        {
            "check": f"server RSS growth after warm-up < {RSS_GROWTH_LIMIT:.0%}",
            "value": None if growth is None else f"{growth:+.2%}",
            "passed": growth is not None and growth < RSS_GROWTH_LIMIT,
        },
        {"check": "uvicorn workers restarted", "value": restarts, "passed": restarts == 0},
        {
            "check": f"no window's p99 above {P99_FACTOR:g}x the first post-warm-up window's",
            "value": f"flagged: {flagged}" if flagged else "none flagged",
            "passed": not flagged and lat["reference_p99_ms"] is not None,
        },
    ]


BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def write_json(results: dict[str, Any], data: Path) -> None:
    data.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def write(results: dict[str, Any], markdown: Path, data: Path) -> None:
    """The whole report in `markdown`, the raw figures in `data`."""
    markdown.parent.mkdir(parents=True, exist_ok=True)
    write_json(results, data)
    markdown.write_text("# Soak run\n\n" + render(results), encoding="utf-8")


def publish(results: dict[str, Any], page: Path) -> None:
    """The report between the page's markers; the prose around them stays as it is."""
    text = page.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, found, tail = rest.partition(END)
    if not found:
        raise SystemExit(f"{page} lacks the markers {BEGIN} ... {END}")
    page.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}", encoding="utf-8")


def render(r: dict[str, Any]) -> str:
    meta, run = r["meta"], r["meta"]["run"]
    out = ["## The latest run", ""]
    if run["minutes"] < 60:
        out += [
            (
                f"**A shortened run ({run['minutes']:g} minutes, sweeps every "
                f"{run['sweep_seconds']:g} s, windows of {run['window_s']:g} s) on "
                f"{meta['machine']['cores']} cores shared with other work: it shows the soak "
                "working end to end; its figures are not those of the 60-minute run.**"
            ),
            "",
        ]
    out += [
        f"Template {meta['template']['commit']}"
        + (" (uncommitted changes)" if meta["template"].get("template_dirty") else "")
        + f", started {meta['started']}, finished {meta['finished']}. "
        f"{run['clients']} clients against the default service under uvicorn with "
        f"{run['workers']} workers, writes through PgBouncer (transaction mode), reads on a "
        f"streaming replica; every client backend of the database terminated on both "
        f"servers every {run['sweep_seconds']:g} s. Load average {meta['loadavg_start']} at "
        f"the start, {meta['loadavg_end']} at the end; CPU seconds: service "
        f"{meta['cpu_s']['service']}, clients {meta['cpu_s']['clients']}. "
        f"Verdict: **{r['verdict']}**.",
        "",
        "| check | value | result |",
        "|---|---|---|",
    ]
    for check in r["checks"]:
        out.append(
            f"| {check['check']} | {check['value']} | {'pass' if check['passed'] else 'FAIL'} |"
        )
    v = r["writes"]
    out += [
        "",
        "### Writes",
        "",
        (
            f"{r['requests']} requests; {v['projects_written']} projects written, "
            f"{v['acknowledged_projects']} of them created with an acknowledgement, "
            f"{v['acknowledged_deleted']} deleted with one. Writes answered with a 5xx or not "
            f"at all: {v['unacknowledged_committed']} committed anyway, "
            f"{v['unacknowledged_not_committed']} did not (either is allowed when the COMMIT "
            "was in flight: the client was not told). Rows under the run's prefix that no "
            f"client wrote: {v['rows_nobody_wrote_count']}."
        ),
        "",
        "| operation | answers |",
        "|---|---|",
    ]
    ops: dict[str, list[str]] = {}
    for key, count in sorted(r["statuses"].items()):
        op, status = key.split(" ")
        ops.setdefault(op, []).append(f"{status}: {count}")
    out += [f"| {op} | {', '.join(parts)} |" for op, parts in ops.items()]
    out += ["", "### Latency per window", ""]
    out += [
        "| window | seconds | requests | p50 ms | p99 ms | max ms | |",
        "|---|---|---|---|---|---|---|",
    ]
    for w in r["latency"]["windows"]:
        note = "warm-up" if w["warmup"] else ("**flagged**" if w.get("flagged") else "")
        out.append(
            f"| {w['window']} | {w['from_s']}-{w['to_s']} | {w['requests']} | {w['p50_ms']} "
            f"| {w['p99_ms']} | {w['max_ms']} | {note} |"
        )
    m = r["memory"]
    out += [
        "",
        "### Server memory",
        "",
        (
            f"Summed RSS of the uvicorn workers, sampled every {run['rss_period_s']:g} s: "
            f"{m['baseline_mib']} MiB in the first window after warm-up (median), "
            f"{m['end_mib']} MiB in the last (median), growth {m['growth']}, largest "
            f"{m['max_mib']} MiB, trend after warm-up {m['slope_mib_per_hour']} MiB/hour. "
            f"Worker processes seen: {r['workers_seen']}."
        ),
        "",
        "### Sweeps",
        "",
        "| sweep | at s | took s | primary (PgBouncer's server connections) | replica | errors |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["sweeps"]:
        summary = s["summary"]
        out.append(
            f"| {s['number']} | {s['started']:.1f} | {s['ended'] - s['started']:.2f} "
            f"| {_counts(summary.get('primary', {}))} | {_counts(summary.get('replica', {}))} "
            f"| {'; '.join(s['errors'].values()) or ''} |"
        )
    c = r["failures"]
    out += [
        "",
        "### 5xx and unanswered requests",
        "",
        f"During a sweep: {len(c['during_sweep'])}; outside any sweep: {len(c['outside_sweep'])}.",
        "",
    ]
    listed = [*c["outside_sweep"][:20], *c["during_sweep"][:20]]
    others = r["unexpected_other"][:20]
    if listed or others:
        out += [
            "| at s | op | request | answer | sweep | committed | detail |",
            "|---|---|---|---|---|---|---|",
        ]
        for u in [*listed, *others]:
            sweeps = u.get("sweeps")
            where = f"{sweeps}" if sweeps else ("-" if sweeps is None else "**none**")
            detail = str(u["detail"]).replace("|", "\\|").replace("\n", " ")[:160]
            out.append(
                f"| {u['started']:.2f}-{u['ended']:.2f} | {u['op']} | {u['method']} {u['path']} "
                f"| {u['status'] or u['kind']} | {where} | {_yes(u.get('committed'))} | {detail} |"
            )
    logged = r.get("service_log_errors") or {}
    if logged.get("lines"):
        out += [
            "",
            (
                f"The service's log holds {logged['lines']} error and exception lines; "
                "the most frequent (numbers masked):"
            ),
            "",
        ]
        out += [f"- {count} x `{message}`" for message, count in logged["top"][:8]]
    lost = r["writes"]["lost"]
    if lost:
        out += ["", "### Lost writes", "", "```json", json.dumps(lost[:20], indent=1), "```"]
    out += ["", f"Raw figures: `{meta['json_name']}`.", ""]
    return "\n".join(out)


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"
