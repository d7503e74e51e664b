"""Fallback load generator for machines without wrk: asyncio, keep-alive HTTP/1.1.

Same workloads and the same `BENCHJSON` result line as bench/wrk/bench.lua. It is a
plain client on raw streams (no HTTP library: one would cost more CPU than the
servers it measures), under uvloop when it is installed. Python is slower than wrk,
so on a small machine it takes a larger share of the cores: absolute throughput
suffers, but the server's CPU per request, read from /proc, does not.

    python bench/pyload.py http://127.0.0.1:8000 paths FILE --connections 32 --seconds 8
    python bench/pyload.py http://127.0.0.1:8000 create PREFIX ...
"""

import argparse
import asyncio
import json
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.bytes = 0


def request_maker(
    mode: str, argument: str, host: str, header: str = ""
) -> Callable[[int, int], bytes]:
    if mode == "paths":
        extra = f"{header}\r\n" if header else ""
        with open(argument, encoding="utf-8") as lines:
            prepared = [
                f"GET {line.strip()} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
                for line in lines
                if line.strip()
            ]
        return lambda _worker, _n: random.choice(prepared)
    if mode == "create":

        def create(worker: int, n: int) -> bytes:
            slug = f"{argument}-{worker}-{n}"
            body = (
                f'{{"name":"Load {slug}","slug":"{slug}","description":"created by the benchmark"}}'
            ).encode()
            head = (
                f"POST /api/v1/projects HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            return head.encode() + body

        return create
    raise SystemExit("mode must be paths or create")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Status and body length of one response (the servers send Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status, len(head) + length


async def worker(
    number: int,
    host: str,
    port: int,
    make: Callable[[int, int], bytes],
    deadline: float,
    timeout: float,
    stats: Stats,
) -> None:
    n = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                stats.errors["connect"] += 1
                await asyncio.sleep(0.1)
                continue
        assert reader is not None
        n += 1
        started = time.perf_counter()
        try:
            writer.write(make(number, n))
            status, size = await asyncio.wait_for(read_response(reader), timeout)
        except TimeoutError:
            stats.errors["timeout"] += 1
            writer.close()
            writer = None
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError):
            stats.errors["read"] += 1
            writer.close()
            writer = None
            continue
        stats.latencies.append(time.perf_counter() - started)
        stats.bytes += size
        if status >= 400:
            stats.errors["status"] += 1
    if writer is not None:
        writer.close()


def percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    make = request_maker(args.mode, args.argument, f"{host}:{port}", args.header)
    stats = Stats()
    started = time.monotonic()
    deadline = started + args.seconds
    await asyncio.gather(
        *(
            worker(i, host, port, make, deadline, args.timeout, stats)
            for i in range(args.connections)
        )
    )
    elapsed = time.monotonic() - started
    ordered = sorted(stats.latencies)
    us = [value * 1e6 for value in ordered]
    slow = sum(1 for value in ordered if value * 1000 > args.slow_ms)
    return {
        "requests": len(ordered),
        "duration_us": int(elapsed * 1e6),
        "bytes": stats.bytes,
        "errors": stats.errors,
        "latency_us": {
            "p50": int(percentile(us, 50)),
            "p90": int(percentile(us, 90)),
            "p99": int(percentile(us, 99)),
            "max": int(us[-1]) if us else 0,
            "mean": sum(us) / len(us) if us else 0.0,
        },
        "slow": slow,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("mode", choices=["paths", "create"])
    parser.add_argument("argument")
    parser.add_argument("header", nargs="?", default="", help='paths mode: "Name: value" to send')
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--slow-ms", type=int, default=1000)
    args = parser.parse_args()
    try:
        import uvloop

        result = uvloop.run(main_async(args))
    except ImportError:
        result = asyncio.run(main_async(args))
    print("BENCHJSON " + json.dumps(result))


if __name__ == "__main__":
    main()
