"""Secret settings from files: `<NAME>_FILE`, or SECRETS_DIR as Kubernetes mounts a
Secret; one source per secret; a file that cannot be read named with its path, never
its content; and a secret never echoed by a settings error.

Which settings are secret is read from their types (SecretStr, the database URLs), so a
secret setting added later, in the kit or in a service's own Settings, gets all of it.
"""

import io
import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from service.kit.observability.logging import configure_logging
from service.kit.settings import (
    DatabaseURL,
    SettingsError,
    format_validation_error,
    load_settings,
    secret_fields,
    secret_values,
)
from service.main import create_app
from service.settings import Settings, get_settings
from sqlalchemy import URL

# The secret settings of the kit (a service's own Settings may add more).
KIT_SECRETS = {
    "database_url",
    "database_direct_url",
    "database_owner_url",
    "db_replica_urls",
    "cursor_secret",
    "redis_url",
}
PASSWORD = "Kq7-file/s3cr@t"
QUOTED = "Kq7-file%2Fs3cr%40t"
CURSOR = "Kq7-cursor-" + "x" * 32
# A value of each secret setting, as its file would hold it (with the newline editors add).
VALUES = {
    "database_url": f"postgresql://app:{QUOTED}@db:5432/app\n",
    "database_direct_url": f"postgresql://app:{QUOTED}@db-direct:5432\n",
    "database_owner_url": f"postgresql://owner:{QUOTED}@db-direct:5432\n",
    "db_replica_urls": f"postgresql://app:{QUOTED}@replica:5432/app\n",
    "cursor_secret": f"{CURSOR}\n",
    "redis_url": f"redis://app:{QUOTED}@cache:6379/0\n",
}
# What the service reads from each: the URL's password, the cursor secret, Redis's URL.
EXPECTED = {name: PASSWORD for name in VALUES} | {
    "cursor_secret": CURSOR,
    "redis_url": VALUES["redis_url"].strip(),
}
# Settings the suite's own run may set, which the tests here set themselves.
OURS = (
    "DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "DATABASE_OWNER_URL",
    "DB_REPLICA_URLS",
    "CURSOR_SECRET",
    "REDIS_URL",
)


@pytest.fixture(autouse=True)
def environment_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*OURS, "DB_BEHIND_PGBOUNCER", "MIGRATE_ON_STARTUP", "SECRETS_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    get_settings.cache_clear()


def secret(settings: Settings, name: str) -> str:
    """A secret setting's value as the service uses it, whatever its type."""
    value = getattr(settings, name)
    if isinstance(value, list):
        (value,) = value
    if isinstance(value, URL):
        return str(value.password)
    assert isinstance(value, SecretStr), value
    return value.get_secret_value()


def loaded() -> Settings:
    try:
        return load_settings(Settings)
    finally:
        get_settings.cache_clear()


def test_the_secret_settings_are_known_by_their_types() -> None:
    assert set(secret_fields(Settings)) >= KIT_SECRETS
    assert not {"service_name", "db_pool_size", "cors_origins"} & set(secret_fields(Settings))


@pytest.mark.parametrize("name", sorted(KIT_SECRETS))
def test_each_secret_setting_is_read_from_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    file = tmp_path / "secret"
    file.write_text(VALUES[name])
    monkeypatch.setenv(f"{name.upper()}_FILE", str(file))
    if name != "database_url":
        monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/app")
    assert secret(loaded(), name) == EXPECTED[name]


