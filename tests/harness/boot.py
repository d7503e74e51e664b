"""Boot a rendered service as a real uvicorn process on a free port."""

import os
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from .run import Outcome, run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_up(
    bin_dir: Path, project: Path, package: str, env: dict[str, str], timeout: int = 60
) -> Outcome:
    """Start the service in the foreground, for a start-up that must stop by itself: its
    exit status and everything it wrote."""
    return run(
        bin_dir,
        project,
        "uvicorn",
        f"{package}.main:app",
        "--app-dir",
        "src",
        "--port",
        "0",
        env=env,
        timeout=timeout,
    )


@contextmanager
def uvicorn(
    bin_dir: Path,
    project: Path,
    package: str,
    env: dict[str, str],
    timeout: float = 30,
    *,
    workers: int = 1,
    log: Path | None = None,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Yield the base URL once `/health/live` answers; stop the process afterwards.

    The server's output goes to `log` (a temporary file unless given); `args` are more
    of uvicorn's options (the Dockerfile's, say)."""
    port = free_port()
    log = log or Path(tempfile.gettempdir()) / f"uvicorn-{project.name}-{port}.log"
    command = [
        str(bin_dir / "uvicorn"),
        f"{package}.main:app",
        "--app-dir",
        "src",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        *(["--workers", str(workers)] if workers > 1 else []),
        *args,
    ]
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # Each booted service has a database of its own, so its cache entries are its own
        # too: two services of one variant (the fuzzer's, the client's) share the name
        # that prefixes them by default, and the same keys (`project:1`) in one Redis.
        "CACHE_KEY_PREFIX": f"boot-{uuid.uuid4().hex[:12]}",
        **env,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=project, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"uvicorn exited with {process.returncode}:\n{log.read_text()}"
                )
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"uvicorn did not answer in {timeout}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        stop(process, grace=10)
