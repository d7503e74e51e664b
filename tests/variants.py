"""The one table of variants the suite proves. Every test file draws from it.

Each variant is a set of answers on top of the defaults; the full tier (install, the
service's own tests on a real database, Alembic's command line, a uvicorn boot) runs for
every one. Together they cover every backend fully, every option with every backend,
and every pair of option values (database, primary_key, soft_delete, example_domain).
"""

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    # What `copier copy --defaults` gives a new user: PostgreSQL, UUIDv7, soft delete.
    "default": {},
    "postgresql-int-hard-delete-py312": {
        "project_name": "Billing",
        "python_version": "3.12",
        "description": "Invoices & payments, with 'quotes' in the text.",
        "primary_key": "int",
        "soft_delete": False,
    },
    # The empty skeleton: no models, no routes; migrations, health and tests still work.
    "postgresql-skeleton": {"example_domain": False},
    # The longest names the validators accept and the newest Python, on MariaDB: catches
    # lines that only overflow with a long package name and code only newer Pythons take.
    "mysql-int-long-names-py313": {
        "project_name": "Inventory Reconciliation Platform Service",
        "package_name": "inventory_reconciliation_platform_svc_v2",
        "python_version": "3.13",
        "author_name": "Zoë Ångström-O'Brien",
        "database": "mysql",
        "primary_key": "int",
    },
    "mysql-skeleton-hard-delete": {
        "database": "mysql",
        "soft_delete": False,
        "example_domain": False,
    },
    "sqlite-hard-delete": {"database": "sqlite", "soft_delete": False, "python_version": "3.12"},
    "sqlite-int-skeleton": {"database": "sqlite", "primary_key": "int", "example_domain": False},
}
