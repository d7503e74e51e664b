"""The one table of variants the suite proves. Every test file draws from it.

The options that shape the domain's code (database, primary_key, soft_delete) interact
three ways: a key type that works on one backend fails on another only with the
example domain's tables, a soft-delete index only with one key type. So the table holds
every combination of them with the example domain (3 x 2 x 2 = 12), the skeleton
(example_domain=false) once per backend (3), and the cache with traces once per backend
(3). The full tier (install, the service's own tests on a real database, Alembic's
command line, a uvicorn boot) runs for every one.

Answers that do not shape the domain (names, description, author, Python version) are
spread over the variants as extras, so each backend meets a package name at the
validators' limit and a newer Python somewhere. "default" is what
`copier copy --defaults` gives a new user: PostgreSQL, UUIDv7, soft delete.
"""

from itertools import product
from typing import Any

DATABASES = ("postgresql", "mysql", "sqlite")
PRIMARY_KEYS = ("uuid", "int")
SOFT_DELETE = (True, False)
# copier.yml's defaults for the three options: that combination is "default", with no answers.
DEFAULT = ("postgresql", "uuid", True)

# The longest names the validators accept (package_name: 40 characters) and a non-ASCII
# author: catches lines that only overflow with a long package name.
LONG_NAMES = {
    "project_name": "Inventory Reconciliation Platform Service",
    "package_name": "inventory_reconciliation_platform_svc_v2",
    "author_name": "Zoë Ångström-O'Brien",
}
# Characters the validators allow and every rendered string literal must survive.
QUOTES = {
    "project_name": "Billing",
    "description": "Invoices & payments, with 'quotes' in the text.",
}
PY312 = {"python_version": "3.12"}
PY313 = {"python_version": "3.13"}  # code that only newer Pythons accept

# The skeleton per backend: no models, no routes; migrations, health and tests still work.
SKELETONS = [("postgresql", "uuid", True), ("mysql", "uuid", False), ("sqlite", "int", True)]

# Answers beyond the three options, by variant name.
EXTRAS: dict[str, dict[str, Any]] = {
    "postgresql-uuid-hard-delete": LONG_NAMES | PY313,
    "postgresql-int-hard-delete": QUOTES | PY312,
    "mysql-uuid-hard-delete": QUOTES | PY312,
    "mysql-int-soft-delete": LONG_NAMES | PY313,
    "sqlite-uuid-hard-delete": PY312,
    "sqlite-int-soft-delete": LONG_NAMES | PY313,
    "sqlite-int-hard-delete": QUOTES,
}


def variant(
    database: str, primary_key: str, soft_delete: bool, example_domain: bool = True
) -> tuple[str, dict[str, Any]]:
    """A variant's name and its answers: none for the defaults, extras by name."""
    if (database, primary_key, soft_delete) == DEFAULT and example_domain:
        return "default", {}
    name = f"{database}-{primary_key}-{'soft' if soft_delete else 'hard'}-delete"
    answers = {"database": database, "primary_key": primary_key, "soft_delete": soft_delete}
    if not example_domain:
        name += "-skeleton"
        answers["example_domain"] = False
    return name, answers | EXTRAS.get(name, {})


# The optional integrations, the Redis cache (`cache`) and traces (`tracing`), together once
# per backend, on the backend's defaults otherwise. Every other variant has both off, so
# each backend proves each of them present and absent. Their code does not depend on the
# key type or the delete mode, and together they also prove they do not get in each
# other's way (a cached read is still traced; a statement span never carries a value).
INTEGRATIONS = {
    f"{database}-cache-traces": {"database": database, "cache": True, "tracing": True}
    for database in DATABASES
}

VARIANTS: dict[str, dict[str, Any]] = dict(
    [variant(*options) for options in product(DATABASES, PRIMARY_KEYS, SOFT_DELETE)]
    + [variant(*options, example_domain=False) for options in SKELETONS]
    + list(INTEGRATIONS.items())
)
assert set(EXTRAS) <= set(VARIANTS), f"extras for no variant: {set(EXTRAS) - set(VARIANTS)}"
