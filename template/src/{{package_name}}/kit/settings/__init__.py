"""The kit's settings: `KitSettings`, which the service's `Settings` extends."""

from .kit import MIN_CURSOR_SECRET_BYTES
from .kit import KitSettings
from .kit import ServiceName
from .kit import SettingsError
from .kit import format_validation_error
from .kit import load_settings
from .urls import DatabaseURL
from .urls import RedisURL
from .urls import parse_database_url

# The name kit modules type their settings with: any service's `Settings` is one.
Settings = KitSettings

__all__ = [
    "MIN_CURSOR_SECRET_BYTES",
    "DatabaseURL",
    "KitSettings",
    "RedisURL",
    "ServiceName",
    "Settings",
    "SettingsError",
    "format_validation_error",
    "load_settings",
    "parse_database_url",
]
