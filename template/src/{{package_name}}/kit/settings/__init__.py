"""The kit's settings: `KitSettings`, which the service's `Settings` extends."""

from .auth import AuthMode
from .kit import MIN_CURSOR_SECRET_BYTES
from .kit import KitSettings
from .kit import ServiceName
from .kit import SettingsError
from .kit import format_validation_error
from .kit import load_settings
from .secrets import SECRET
from .secrets import SecretSourceError
from .secrets import is_secret
from .secrets import secret_fields
from .secrets import secret_values
from .urls import DatabaseURL
from .urls import RedisURL
from .urls import parse_database_url

# The name kit modules type their settings with: any service's `Settings` is one.
Settings = KitSettings

__all__ = [
    "MIN_CURSOR_SECRET_BYTES",
    "SECRET",
    "AuthMode",
    "DatabaseURL",
    "KitSettings",
    "RedisURL",
    "SecretSourceError",
    "ServiceName",
    "Settings",
    "SettingsError",
    "format_validation_error",
    "is_secret",
    "load_settings",
    "parse_database_url",
    "secret_fields",
    "secret_values",
]
