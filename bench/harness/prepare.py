"""Everything before the first request: render, install, database, schema, data.

The service is rendered from the template's working tree (uncommitted changes
included), installed into the benchmark's own venv the way its Dockerfile installs it
(a regular, non-editable install), migrated with its own `alembic upgrade head`, and
seeded through its own services and repositories (bench/seed.py).
"""

import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent


@dataclass(frozen=True)
class Service:
    directory: Path
    package: str  # import name, e.g. my_service
    distribution: str  # project name, e.g. my-service


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"command failed ({result.returncode}): {' '.join(argv)}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def tool(name: str) -> str:
    """A console script next to this interpreter (the runner's venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: pip install -r bench/requirements.txt")
    return found


def render(destination: Path, vcs_ref: str = "HEAD", data: dict[str, str] | None = None) -> Service:
    """The default service at `vcs_ref`; `data` overrides answers (e.g. its names)."""
    if destination.exists():
        shutil.rmtree(destination)
    answers = [arg for name, value in (data or {}).items() for arg in ("-d", f"{name}={value}")]
    run(
        [
            tool("copier"),
            "copy",
            "--defaults",
            "--vcs-ref",
            vcs_ref,
            "--quiet",
            *answers,
            str(REPO_DIR),
            str(destination),
        ]
    )
    return describe(destination)


# The previous render's names: its own distribution and package, so that it installs
# beside the current render in the same venv and both can be imported in one process.
PREVIOUS_NAMES = {
    "project_name": "Previous Service",
    "project_slug": "previous-service",
    "package_name": "previous_service",
}


def render_previous(destination: Path, vcs_ref: str) -> Service:
    """The default service as the template rendered it at `vcs_ref`, under other names."""
    return render(destination, vcs_ref, PREVIOUS_NAMES)


def describe(directory: Path) -> Service:
    """Read a rendered project's names from its pyproject.toml and src/ layout."""
    meta = tomllib.loads((directory / "pyproject.toml").read_text(encoding="utf-8"))
    packages = [p.name for p in (directory / "src").iterdir() if (p / "main.py").exists()]
    if len(packages) != 1:
        raise SystemExit(f"expected one package with main.py under {directory}/src")
    return Service(directory, packages[0], meta["project"]["name"])


def ensure_venv(
    venv: Path, service: Service, *beside: Service, interpreter: str = sys.executable
) -> Path:
    """Create (once) and update the service venv; returns its python.

    `beside`: other renders (the previous one) installed in the same venv, on the same
    dependencies, so that every app runs on the very same libraries.
    """
    python = venv / "bin" / "python"
    if not python.exists():
        run([tool("uv"), "venv", "--quiet", "--python", interpreter, str(venv)])
    reinstall = [arg for s in (service, *beside) for arg in ("--reinstall-package", s.distribution)]
    run(
        [
            tool("uv"),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            *reinstall,
            *(str(s.directory) for s in (service, *beside)),
            "-r",
            str(BENCH_DIR / "requirements-server.txt"),
        ]
    )
    return python


def dbtool(python: Path, *args: str) -> dict[str, object]:
    out = run([str(python), str(BENCH_DIR / "dbtool.py"), *args])
    return dict(json.loads(out.strip().splitlines()[-1]))


def migrate(venv: Path, service: Service, sqlalchemy_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": sqlalchemy_url}
    run([str(venv / "bin" / "alembic"), "upgrade", "head"], cwd=service.directory, env=env)


def check_schema(
    venv: Path, service: Service, admin_url: str, scratch: str, database_url: str
) -> dict[str, object]:
    """Fail unless the database at `database_url` holds the schema `service` expects.

    The previous render reads and writes the database the current one migrated, but its
    migrations are another history (it cannot name the current head, so `alembic check`
    against that database fails before comparing anything). So its own migrations build
    a scratch database `scratch`, `alembic check` proves its models match them, and
    `dbtool covers` proves every column and index of that schema is in the measured
    database as it is there (columns the current render added, and server defaults that
    differ, are listed; an added column fails the check only if an insert that leaves it
    out would fail)."""
    python = venv / "bin" / "python"
    dbtool(python, "create", "--admin-url", admin_url, "--name", scratch)
    try:
        scratch_url = _with_database(database_url, scratch)
        env = {**os.environ, "DATABASE_URL": scratch_url}
        alembic = str(venv / "bin" / "alembic")
        run([alembic, "upgrade", "head"], cwd=service.directory, env=env)
        run([alembic, "check"], cwd=service.directory, env=env)
        found = dbtool(python, "covers", "--url", _plain(database_url), "--of", _plain(scratch_url))
    finally:
        dbtool(python, "drop", "--admin-url", admin_url, "--name", scratch)
    if not found["covers"]:
        raise SystemExit(f"{service.package} does not find its schema: {found['missing']}")
    return found


def _with_database(sqlalchemy_url: str, database: str) -> str:
    """`sqlalchemy_url` naming another database (its query string kept)."""
    parts = urlsplit(sqlalchemy_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _plain(sqlalchemy_url: str) -> str:
    """A SQLAlchemy asyncpg URL as asyncpg itself takes it."""
    parts = urlsplit(sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    return urlunsplit(parts._replace(query=parts.query.replace("ssl=disable", "sslmode=disable")))


def seed(
    python: Path, service: Service, sqlalchemy_url: str, projects: int, tasks: int, ids_out: Path
) -> dict[str, object]:
    """Seed through the service's own code; a sample of ids in `ids_out`, every id beside
    it (`ids.all.txt`)."""
    env = {**os.environ, "DATABASE_URL": sqlalchemy_url}
    out = run(
        [
            str(python),
            str(BENCH_DIR / "seed.py"),
            "--package",
            service.package,
            "--projects",
            str(projects),
            "--tasks-per-project",
            str(tasks),
            "--ids-out",
            str(ids_out),
            "--all-ids-out",
            str(ids_out.with_suffix(".all.txt")),
        ],
        cwd=service.directory,
        env=env,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def machine() -> dict[str, object]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
    }


def template_revision() -> dict[str, object]:
    try:
        commit = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR).strip()
        dirty = bool(run(["git", "status", "--porcelain", "--", "template"], cwd=REPO_DIR).strip())
    except (RuntimeError, FileNotFoundError):
        return {"commit": None, "template_dirty": None}
    return {"commit": commit, "template_dirty": dirty}


def newest_python() -> tuple[str, str]:
    """The newest Python the template offers (copier.yml's `python_version` choices) and
    an interpreter of it on this machine: on PATH, or one pyenv keeps."""
    text = (REPO_DIR / "copier.yml").read_text(encoding="utf-8")
    question = re.split(r"\n(?=\S)", text.split("\npython_version:", 1)[1], maxsplit=1)[0]
    choices = re.findall(r'^\s+- "(\d+\.\d+)"$', question, re.MULTILINE)
    version = max(choices, key=lambda v: tuple(int(n) for n in v.split(".")))
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}"))
    found.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, found):
        works = subprocess.run([candidate, "-c", ""], capture_output=True, check=False)
        if works.returncode == 0:  # a pyenv shim without that version selected fails here
            return version, candidate
    raise SystemExit(f"no Python {version} here: install it (pyenv install {version})")
