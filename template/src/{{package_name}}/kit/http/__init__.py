"""HTTP machinery shared by the routers: errors, middleware, pagination, health.

Importing the package registers the `key` path convertor (`paths.py`), which every
router's `/{name:key}` segments use.
"""

from .paths import register

register()
