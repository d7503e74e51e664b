"""Where the template lives and where the harness keeps what outlives one run."""

import os
from pathlib import Path

TEMPLATE_ROOT = Path(__file__).resolve().parents[2]
# The kit's own tests, run inside a render of tests/variants.py's KIT_VARIANTS.
KIT_TESTS = TEMPLATE_ROOT / "tests" / "kit"
# Virtualenvs for rendered services, reused across runs: N variants cost one install.
CACHE_DIR = Path(
    os.environ.get("CFS_CACHE_DIR", Path.home() / ".cache" / "copier-fastapi-sqlalchemy")
)
