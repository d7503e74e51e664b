"""Every bad answer is refused with a message that says what is accepted.

Answers go in through `copier copy --data`, as a user would type them, and the
command line is used without `--trust`: the template needs no unsafe features.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .harness.paths import TEMPLATE_ROOT

COPIER = str(Path(sys.executable).parent / "copier")


def copier_copy(destination: Path, *data: str) -> subprocess.CompletedProcess[str]:
    args = [COPIER, "copy", "--defaults", "--vcs-ref", "HEAD", "--quiet"]
    for item in data:
        args += ["--data", item]
    return subprocess.run(
        [*args, str(TEMPLATE_ROOT), str(destination)],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


BAD_ANSWERS = [
    ("project_name", "", "project_name must not be empty"),
    ("project_name", "   ", "project_name must not be empty"),
    ("project_name", "x" * 61, "at most 60 characters"),
    ("project_name", 'The "Best" Service', "must not contain quotes"),
    ("project_slug", "Bad Slug", "lower-case letters, digits and single hyphens"),
    ("project_slug", "-leading", "lower-case letters, digits and single hyphens"),
    ("project_slug", "trailing-", "lower-case letters, digits and single hyphens"),
    ("project_slug", "double--hyphen", "lower-case letters, digits and single hyphens"),
    ("project_slug", "9lives", "starting with a letter"),
    ("project_slug", "a" * 51, "at most 50 characters"),
    ("package_name", "class", "is a Python keyword"),
    ("package_name", "json", "standard-library module"),
    ("package_name", "asyncio", "standard-library module"),
    ("package_name", "fastapi", "would shadow the dependency"),
    ("package_name", "sqlalchemy", "would shadow the dependency"),
    ("package_name", "alembic", "would shadow the dependency"),
    ("package_name", "pydantic", "would shadow the dependency"),
    ("package_name", "redis", "would shadow the dependency"),
    ("package_name", "my-service", "lower-case letters, digits and underscores"),
    ("package_name", "MyService", "lower-case letters, digits and underscores"),
    ("package_name", "2fast", "starting with a letter"),
    ("package_name", "a" * 41, "at most 40 characters"),
    ("description", "", "description must not be empty"),
    ("description", "x" * 81, "at most 80 characters"),
    ("description", 'Say "hi"', "must not contain quotes"),
    ("author_name", "", "author_name must not be empty"),
    ("author_name", "Eve <eve@example.com>", "angle brackets"),
    ("author_email", "not-an-email", "must look like name@example.com"),
    ("author_email", "jane@localhost", "must look like name@example.com"),
    ("author_email", "jane doe@example.com", "must look like name@example.com"),
    ("author_email", "@example.com", "must look like name@example.com"),
    ("author_email", "a@b@example.com", "must look like name@example.com"),
    ("python_version", "3.10", "3.11"),
    ("python_version", "3.14", "3.11"),
    ("database", "oracle", "postgresql"),
    ("database", "PostgreSQL", "postgresql"),
    ("primary_key", "guid", "uuid"),
    ("soft_delete", "maybe", "soft_delete"),
    ("soft_delete", "2", "soft_delete"),
    ("example_domain", "sometimes", "example_domain"),
    ("cache", "sometimes", "cache"),
    ("cache", "redis", "cache"),
    ("tracing", "perhaps", "tracing"),
    ("jobs", "sometimes", "jobs"),
    ("auth", "saml", "oidc"),
    ("auth", "OIDC", "oidc"),
]


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    BAD_ANSWERS,
    ids=[f"{q}={a[:12]!r}" for q, a, _ in BAD_ANSWERS],
)
def test_bad_answer_is_refused_with_a_message(
    tmp_path: Path, question: str, answer: str, message: str
) -> None:
    result = copier_copy(tmp_path / "out", f"{question}={answer}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # Copier's CLI prints its own traceback above a `--data` refusal (interactive prompts
    # show the message alone and ask again); the last line is always ours.
    last_line = output.strip().splitlines()[-1]
    assert message in last_line, output
    assert f"question '{question}'" in last_line or "Invalid choice" in last_line
    assert not any((tmp_path / "out").glob("**/*.py"))


@pytest.mark.parametrize("database", ["mysql", "sqlite"])
def test_jobs_are_refused_on_a_database_without_the_queue(tmp_path: Path, database: str) -> None:
    result = copier_copy(tmp_path / "out", f"database={database}", "jobs=true")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    last_line = output.strip().splitlines()[-1]
    assert "question 'jobs'" in last_line and "jobs needs PostgreSQL" in last_line, output
    assert not any((tmp_path / "out").glob("**/*.py"))


def test_every_question_has_bad_answers_tried() -> None:
    documents = yaml.safe_load_all(
        (TEMPLATE_ROOT / "copier.yml").read_text().replace("!include", "#")
    )
    asked = {
        name
        for document in documents
        if document
        for name, spec in document.items()
        if not name.startswith("_") and not (isinstance(spec, dict) and spec.get("when") is False)
    }
    assert asked == {question for question, _, _ in BAD_ANSWERS}


def test_good_answers_render_without_trust(tmp_path: Path) -> None:
    result = copier_copy(
        tmp_path / "svc",
        "project_name=Order Desk",
        "author_email=ops@example.org",
        "python_version=3.12",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answers = (tmp_path / "svc" / ".copier-answers.yml").read_text()
    assert "package_name: order_desk" in answers
    assert "project_slug: order-desk" in answers
    assert (tmp_path / "svc" / "src" / "order_desk" / "main.py").is_file()
