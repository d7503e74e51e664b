"""Full tier: the service runs as its container runs it, and writes only where the pod
mounts a volume.

No container engine here, so the test builds the container's conditions around a real
process: in a mount namespace of its own (unshare), every mount is read-only, as
`readOnlyRootFilesystem` makes a container's root; the Deployment's one writable volume
(the metrics directory) is a fresh tmpfs, and so is /dev/shm, which a container has
writable; the process runs as the Dockerfile's numeric USER (setpriv), with the image's
ENV, CMD and the Deployment's workers. The code is a root-owned copy, readable by all as
in the image; the harness's venv lives in root's home, so the process keeps one
capability, to read files (never to write them). It serves the API and /metrics; then
the tmpfs mounts show what it wrote.
"""

import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Rendered
from .harness.boot import free_port, stop
from .harness.databases import scratch_database, two_roles
from .harness.run import run
from .test_boot import exercise_the_api
from .test_deploy import built, containers, image_env, image_user

pytestmark = pytest.mark.full

# Run as root inside the new mount namespace, then exec'd into the image's user.
CONTAINER = r"""
set -eu
metrics="$1"; uid="$2"; gid="$3"; shift 3
mount --make-rprivate /
for target in $(awk '$3 != "proc" && $3 != "sysfs" && $3 != "cgroup" && $3 != "cgroup2" {print $2}' /proc/self/mounts); do
  mount -o remount,bind,ro "$target" 2>/dev/null || true
done
mount -t tmpfs -o size=16m,mode=1777 tmpfs /dev/shm
mount -t tmpfs -o "size=16m,uid=$uid,gid=$gid,mode=0700" tmpfs "$metrics"
if touch /cfs-read-only-probe 2>/dev/null || touch "$PWD/cfs-read-only-probe" 2>/dev/null; then
  echo "the root filesystem is still writable" >&2; exit 97
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups \
  --inh-caps=+dac_read_search --ambient-caps=+dac_read_search -- "$@"
"""


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_the_service_writes_only_to_its_metrics_volume(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.fail("needs unshare and setpriv (Debian: util-linux) and root", pytrace=False)
    rendered = render("default")
    bin_dir = venv_for(rendered)
    # A copy where the image's user can reach it: pytest's own directories are root's
    # only, and Alembic checks its scripts with access(2), which ignores capabilities.
    workdir = Path(tempfile.mkdtemp(prefix="cfs-container-"))
    try:
        workdir.chmod(0o755)
        project = workdir / rendered.path.name
        shutil.copytree(rendered.path, project)
        read_only_boot(rendered, project, bin_dir, tmp_path)
    finally:
        shutil.rmtree(workdir)


def read_only_boot(rendered: Rendered, project: Path, bin_dir: Path, tmp_path: Path) -> None:
    uid, gid = image_user(rendered)
    deployment = built(rendered, "Deployment")
    (api,) = containers(deployment)
    pod_env = {e["name"]: e["value"] for e in api["env"] if "value" in e}
    config = built(rendered, "ConfigMap")["data"]
    dockerfile = (rendered.path / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    assert cmd is not None
    command = json.loads(cmd[1])
    assert command[0] == "uvicorn"
    command[command.index("--host") + 1] = "127.0.0.1"
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    # The image installs the package; here it runs from the render's src.
    command = [str(bin_dir / "uvicorn"), *command[1:], "--app-dir", "src"]
    metrics = project.parent / "metrics"  # the pod's PROMETHEUS_MULTIPROC_DIR volume
    metrics.mkdir()
    project_before = files_under(project)
    with (
        scratch_database("postgresql", "container") as scratch,
        two_roles(bin_dir, rendered.path, rendered.package, "postgresql", scratch) as roles,
    ):
        # Migrated by the owner, served by the service's role, as in production (the
        # image's ENVIRONMENT refuses a superuser or the tables' owner).
        url = roles.service
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=roles.env())
        assert migrated.ok, migrated.output
        env = {
            **{k: v for k, v in image_env(rendered).items() if k != "PATH"},
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/nonexistent",  # the image's user has no home
            "WEB_CONCURRENCY": config["WEB_CONCURRENCY"],
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "DATABASE_URL": url,
            "CURSOR_SECRET": "a-secret-of-at-least-32-characters-for-tests",
        }
        assert pod_env["PROMETHEUS_MULTIPROC_DIR"] and env["PYTHONDONTWRITEBYTECODE"] == "1"
        log = tmp_path / "uvicorn.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    CONTAINER,
                    "sh",
                    str(metrics),
                    str(uid),
                    str(gid),
                    *command,
                ],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        seen = Path(f"/proc/{process.pid}/root")
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"exited {process.returncode}:\n{log.read_text()}"
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            with httpx.Client(base_url=base, timeout=10) as http:
                exercise_the_api(http, soft_delete=True)
                for _ in range(20):
                    assert http.get("/health/live").status_code == 200
                served = http.get("/metrics")
                assert served.status_code == 200, served.text
                assert "http_requests" in served.text or "_total" in served.text, served.text[:500]
            # The process's own view of its mounts, through /proc/<pid>/root.
            written = files_under(seen / str(metrics).lstrip("/"))
            shm = files_under(seen / "dev" / "shm")
        finally:
            stop(process, grace=15)
    output = log.read_text()
    assert "Application startup complete" in output, output
    assert "Read-only file system" not in output and "Traceback" not in output, output
    # Each worker's figures, and nothing else anywhere writable.
    assert written and all(name.endswith(".db") for name in written), written
    assert shm == [], shm
    assert files_under(project) == project_before
    assert files_under(metrics) == []  # the tmpfs went with the namespace
