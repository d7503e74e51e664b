"""The `password` extra's packages, checked when the package is first imported: without
them the service stops with one line naming the extra, not an ImportError."""

import importlib

from ...extras import MissingPackages

# Argon2 (pwdlib over argon2-cffi), the tokens (joserfc), the login form (FastAPI reads
# it with python-multipart).
PASSWORD_MODULES = ("pwdlib", "argon2", "joserfc", "python_multipart")


def require() -> None:
    for module in PASSWORD_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingPackages(
                f"the password routes are used, but {module} is missing; install the "
                "service's `password` extra: uv sync --extra password, or pip install "
                "'.[password]'"
            ) from None


require()
