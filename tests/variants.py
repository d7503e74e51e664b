"""The one table of variants the suite proves. Every test file draws from it.

Each variant is a set of answers on top of the defaults. The full tier (install, the
service's own tests on a real database, a uvicorn boot) runs for every variant here.
"""

from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    # What `copier copy --defaults` gives a new user.
    "default": {},
    # The longest names the validators accept and the newest Python: catches lines that
    # only overflow with a long package name, and code that only a newer Python accepts.
    "long-names-py313": {
        "project_name": "Inventory Reconciliation Platform Service",
        "package_name": "inventory_reconciliation_platform_svc_v2",
        "python_version": "3.13",
        "author_name": "Zoë Ångström-O'Brien",
    },
    # Database-made integer keys and hard deletes, on Python 3.12.
    "int-keys-hard-delete-py312": {
        "project_name": "Billing",
        "python_version": "3.12",
        "description": "Invoices & payments, with 'quotes' in the text.",
        "primary_key": "int",
        "soft_delete": False,
    },
    # The empty skeleton: no models, no routes; migrations, health and tests still work.
    "skeleton": {
        "example_domain": False,
    },
}
