"""Full tier: Schemathesis, an outside fuzzer, against each variant's booted service.

It reads the service's `/openapi.json` as any client would and sends what the document
allows and what it forbids, with every check and every phase. The stateful phase chains
operations by the links Schemathesis infers from the document (the service declares
none): a create's id goes into the reads, updates and deletes that follow.
A fixed seed and a bounded number of examples per operation (tests/schemathesis.toml)
keep a run repeatable and short: 10 to 30 s a variant on an idle machine (MariaDB's
commits are the slowest), a few seconds for the skeletons. The narrowings there are explained in
docs/decisions.md.
"""

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.boot import uvicorn
from .harness.databases import scratch_database
from .harness.run import run

pytestmark = pytest.mark.full

SEED = 20261129
CONFIG = Path(__file__).with_name("schemathesis.toml")
# The stateful phase's summary line: "API Links: 14 covered / 56 selected / 56 total (...)".
LINKS = re.compile(r"API Links:\s+(\d+) covered / (\d+) selected")


def test_fuzz(variant: Rendered, venv_for: Callable[[Rendered], Path], tmp_path: Path) -> None:
    bin_dir = venv_for(variant)
    log = tmp_path / "uvicorn.log"
    with scratch_database(variant.answers["database"], variant.name) as url:
        env = {"DATABASE_URL": url}
        migrated = run(bin_dir, variant.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        # A busy machine (the suite's other worker) can take well over 30 s to import a
        # service it never ran: waiting longer costs nothing once it answers.
        with uvicorn(bin_dir, variant.path, variant.package, env, timeout=120, log=log) as base:
            started = time.monotonic()
            fuzzed = schemathesis(base, workdir=tmp_path)
            elapsed = time.monotonic() - started
    output = fuzzed.stdout + fuzzed.stderr
    print(f"fuzzed {variant.name} in {elapsed:.1f}s")  # shown with -s or -rP: its cost
    assert fuzzed.returncode == 0, (
        f"Schemathesis failed on {variant.name} after {elapsed:.0f}s:\n{output}\n"
        f"--- server log (last 20,000 characters) ---\n{log.read_text()[-20_000:]}"
    )
    links = LINKS.search(output)
    if variant.answers["example_domain"]:
        # Without links the stateful phase has nothing to chain and passes silently.
        assert links and int(links[1]) > 0, f"the stateful phase chained nothing:\n{output}"
    else:  # the skeleton: health probes only, nothing to chain
        assert not links, output


def schemathesis(base: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """The `st` command of the template's own venv, run as an outside client would.

    It runs in `workdir`, where Hypothesis keeps its files, so none land in the checkout."""
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    return subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=300, check=False
    )
