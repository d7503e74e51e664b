"""The variant table (tests/variants.py) builds every combination it promises.

Fast tier: nothing is rendered. The values of each option come from copier.yml, so a
new choice there (a fourth database, a Python version) fails here until the table
covers it.
"""

import re
from collections.abc import Iterable
from itertools import combinations, product
from pathlib import Path
from typing import Any

import yaml

from .harness.paths import TEMPLATE_ROOT
from .variants import DEFAULTS, OPTIONS, POSTGRESQL_ONLY, VARIANTS


def questions() -> dict[str, dict[str, Any]]:
    """copier.yml's questions; its `!include` tags read as nothing."""
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    found: dict[str, dict[str, Any]] = {}
    for document in yaml.load_all((TEMPLATE_ROOT / "copier.yml").read_text(), Loader=loader):
        found |= {k: v for k, v in (document or {}).items() if isinstance(v, dict)}
    return found


def values(option: str) -> list[Any]:
    choices = questions()[option]["choices"]
    return list(choices.values()) if isinstance(choices, dict) else list(choices)


def built(*options: str, where: Iterable[tuple[str, Any]] = ()) -> set[tuple[Any, ...]]:
    """The combinations of `options` that some variant (matching `where`) answers."""
    answered = [DEFAULTS | answers for answers in VARIANTS.values()]
    conditions = dict(where)
    return {
        tuple(a[option] for option in options)
        for a in answered
        if all(a[key] == value for key, value in conditions.items())
    }


def missing(*options: str, where: Iterable[tuple[str, Any]] = ()) -> set[tuple[Any, ...]]:
    wanted = set(product(*(values(option) for option in options)))
    return wanted - built(*options, where=where)


def test_defaults_are_copier_defaults() -> None:
    asked = questions()
    assert {option: asked[option]["default"] for option in (*OPTIONS, *POSTGRESQL_ONLY)} == DEFAULTS
    assert VARIANTS["default"] == {}, "default is what `copier copy --defaults` gives"


def test_every_pair_of_answers_is_built() -> None:
    gaps = {pair: missing(*pair) for pair in combinations(OPTIONS, 2) if missing(*pair)}
    assert not gaps, f"pairs of answers no variant builds: {gaps}"


def test_every_domain_shape_is_built() -> None:
    # Key type, delete mode and backend interact three ways in the example domain's tables.
    shape = ("database", "primary_key", "soft_delete")
    assert not missing(*shape, where={"example_domain": True}.items())


def test_the_cache_meets_each_key_type_and_delete_mode_on_each_backend() -> None:
    # The cache keys rows by id and drops them on writes and deletes (a hard delete's
    # cascade included): each backend builds it with both, on the example domain.
    domain = {"example_domain": True}.items()
    assert not missing("cache", "soft_delete", "database", where=domain)
    assert not missing("cache", "primary_key", "database", where=domain)


def test_integrations_meet_each_other_on_each_backend() -> None:
    # A cached read is still traced; the cache without traces and traces without it.
    assert not missing("cache", "tracing", "database", where={"example_domain": True}.items())


def test_the_options_the_table_covers_are_all_the_questions_that_shape_code() -> None:
    # Every question with choices is in OPTIONS: one added to copier.yml needs a place here.
    with_choices = {name for name, spec in questions().items() if "choices" in spec}
    assert with_choices == set(OPTIONS) | set(POSTGRESQL_ONLY)


def test_each_postgresql_only_answer_is_built_both_ways_on_postgresql() -> None:
    for option in POSTGRESQL_ONLY:
        assert not missing(option, where={"database": "postgresql"}.items()), option
        assert built(option, where={"database": "mysql"}.items()) == {(False,)}
        assert built(option, where={"database": "sqlite"}.items()) == {(False,)}


def test_every_variant_a_test_names_is_in_the_table() -> None:
    # A test that picks variants by name (a representative per backend) must not name
    # one the table no longer has: it would fail with a KeyError, or select nothing.
    named = re.compile(r'"((?:postgresql|mysql|sqlite)-[a-z0-9-]+)"')
    unknown = {
        (path.name, name)
        for path in Path(__file__).parent.glob("test_*.py")
        for name in named.findall(path.read_text())
        if name not in VARIANTS
    }
    assert not unknown, f"variants named by tests but not in tests/variants.py: {unknown}"
