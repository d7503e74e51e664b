"""Secret settings: known by their type, and readable from a file as well as the environment.

A setting is secret when its type is pydantic's `SecretStr` (or another of its `Secret`
types) or is marked `SECRET` (the database URLs are), wherever it is declared: the kit's
settings, or a service's own. Each secret setting `NAME` can come from exactly one of

- the environment (or `.env`): `NAME=value`;
- `NAME_FILE=/path`: the file's content (the environment names the file);
- `SECRETS_DIR=/dir`: the file `/dir/NAME`, as Kubernetes mounts a Secret's keys.

A file's content is stripped of surrounding whitespace (the newline editors add). Two
sources for one secret stop start-up, naming both: which would win is a guess nobody
reading the manifests should have to make. A file that cannot be read stops start-up
with the setting and the path, never the content. Other settings are not read from
SECRETS_DIR: the Secret holds the secrets, the ConfigMap the rest.
"""

import os
from pathlib import Path
from typing import Annotated
from typing import Any
from typing import get_args
from typing import get_origin

from pydantic import SecretBytes
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic.types import Secret
from pydantic_settings import BaseSettings
from pydantic_settings import PydanticBaseSettingsSource
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# The variable naming the directory; it is also a setting (KitSettings.secrets_dir).
SECRETS_DIR = "SECRETS_DIR"


class SecretSetting:
    """The mark of a secret setting whose type is not a `SecretStr` (a database URL)."""

    def __repr__(self) -> str:
        return "SECRET"


SECRET = SecretSetting()
_SECRET_TYPES = (SecretStr, SecretBytes, Secret)
# Shorter values are not redacted from the log (`secret_values`).
MIN_REDACTED = 8


class SecretSourceError(ValueError):
    """A secret's file cannot be read, or the secret has two sources: one line, no value."""


def _is_secret_type(annotation: Any) -> bool:
    """`SecretStr`, `Secret[...]`, or a type marked `SECRET`, also inside `X | None` and
    `list[X]`."""
    origin = get_origin(annotation)
    if isinstance(origin or annotation, type) and issubclass(origin or annotation, _SECRET_TYPES):
        return True
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        return any(isinstance(m, SecretSetting) for m in metadata) or _is_secret_type(base)
    return any(_is_secret_type(arg) for arg in get_args(annotation))


def is_secret(field: FieldInfo) -> bool:
    """Secret by its type, or by the `SECRET` mark (also inside `X | None`)."""
    return any(isinstance(m, SecretSetting) for m in field.metadata) or _is_secret_type(
        field.annotation
    )


def secret_fields(settings: type[BaseSettings]) -> list[str]:
    """The names of the secret settings of `settings`."""
    return [name for name, field in settings.model_fields.items() if is_secret(field)]


def secret_values(settings: BaseSettings) -> set[str]:
    """The values the log must never show: each secret setting's value, and each URL's
    password. Not one shorter than MIN_REDACTED, nor a password that is its user's name
    (`postgres:postgres` in development): those guard nothing, and blanking them would
    blank every `postgres` in the log."""
    found: set[str] = set()
    for name in secret_fields(type(settings)):
        value = getattr(settings, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, SecretStr | SecretBytes | Secret):
                item = item.get_secret_value()
                if isinstance(item, str) and "://" in item:  # a URL's password (Redis's)
                    found |= _password(item)
            if isinstance(item, URL):
                found |= _password(item)
            elif isinstance(item, str):
                found.add(item)
    return {value for value in found if len(value) >= MIN_REDACTED}


def _password(url: URL | str) -> set[str]:
    try:
        url = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return set()
    return {url.password} if url.password and url.password != url.username else set()


def _read(setting: str, origin: str, path: Path) -> str:
    """The file's content, or one line naming the setting and the path (never content)."""
    try:
        content = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise SecretSourceError(f"{setting}: {origin}: no such file") from None
    except IsADirectoryError:
        raise SecretSourceError(f"{setting}: {origin}: a directory, not a file") from None
    except UnicodeDecodeError:
        raise SecretSourceError(f"{setting}: {origin}: not UTF-8 text") from None
    except OSError as error:
        raise SecretSourceError(f"{setting}: {origin}: cannot read ({error.strerror})") from None
    if not content:
        raise SecretSourceError(f"{setting}: {origin}: the file is empty")
    return content


class SecretFiles(PydanticBaseSettingsSource):
    """The secret settings given by `NAME_FILE` or SECRETS_DIR. `given`: the other
    sources by where they read (the environment, `.env`), to refuse a second source."""

    def __init__(
        self, settings_cls: type[BaseSettings], given: dict[str, PydanticBaseSettingsSource]
    ) -> None:
        super().__init__(settings_cls)
        self.given = given

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every secret at once

    def _given_elsewhere(self, name: str) -> str | None:
        """Where else the setting is given, if anywhere (an empty value is no value)."""
        field = self.settings_cls.model_fields[name]
        for where, source in self.given.items():
            if source.get_field_value(field, name)[0] not in (None, ""):
                return f"{name.upper()} in {where}"
        return None

    def _directory(self) -> Path | None:
        if "secrets_dir" not in self.settings_cls.model_fields:
            return None
        field = self.settings_cls.model_fields["secrets_dir"]
        for source in self.given.values():
            if given := source.get_field_value(field, "secrets_dir")[0]:
                break
        else:
            return None
        directory = Path(str(given))
        if not directory.is_dir():
            raise SecretSourceError(f"{SECRETS_DIR}: {directory} is not a directory")
        return directory

    def __call__(self) -> dict[str, Any]:
        directory = self._directory()
        in_directory = {}
        if directory is not None:
            in_directory = {entry.name.upper(): entry for entry in directory.iterdir()}
        values: dict[str, Any] = {}
        for name in secret_fields(self.settings_cls):
            setting = name.upper()
            sources = []
            if named := os.environ.get(f"{setting}_FILE"):
                sources.append((f"{setting}_FILE={named}", Path(named)))
            if setting in in_directory:
                path = in_directory[setting]
                sources.append((f"{path} ({SECRETS_DIR})", path))
            if not sources:
                continue
            elsewhere = self._given_elsewhere(name)
            origins = [origin for origin, _path in sources] + ([elsewhere] if elsewhere else [])
            if len(origins) > 1:
                raise SecretSourceError(
                    f"{setting}: given twice, by {' and by '.join(origins)}; keep one"
                )
            origin, path = sources[0]
            values[name] = _read(setting, origin, path)
        return values
