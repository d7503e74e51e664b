"""Known vulnerabilities in what this repository installs, audited with pip-audit.

The rendered service's CI runs the same audit on its lock (tests/test_service_tooling.py
checks the workflow and, in the full tier, that the workflow's command fails on a lock
with a vulnerable pin). These audit this repository's dev group, which `scripts/test`
installs into the venv running pytest, and prove the audit fails on a vulnerable pin.
Both need PyPI's advisories (tests/harness/advisories.py): where they cannot be reached
the tests fail and say so.
"""

from pathlib import Path

import pytest

from .harness.advisories import (
    PIP_AUDIT,
    VULNERABLE_PIN,
    findings,
    report,
    require_the_advisory_service,
    unaudited,
)
from .harness.run import run

pytestmark = pytest.mark.advisories


def test_the_audit_fails_on_a_known_vulnerable_pin(tmp_path: Path) -> None:
    name, version, advisory = VULNERABLE_PIN
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{name}=={version}\n")
    audit = run(
        PIP_AUDIT.parent,
        tmp_path,
        "pip-audit",
        "--strict",
        "--no-deps",
        "--disable-pip",
        "--progress-spinner=off",
        "--requirement",
        str(requirements),
        "--format=json",
        "--output",
        str(tmp_path / "report.json"),
    )
    # Vulnerable or not audited at all: never a pass.
    assert not audit.ok, audit.output
    require_the_advisory_service()
    dependencies = report(tmp_path / "report.json")
    assert unaudited(dependencies) == []
    assert advisory in findings(dependencies).get(f"{name}=={version}", set()), dependencies


def test_the_dev_group_has_no_known_vulnerability(tmp_path: Path) -> None:
    """pip-audit audits the environment it runs in: the dev group and what it pulls in."""
    require_the_advisory_service()
    audit = run(
        PIP_AUDIT.parent,
        tmp_path,
        "pip-audit",
        "--strict",
        "--progress-spinner=off",
        "--format=json",
        "--output",
        str(tmp_path / "report.json"),
    )
    dependencies = report(tmp_path / "report.json") if audit.ok else []
    assert audit.ok, audit.output
    assert unaudited(dependencies) == [] and findings(dependencies) == {}
    assert any(d["name"] == "pytest" for d in dependencies), "not the dev group's venv"
