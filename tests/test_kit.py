"""The kit (`src/<pkg>/kit/`) is the template's, the same bytes in every render, and its
own tests (tests/kit/) pass on every backend.

A service updates its kit by taking the template's files whole, and a reader learns one
kit, not one per answer: so no answer may change a byte of it. Backends differ at run
time, options are idle code until configured (issue 24). So the kit is tested once per
backend, here, on a render of its own (tests/variants.py's KIT_VARIANTS); a rendered
service's suite tests the service's own code.

Every kit file is shared: no variant may change, add or drop one.
"""

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import admin_url, check_server
from .harness.paths import KIT_TESTS
from .harness.run import kit_suite, run
from .variants import DATABASES, VARIANTS

TEMPLATE_PACKAGE = Path(__file__).parents[1] / "template" / "src" / "{{package_name}}"
# The names a newcomer needs to add a resource, at most (issue 24); the entity's base and
# key come from the service's own entity.py.
PUBLIC_NAMES_AT_MOST = 8


def kit_files(rendered: Rendered) -> dict[str, bytes]:
    kit = rendered.path / "src" / rendered.package / "kit"
    return {
        path.relative_to(kit).as_posix(): path.read_bytes()
        for path in sorted(kit.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_kit_is_the_same_in_every_variant(render: Callable[[str], Rendered]) -> None:
    kits = {name: kit_files(render(name)) for name in sorted(VARIANTS)}
    every_name = set().union(*kits.values())
    differing = set()
    for name in every_name:
        contents = {kit.get(name) for kit in kits.values()}
        if len(contents) > 1:  # absent from some variant (None) or different bytes
            differing.add(name)
    assert differing == set(), "kit files that differ between variants"


def test_the_kit_holds_no_jinja() -> None:
    """The kit's sources in the template are its files as rendered: no `.jinja` suffix,
    no name that depends on an answer."""
    kit = TEMPLATE_PACKAGE / "kit"
    templated = set()
    for path in kit.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(kit).as_posix()
        # Copier renders only `.jinja` files; others, and names without tags, it copies.
        if relative.endswith(".jinja") or "{%" in relative or "{{" in relative:
            templated.add(relative)
    assert templated == set(), "templated kit files"


def test_the_kit_is_one_import_of_few_names() -> None:
    """`from <pkg>.kit import ...` offers what adding a resource takes, and no more."""
    source = (TEMPLATE_PACKAGE / "kit" / "__init__.py").read_text()
    tree = ast.parse(source)
    (exported,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
    ]
    names = ast.literal_eval(exported)
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert set(names) == imported, "every name the kit imports at its top, and only those"
    assert 0 < len(names) <= PUBLIC_NAMES_AT_MOST, names


def test_the_example_domain_holds_no_jinja() -> None:
    """The example domain's modules are the same code in every render: soft delete and the
    key type come from entity.py, the cache is a class attribute of the service."""
    domain = [
        path
        for package in ("projects", "tasks")
        for path in (
            TEMPLATE_PACKAGE / f"{{% if example_domain %}}{package}{{% endif %}}"
        ).iterdir()
    ]
    assert domain
    templated = [p.name for p in domain if p.name.endswith(".jinja") or "{{" in p.read_text()]
    assert templated == []
    assert not [p.name for p in domain if "{%" in p.read_text()]


@pytest.mark.full
@pytest.mark.parametrize("database", DATABASES)
def test_the_kits_own_tests_pass(
    database: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    """tests/kit/ on the backend's real server (and the real Redis), every test of that
    backend passing: none skipped, those of other backends left out."""
    check_server(database)  # fails with how-to-start instructions when the server is down
    rendered = render(f"kit-{database}")
    outcome, counts = kit_suite(venv_for(rendered), rendered.path, admin_url(database, tmp_path))
    assert outcome.ok, outcome.output[-5000:]
    assert counts.failed == counts.errors == counts.skipped == 0, outcome.output[-2000:]
    # Every file ran, but the dialect files of the other backends. (pytest names each
    # test by its path from the render, where it ran.)
    ran = {
        Path(line.split()[1].split("::")[0]).name
        for line in outcome.output.splitlines()
        if line.startswith("PASSED ")
    }
    others = {f"test_dialect_{other}.py" for other in DATABASES if other != database}
    files = {path.name for path in KIT_TESTS.glob("test_*.py")} - others
    assert files - ran == set(), outcome.output[-2000:]


@pytest.mark.full
def test_the_kits_own_tests_are_typed(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """mypy --strict reads tests/kit/ against the render's kit, with the render's own
    configuration, as it reads a service's own tests."""
    rendered = render("kit-sqlite")
    checked = run(
        venv_for(rendered),
        rendered.path,
        "mypy",
        "--strict",
        "--cache-dir",
        "/dev/null",
        str(KIT_TESTS),
    )
    assert checked.ok, checked.output[-5000:]
