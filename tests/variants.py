"""The one table of variants the suite proves. Every test file draws from it.

The options that shape the domain's code (database, primary_key, soft_delete) interact
three ways: a key type that works on one backend fails on another only with the
example domain's tables, a soft-delete index only with one key type. So the table holds
every combination of them with the example domain (3 x 2 x 2 = 12) and the skeleton
(example_domain=false) once per backend (3). The full tier (install, the service's own
tests on a real database, Alembic's command line, a uvicorn boot) runs for every one.

The integrations (the Redis cache, `cache`; OpenTelemetry traces, `tracing`) and the
Python version ride on those fifteen instead of adding variants of their own: each
backend's four example-domain variants take the four combinations of cache and traces,
and the cache sits once on each key type and once on each delete mode per backend (the
cache's code keys rows by id and drops them on deletes). Background jobs (`jobs`,
PostgreSQL only) ride on one PostgreSQL variant with the example domain. Authentication
(`auth`) rides the same way: each backend builds `oidc` with the example domain, and
the table meets every other answer with it (one skeleton included). tests/test_variants.py
checks that the table meets every pair of answers of the options below and those triples, so
a change here cannot silently leave a combination unbuilt.

Answers that do not shape the code (names, description, author) are spread as extras, so
each backend meets a package name at the validators' limit and quotes in the text.
"default" is what `copier copy --defaults` gives a new user: PostgreSQL, UUIDv7, soft
delete, no cache, no traces, Python 3.11.
"""

from typing import Any

DATABASES = ("postgresql", "mysql", "sqlite")
PRIMARY_KEYS = ("uuid", "int")
SOFT_DELETE = (True, False)

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

# The answers the covering table below is about (tests/test_variants.py reads their
# values from copier.yml), and their defaults there.
OPTIONS = (
    "database",
    "primary_key",
    "soft_delete",
    "example_domain",
    "cache",
    "tracing",
    "python_version",
    "auth",
)
# Answers only PostgreSQL accepts (copier.yml refuses them on the other backends), so
# they cannot pair with every other answer: each is built both ways on PostgreSQL.
POSTGRESQL_ONLY = ("jobs",)
DEFAULTS: dict[str, Any] = {
    "database": "postgresql",
    "primary_key": "uuid",
    "soft_delete": True,
    "example_domain": True,
    "cache": False,
    "tracing": False,
    "python_version": "3.11",
    "jobs": False,
    "auth": "none",
}

C, T, J, O, P = "cache", "traces", "jobs", "oidc", "password"
# database, primary_key, soft_delete, example_domain, integrations, other answers.
TABLE: list[tuple[str, str, bool, bool, tuple[str, ...], dict[str, Any]]] = [
    ("postgresql", "uuid", True, True, (), {}),
    ("postgresql", "uuid", False, True, (C, T), LONG_NAMES | PY313),
    ("postgresql", "int", True, True, (C,), PY312),
    ("postgresql", "int", False, True, (T, J, O), QUOTES | PY312),
    ("mysql", "uuid", True, True, (C, T), {}),
    ("mysql", "uuid", False, True, (T, O), QUOTES),
    ("mysql", "int", True, True, (), LONG_NAMES | PY313),
    ("mysql", "int", False, True, (C,), PY312),
    ("sqlite", "uuid", True, True, (T,), PY313),
    ("sqlite", "uuid", False, True, (C,), PY312),
    ("sqlite", "int", True, True, (C, T, O), LONG_NAMES | PY313),
    ("sqlite", "int", False, True, (), QUOTES),
    # The skeletons: no models, no routes; migrations, health and tests still work.
    ("postgresql", "uuid", True, False, (C, T), PY312),
    ("mysql", "uuid", False, False, (), {}),
    ("sqlite", "int", True, False, (O,), PY313),
    # The service's own users (auth=password), meeting every other answer.
    ("postgresql", "int", False, False, (C, T, P), PY313),
    ("mysql", "uuid", True, True, (P,), {}),
    ("sqlite", "int", True, True, (P,), PY312),
]


def variant(
    database: str,
    primary_key: str,
    soft_delete: bool,
    example_domain: bool,
    integrations: tuple[str, ...],
    extras: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """A variant's name and its answers: none for "default", every option's otherwise.

    The name says the options that shape the code: "postgresql-int-soft-delete-cache"."""
    answers = {
        "database": database,
        "primary_key": primary_key,
        "soft_delete": soft_delete,
        "example_domain": example_domain,
        "cache": C in integrations,
        "tracing": T in integrations,
        "jobs": J in integrations,
        "auth": O if O in integrations else P if P in integrations else "none",
    } | extras
    if all(answers.get(key, DEFAULTS[key]) == DEFAULTS[key] for key in OPTIONS) and not extras:
        return "default", {}
    name = f"{database}-{primary_key}-{'soft' if soft_delete else 'hard'}-delete"
    name += "" if example_domain else "-skeleton"
    return "-".join((name, *integrations)), answers


VARIANTS: dict[str, dict[str, Any]] = dict(variant(*row) for row in TABLE)
assert len(VARIANTS) == len(TABLE), "two rows of the table share a name"

# The kit's own tests (tests/kit/) run once per backend, each on a render of its own: the
# kit is the same bytes in every render (tests/test_kit.py), so one render a backend
# proves it. The package is `service`, the name tests/kit imports; the skeleton keeps
# the example domain out of the kit's tests. Soft delete and the cache are asked for
# while the kit still renders its repository per answer (tests/test_kit.py's
# NOT_YET_SHARED): their code is then there, and the tests choose it per model.
KIT_VARIANTS: dict[str, dict[str, Any]] = {
    f"kit-{database}": {
        "database": database,
        "project_name": "Kit",
        "package_name": "service",
        "example_domain": False,
        "soft_delete": True,
        "cache": True,
        # Background jobs are PostgreSQL's: the kit's tests of them run on its render,
        # the others test that the other backends refuse them.
        "jobs": database == "postgresql",
    }
    for database in DATABASES
}
