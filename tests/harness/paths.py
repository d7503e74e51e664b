"""Where the template lives and where the harness keeps what outlives one run."""

import os
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
# Virtualenvs for rendered services, reused across runs: N variants cost one install.
CACHE_DIR = Path(
    os.environ.get("CFS_CACHE_DIR", Path.home() / ".cache" / "copier-fastapi-sqlalchemy")
)