def test_every_secret_is_read_from_a_kubernetes_secret_volume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As the kubelet mounts a Secret: each key a symlink through `..data` to a
    timestamped directory, which it swaps on an update."""
    mount = tmp_path / "secrets"
    version = mount / "..2026_01_01_00_00_00.000000001"
    version.mkdir(parents=True)
    (mount / "..data").symlink_to(version.name)
    for name, value in VALUES.items():
        (version / name.upper()).write_text(value)
        (mount / name.upper()).symlink_to(f"..data/{name.upper()}")
    (version / "DB_POOL_SIZE").write_text("0")  # not a secret setting: left alone
    (mount / "DB_POOL_SIZE").symlink_to("..data/DB_POOL_SIZE")
    monkeypatch.setenv("SECRETS_DIR", str(mount))
    settings = loaded()
    for name, expected in EXPECTED.items():
        assert secret(settings, name) == expected, name
    assert settings.secrets_dir == mount
    assert settings.db_pool_size == Settings.model_fields["db_pool_size"].default


def test_the_environment_still_serves_when_no_file_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))  # holds no file of any setting
    monkeypatch.setenv("DATABASE_URL", VALUES["database_url"].strip())
    monkeypatch.setenv("CURSOR_SECRET", CURSOR)
    settings = loaded()
    assert secret(settings, "database_url") == PASSWORD
    assert secret(settings, "cursor_secret") == CURSOR


@pytest.mark.parametrize(
    ("via", "also"), [("_FILE", "env"), ("SECRETS_DIR", "env"), ("_FILE", ".env")]
)
def test_a_secret_given_twice_stops_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, via: str, also: str
) -> None:
    """Which one would win is a guess the reader of the manifests should not have to make."""
    (tmp_path / "CURSOR_SECRET").write_text(CURSOR)
    if via == "_FILE":
        monkeypatch.setenv("CURSOR_SECRET_FILE", str(tmp_path / "CURSOR_SECRET"))
    else:
        monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    other = "Kq7-from-elsewhere-" + "y" * 32
    if also == "env":
        monkeypatch.setenv("CURSOR_SECRET", other)
    else:
        monkeypatch.chdir(tmp_path)  # where the settings look for `.env`
        (tmp_path / ".env").write_text(f"CURSOR_SECRET={other}\n")
    with pytest.raises(SettingsError) as caught:
        loaded()
    message = str(caught.value)
    (line,) = [line for line in message.splitlines() if "CURSOR_SECRET" in line]
    assert "given twice" in line and str(tmp_path / "CURSOR_SECRET") in line, line
    assert ("in .env" in line) == (also == ".env"), line
    assert "Kq7" not in message


def test_a_file_and_the_secrets_dir_for_one_setting_stop_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "CURSOR_SECRET").write_text(CURSOR)
    other = tmp_path / "other"
    other.write_text(CURSOR)
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CURSOR_SECRET_FILE", str(other))
    with pytest.raises(SettingsError, match="CURSOR_SECRET.* given twice") as caught:
        loaded()
    assert "Kq7" not in str(caught.value)


@pytest.mark.parametrize("problem", ["missing", "directory", "empty", "not-utf-8", "secrets-dir"])
def test_a_file_that_cannot_be_read_stops_start_up_naming_setting_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "cursor"
    if problem == "directory":
        path.mkdir()
    elif problem == "empty":
        path.write_text("\n")
    elif problem == "not-utf-8":
        path.write_bytes(b"Kq7-\xff\xfe-" + b"z" * 32)
    if problem == "secrets-dir":
        monkeypatch.setenv("SECRETS_DIR", str(path))  # no such directory
        expected = ("SECRETS_DIR", str(path))
    else:
        monkeypatch.setenv("CURSOR_SECRET_FILE", str(path))
        expected = ("CURSOR_SECRET_FILE", str(path))
    with pytest.raises(SettingsError) as caught:
        loaded()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2, lines  # the heading and one line
    assert all(part in lines[1] for part in expected), lines
    assert "Kq7" not in lines[1] and "Traceback" not in lines[1]


def test_a_secret_setting_added_later_is_read_from_a_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A service's own secret (or the kit's next one) needs nothing but its type."""

    class Extended(Settings):
        api_token: SecretStr | None = None
        owner_url: DatabaseURL | None = None

    (tmp_path / "API_TOKEN").write_text("Kq7-token\n")
    (tmp_path / "owner").write_text(VALUES["database_url"])
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("OWNER_URL_FILE", str(tmp_path / "owner"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/app")
    assert {"api_token", "owner_url"} <= set(secret_fields(Extended))
    settings = load_settings(Extended)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "Kq7-token"
    assert settings.owner_url is not None and settings.owner_url.password == PASSWORD


@pytest.mark.parametrize(
    "url",
    [
        # A password that was not URL-quoted can land where the port is parsed.
        "postgresql://app:pw@db:Kq7-leaked/app",
        # The password's own file given for the URL's.
        "Kq7-leaked",
        # The password in the query string is sent to the server, but printed as it is.
        "postgresql://app@db:5432/app?password=Kq7-leaked",
        "mysql://app@db:3306/app?passwd=Kq7-leaked",
    ],
)
def test_a_bad_database_url_is_refused_without_echoing_it(url: str) -> None:
    for field in ("database_url", "database_direct_url", "db_replica_urls"):
        data = {"database_url": "postgresql://app@db:5432/app", field: url}
        with pytest.raises(ValidationError) as caught:
            Settings(**data)  # type: ignore[arg-type]
        message = format_validation_error(caught.value)
        assert field.upper() in message
        assert "Kq7" not in message, message
        assert "Kq7" not in str(caught.value) and "Kq7" not in repr(caught.value)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_secret_any_code_logs_is_redacted(log_format: str) -> None:
    """Whatever logs a secret the service holds (its own code, a library, an exception's
    text), the line carries `***` instead, as written and as URL-quoted."""
    settings = Settings(
        database_url=VALUES["database_url"].strip(),
        cursor_secret=CURSOR,
        redis_url=VALUES["redis_url"].strip(),
        log_format=log_format,
    )
    create_app(settings)  # sets up the service's logging, as at start-up
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        log = logging.getLogger("service.tests")
        log.warning("cursor %s", CURSOR)
        log.warning("url %s", settings.database_url.render_as_string(hide_password=False))
        logging.getLogger("uvicorn.error").warning("redis at %s", VALUES["redis_url"].strip())
        try:
            raise RuntimeError(f"could not log in with {PASSWORD}")
        except RuntimeError:
            log.exception("failed")
    finally:
        configure_logging(settings.log_level, "text")
    written = stream.getvalue()
    assert "Kq7" not in written, written
    assert written.count("***") == 4, written  # one a line
    assert "RuntimeError: could not log in with ***" in written  # the rest stays readable
    if log_format == "json":
        assert all(json.loads(line) for line in written.splitlines() if line.startswith("{"))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:postgres@db:5432/app",  # the password is the user's name
        "mysql://root:mariadb@db:3306/app",  # shorter than a secret can be
        "postgresql://app@db:5432/app",
    ],
)
def test_a_password_that_guards_nothing_is_left_in_the_logs(url: str) -> None:
    """Development's passwords: blanking `postgres` everywhere would blank the log."""
    settings = Settings(database_url=url, cursor_secret=CURSOR, redis_url="")
    assert secret_values(settings) == {CURSOR}
