"""One virtualenv per Python version for every rendered service, installed with uv.

Rendered services are not installed into it: their tests run with `src` on the path
(their pytest config says so), so the venv only needs the dependencies, which are the
same across variants. uv's cache and a file lock make the N-th install nearly free,
also across pytest-xdist workers.
"""

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .paths import CACHE_DIR


def _runs(python: str) -> bool:
    try:
        return (
            subprocess.run(
                [python, "-c", "import sys"], check=False, capture_output=True
            ).returncode
            == 0
        )
    except OSError:
        return False


def find_python(version: str) -> str:
    """An interpreter for `version`: the harness's own, one on PATH, or one pyenv keeps."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    for candidate in candidates:
        if candidate and _runs(candidate):
            return candidate
    pytest.fail(
        f"No Python {version} here, and a variant in tests/variants.py needs it.\n"
        f"Install it (Debian: apt-get install python{version}; or pyenv install {version}).",
        pytrace=False,
    )


def requirements(project: Path) -> list[str]:
    data = tomllib.loads((project / "pyproject.toml").read_text())
    return [*data["project"]["dependencies"], *data["dependency-groups"]["dev"]]


def service_venv(
    project: Path, python_version: str, resolution: str = "highest", extra: Path | None = None
) -> Path:
    """The shared venv for this Python, holding everything `project` needs; its bin dir.

    `resolution="lowest-direct"`: a venv of its own with the lowest version of each
    dependency that the service's pins allow (uv's resolution of that name), to prove
    the floors. `extra`: a requirements file installed too, in a venv of its own named
    after it, so that the services' venvs hold only what the services declare."""
    suffix = "" if resolution == "highest" else f"-{resolution}"
    suffix += "" if extra is None else f"-{extra.stem}"
    venv = CACHE_DIR / "venvs" / f"py{python_version}{suffix}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    reqs = sorted(requirements(project))
    if extra is not None:
        lines = (line.split("#")[0].strip() for line in extra.read_text().splitlines())
        reqs += [line for line in lines if line]
    stamp = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:16]
    uv = [sys.executable, "-m", "uv"]
    with open(venv.parent / f".py{python_version}{suffix}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / f".installed-{stamp}"
        if not marker.exists():
            if not (venv / "bin" / "python").exists():
                python = find_python(python_version)
                subprocess.run([*uv, "venv", "-q", "--python", python, str(venv)], check=True)
            env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
            subprocess.run(
                [
                    *uv,
                    "pip",
                    "install",
                    "-q",
                    "--compile-bytecode",  # the services run with PYTHONDONTWRITEBYTECODE
                    "--resolution",
                    resolution,
                    "--python",
                    str(venv / "bin" / "python"),
                    *reqs,
                ],
                check=True,
                env=env,
            )
            marker.touch()
    return venv / "bin"
