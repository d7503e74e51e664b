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
    """Write the files the guide adds (each block names its file in a first-line comment);
    a block for a file the service has (the model registry) is added to it, as the guide
    says: its imports beside the file's, the rest before `metadata`, the class exported."""
    files = [body for kind, body in guide(project) if kind == "python" and body.startswith("# ")]
    assert len(files) >= 4, "the guide names each file it adds in a first-line comment"
    written = []
    for body in files:
        first, rest = body.split("\n", 1)
        path = project / first.removeprefix("# ")
        if path.name == "models.py" and path.parent.parent.name == "src":  # the registry
            add_to_registry(path, rest)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rest)
        written.append(path)
    return written


def registration_blocks(project: Path) -> list[str]:
    """The guide's blocks of lines for existing files: a model import for `models.py`
    (guides up to v0.3.0), and the router's import and include for `main.py`."""
    return [body for kind, body in guide(project) if kind == "python" and body.startswith("from")]


def registrations(project: Path) -> tuple[str, str, str]:
    """A guide of v0.3.0 or before: its model import (for `models.py`), router import
    and include (`main.py`)."""
    model, router = registration_blocks(project)
    (model_import,) = model.strip().splitlines()
    router_import, include = router.rstrip().splitlines()
    return model_import, router_import, include


def commands(project: Path) -> list[str]:
    """The guide's shell commands, in order."""
    return [line for kind, body in guide(project) if kind == "bash" for line in body.splitlines()]


def follow(project: Path, package: str) -> list[str]:
    """Write the guide's files and registrations; return its shell commands."""
    write_files(project)
    blocks = registration_blocks(project)
    if len(blocks) == 2:  # the model registered apart (guides up to v0.3.0)
        model_import, router_import, include = registrations(project)
        register_model(project / "src" / package / "models.py", model_import)
    else:  # the model written into the registry (write_files)
        (router,) = blocks
        router_import, include = router.rstrip().splitlines()
    register_router(project / "src" / package / "main.py", f"{router_import}\n{include}")
    return commands(project)


def add_to_registry(registry: Path, addition: str) -> None:
    """Add a model to the registry: the addition's imports among the registry's (each
    group sorted as ruff sorts single-name imports), the rest before `metadata = `, and
    each class it defines in `__all__`."""
    lines = addition.splitlines()
    new_imports = [line for line in lines if line.startswith(("from ", "import "))]
    body = "\n".join(line for line in lines if line not in new_imports).strip("\n")
    text = registry.read_text()
    old = text.splitlines()
    indices = [i for i, line in enumerate(old) if line.startswith(("from ", "import "))]
    assert indices, f"no imports in {registry}:\n{text}"
    first, last = indices[0], indices[-1]
    imports = {line for line in old[first : last + 1] if line.strip()} | set(new_imports)
    groups = [
        sorted((i for i in imports if not i.startswith("from .")), key=_import_order),
        sorted((i for i in imports if i.startswith("from .")), key=_import_order),
    ]
    block = "\n\n".join("\n".join(group) for group in groups if group)
    rest = "\n".join(old[last + 1 :])
    assert "\nmetadata = " in f"\n{rest}", f"no `metadata = ` in {registry}:\n{text}"
    rest = rest.replace("metadata = ", f"{body}\n\n\nmetadata = ", 1)
    head = "\n".join(old[:first])
    registry.write_text(f"{head}\n{block}\n\n\n{rest.lstrip(chr(10))}\n")
    for name in re.findall(r"^class (\w+)", body, flags=re.MULTILINE):
        _export(registry, name)


def _import_order(line: str) -> tuple[str, bool, bool, str]:
    """`from module import Name` in ruff's order: by module, then CONSTANTS, Classes and
    the rest, each alphabetical."""
    if line.startswith("import "):  # ruff puts `import x` before `from ...` in a section
        return "", True, True, line
    module, _, name = line.removeprefix("from ").partition(" import ")
    return module, not name.isupper(), not name[0].isupper(), name.lower()


def register_model(registry: Path, line: str) -> None:
    """Import the model in the registry and export it, both in the order ruff keeps."""
    registry.write_text(_insert_import(registry.read_text(), line))
    _export(registry, line.rsplit(" ", 1)[1])


def _export(registry: Path, name: str) -> None:
    """Add `name` to the registry's `__all__`, in the order ruff keeps."""
    text = registry.read_text()
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
