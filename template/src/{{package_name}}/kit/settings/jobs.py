"""The background jobs' settings (`kit/jobs/`): the worker's pace, its lease and grace
period, and what a job gets by default (retries, backoff, timeout).

Jobs are a PostgreSQL queue (pgqueuer, the `jobs` extra): JOBS_ENABLED on another
backend stops start-up with the reason.
"""

from pydantic import Field
from pydantic import model_validator

from .database import DatabaseSettings


class JobsSettings(DatabaseSettings):
    """The jobs' part of `KitSettings`; the comment says when to change each."""

    # The service enqueues background jobs and runs a worker (`<package>-worker`). On:
    # start-up checks that the `jobs` extra is installed. PostgreSQL only.
    jobs_enabled: bool = False
    # Jobs one worker process runs at once; it fetches half as many per round trip.
    jobs_concurrency: int = Field(default=10, ge=2, le=1000)
    # Seconds a picked job's lease lasts without a heartbeat from its worker (which beats
    # at half of it): a killed worker's job runs again on another worker this long after.
    jobs_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    # Seconds an idle worker waits for a NOTIFY before it looks at the queue anyway.
    jobs_poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Seconds a worker told to stop (SIGTERM) lets its running jobs finish; then they
    # are cancelled and released to another worker. Keep it below the orchestrator's
    # own grace period (Kubernetes: terminationGracePeriodSeconds, 30 by default).
    jobs_shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)
    # Runs of a failing job after its first, before it is kept as failed (a job may say
    # otherwise in `@jobs.job(retries=...)`).
    jobs_retries: int = Field(default=5, ge=0, le=100)
    # Seconds before the first retry; each further one waits twice as long, at most
    # JOBS_MAX_BACKOFF_SECONDS.
    jobs_backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    jobs_max_backoff_seconds: float = Field(default=300.0, ge=0, le=86_400)
    # Seconds a run may take before it is cancelled and counts as failed.
    jobs_timeout_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # Days the queue's event log (pgqueuer_log) keeps its rows; the worker deletes older
    # ones every hour.
    jobs_log_retention_days: int = Field(default=14, ge=1, le=3650)
    # The worker's port for its probes and `/metrics` (`/health/live`, `/health/ready`;
    # kit/jobs/health.py); none without it. The deployment files set 8001.
    jobs_health_port: int | None = Field(default=None, ge=1, le=65535)
    # Pods of the worker (one process each, with one process's pools and a connection of
    # its own for the queue): the connection budget counts them with the API's. The
    # Kubernetes base sets it from the worker's replicas.
    jobs_worker_pods: int = Field(default=0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _jobs_need_postgresql(self) -> "JobsSettings":
        if self.jobs_enabled and self.backend != "postgresql":
            raise ValueError(
                "JOBS_ENABLED: background jobs are a PostgreSQL queue (LISTEN/NOTIFY, "
                "SKIP LOCKED); remove it, or move the service to PostgreSQL"
            )
        return self
