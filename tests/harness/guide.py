"""The rendered README's "Add a resource" guide, followed the way a team follows it.

`tests/test_add_resource.py` follows the working tree's guide on fresh renders; the update
test follows an older release's guide in a service that release rendered. Both read the
guide from the service's own README, so the guide and the tests cannot drift apart.
"""

import ast
import re
from pathlib import Path

CODE = re.compile(r"```(python|bash)\n(.*?)```", flags=re.DOTALL)


def guide(project: Path) -> list[tuple[str, str]]:
    """The code blocks of the README's "Add a resource" section, in order."""
    readme = (project / "README.md").read_text()
    section = readme.split("## Add a resource", 1)[1].split("\n## ", 1)[0]
    return [(kind, body) for kind, body in CODE.findall(section)]


def write_files(project: Path) -> list[Path]:
    """Write the files the guide adds (each block names its file in a first-line comment)."""
    files = [body for kind, body in guide(project) if kind == "python" and body.startswith("# ")]
    assert len(files) >= 6, "the guide names each file it adds in a first-line comment"
    written = []
    for body in files:
        first, rest = body.split("\n", 1)
        path = project / first.removeprefix("# ")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rest)
        written.append(path)
    return written


def registrations(project: Path) -> tuple[str, str, str]:
    """The guide's model import (for `models.py`), router import and include (`main.py`)."""
    blocks = [body for kind, body in guide(project) if kind == "python" and body.startswith("from")]
    model, router = blocks
    (model_import,) = model.strip().splitlines()
    router_import, include = router.rstrip().splitlines()
    return model_import, router_import, include


def commands(project: Path) -> list[str]:
    """The guide's shell commands, in order."""
    return [line for kind, body in guide(project) if kind == "bash" for line in body.splitlines()]


def follow(project: Path, package: str) -> list[str]:
    """Write the guide's files and registrations; return its shell commands."""
    write_files(project)
    model_import, router_import, include = registrations(project)
    register_model(project / "src" / package / "models.py", model_import)
    register_router(project / "src" / package / "main.py", f"{router_import}\n{include}")
    return commands(project)


def register_model(registry: Path, line: str) -> None:
    """Import the model in the registry and export it, both in the order ruff keeps."""
    name = line.rsplit(" ", 1)[1]
    text = _insert_import(registry.read_text(), line)
    exported = re.search(r"^__all__ = (\[.*?\])$", text, flags=re.MULTILINE | re.DOTALL)
    assert exported, f"no __all__ in {registry}:\n{text}"
    names: list[str] = [*ast.literal_eval(exported.group(1)), name]
    # ruff's RUF022 order: CONSTANTS, then Classes, then the rest, each alphabetical.
    names.sort(key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    listed = ", ".join(f'"{n}"' for n in names)
    registry.write_text(text.replace(exported.group(0), f"__all__ = [{listed}]"))


def register_router(main: Path, block: str) -> None:
    """The guide's import with the others, its include line after the app's last one."""
    line, include = block.rstrip().splitlines()
    lines = _insert_import(main.read_text(), line).splitlines()
    anchor = max(i for i, text in enumerate(lines) if text.strip().startswith("api = "))
    anchor = max([anchor, *(i for i, t in enumerate(lines) if "api.include_router(" in t)])
    lines.insert(anchor + 1, include)
    main.write_text("\n".join(lines) + "\n")


def _insert_import(text: str, line: str) -> str:
    lines = text.splitlines()
    imports = [i for i, t in enumerate(lines) if t.startswith("from .")]
    assert imports, "no package imports:\n" + text
    first, last = imports[0], imports[-1]
    block = [t for t in lines[first : last + 1] if not t.startswith("{")]
    lines[first : last + 1] = sorted([*block, line], key=lambda t: t.split(" import ")[0])
    return "\n".join(lines) + "\n"
