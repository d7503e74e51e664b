"""pip-audit and the advisory service it asks: the audits of tests/test_supply_chain.py.

pip-audit (pinned in the dev group) asks PyPI's JSON API for the advisories of each
exact version it audits. `--strict` makes a package it could not audit an error, so an
audit that cannot reach the service fails instead of passing with nothing checked.
"""

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

# Installed beside pytest by the dev group.
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
# The request pip-audit makes for one pinned package (its `pypi` vulnerability service).
ADVISORY_URL = "https://pypi.org/pypi/{name}/{version}/json"
# A pin with a published advisory: Jinja2 2.10's sandbox escape through
# `str.format_map`, fixed in 2.10.1.
VULNERABLE_PIN = ("jinja2", "2.10", "CVE-2019-10906")


def require_the_advisory_service() -> None:
    """Fail, saying what is unreachable, unless PyPI answers with a version's advisories."""
    name, version, _ = VULNERABLE_PIN
    url = ADVISORY_URL.format(name=name, version=version)
    how = (
        "pip-audit reads each pinned version's advisories from PyPI's JSON API; without it "
        "every package is reported as 'not found on PyPI' and nothing is audited. Run the "
        "suite where that URL answers (a proxy or mirror that serves /pypi/<name>/json but "
        "not /pypi/<name>/<version>/json is not enough)."
    )
    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
    except httpx.HTTPError as error:
        pytest.fail(f"The advisory service is unreachable: GET {url}: {error!r}.\n{how}", False)
    body = response.json() if "json" in response.headers.get("content-type", "") else {}
    if response.status_code != 200 or "vulnerabilities" not in body:
        pytest.fail(
            f"The advisory service is unreachable: GET {url} answered "
            f"{response.status_code} with no advisories.\n{how}",
            pytrace=False,
        )


def report(path: Path) -> list[dict[str, Any]]:
    """pip-audit's JSON report (`-f json -o path`): one entry per package audited."""
    dependencies: list[dict[str, Any]] = json.loads(path.read_text())["dependencies"]
    return dependencies


def unaudited(dependencies: list[dict[str, Any]]) -> list[str]:
    return [f"{d['name']}: {d['skip_reason']}" for d in dependencies if "skip_reason" in d]


def findings(dependencies: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each vulnerable `name==version` and the ids and aliases of its advisories."""
    return {
        f"{d['name']}=={d['version']}": {
            name for v in d["vulns"] for name in (v["id"], *v.get("aliases", []))
        }
        for d in dependencies
        if d.get("vulns")
    }
