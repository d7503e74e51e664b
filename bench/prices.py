"""What each optional layer costs per request: CPU in the service's process, against the default.

Renders the default service and the renders with the Redis cache and with traces,
installs them into the benchmark's venv, seeds one database, then measures each
configuration with `bench/layers.py` (in process, no HTTP) in a process of its own:
tracing installs process-wide hooks (a tracer provider, statement listeners on every
engine), so configurations never share a process. Rounds rotate the order, as
`bench/run.py` does, and the figure is the median over rounds; a ratio is to the
default's median in the same run.

    .venv/bin/python bench/prices.py                 # 5 rounds, get and create
    .venv/bin/python bench/prices.py --rounds 3 --endpoints get

What it leaves out, and why: PgBouncer and replicas change the server side (round
trips, a second server), which CPU in the service's process does not show; they belong
to the HTTP run of `bench/run.py`. The cache is priced on this process's CPU only: a
hit saves the database's work, which is not counted here.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from harness import prepare

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "prices"
SECRET = "prices-" + "x" * 40

# name: (render, settings over the defaults, what it prices)
CONFIGS: dict[str, tuple[str, dict[str, str], str]] = {
    "default": ("default", {}, "the default render, metrics on"),
    "metrics_off": ("default", {"METRICS_ENABLED": "false"}, "metrics off"),
    "json_logs": ("default", {"LOG_FORMAT": "json"}, "JSON logs (nothing is logged per request)"),
    "cache_hit": ("cache", {"CACHE_KEY_PREFIX": "prices-hit"}, "cache on, gets nearly all hits"),
    "cache_churn": (
        "cache",
        {"CACHE_KEY_PREFIX": "prices-churn", "CACHE_TTL_SECONDS": "1"},
        "cache on, entries live 1 s: gets mostly miss and fill",
    ),
    "traces": (
        "traces",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_EXPORT_TIMEOUT": "100"},
        "traces on, exported to a closed port",
    ),
}
RENDERS = {
    "default": {"project_slug": "price-default", "package_name": "price_default"},
    "cache": {"project_slug": "price-cache", "package_name": "price_cache", "cache": "true"},
    "traces": {"project_slug": "price-traces", "package_name": "price_traces", "tracing": "true"},
}


def main(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    services = {
        name: prepare.render(RESULTS / name, "HEAD", {"project_name": name.title(), **answers})
        for name, answers in RENDERS.items()
    }
    python = prepare.ensure_venv(BENCH_DIR / ".venv", *services.values())
    database = f"bench_prices_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
    url = f"{args.admin_url.rsplit('/', 1)[0]}/{database}"
    sqlalchemy_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    prepare.dbtool(python, "create", "--admin-url", args.admin_url, "--name", database)
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in CONFIGS}
    try:
        default = services["default"]
        prepare.migrate(BENCH_DIR / ".venv", default, sqlalchemy_url)
        ids = RESULTS / "ids.txt"
        prepare.seed(python, default, sqlalchemy_url, 10_000, 5, ids)
        prepare.dbtool(python, "vacuum", "--url", url)
        names = list(CONFIGS)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                render, settings, _ = CONFIGS[name]
                out = RESULTS / f"{name}.json"
                env = {
                    **os.environ,
                    "ENVIRONMENT": "production",
                    "CURSOR_SECRET": SECRET,
                    "LOG_LEVEL": "WARNING",
                    "DATABASE_URL": sqlalchemy_url,
                    "FLOOR_DATABASE_URL": url,
                    **settings,
                }
                argv = [str(python), str(BENCH_DIR / "layers.py"), "--apps", "service"]
                argv += ["--package", services[render].package, "--ids", str(ids)]
                argv += ["--out", str(out), "--slug-prefix", "load-", "--rounds", "1"]
                argv += ["--n", str(args.n), "--warmup", str(args.n // 5)]
                argv += ["--endpoints", args.endpoints]
                subprocess.run(argv, cwd=services[render].directory, env=env, check=True)
                for key, by_app in json.loads(out.read_text())["cpu_ms"].items():
                    samples[name].setdefault(key, []).append(by_app["service"])
            prepare.dbtool(python, "cleanup", "--url", url, "--slug-prefix", "load-")
    finally:
        prepare.dbtool(python, "drop", "--admin-url", args.admin_url, "--name", database)
        forget = "import redis; r = redis.Redis(); [r.delete(k) for k in r.scan_iter('prices-*')]"
        subprocess.run([str(python), "-c", forget], check=False)
    print(table(samples))
    (RESULTS / "prices.json").write_text(json.dumps(samples, indent=2))


def table(samples: dict[str, dict[str, list[float]]]) -> str:
    """Markdown: each configuration's median CPU per request and its ratio to the default."""
    keys = list(samples["default"])
    head = "| configuration | " + " | ".join(f"{k}: ms (x default; rounds)" for k in keys) + " |"
    lines = [head, "|---|" + "---|" * len(keys)]
    for name, by_key in samples.items():
        cells = []
        for key in keys:
            median = statistics.median(by_key[key])
            ratio = median / statistics.median(samples["default"][key])
            spread = f"{min(by_key[key]):.2f}-{max(by_key[key]):.2f}"
            cells.append(f"{median:.3f} (x{ratio:.2f}; {spread})")
        lines.append(f"| {CONFIGS[name][2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000, help="requests per configuration and round")
    parser.add_argument("--endpoints", default="get,create")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    sys.exit(main(parser.parse_args()))
