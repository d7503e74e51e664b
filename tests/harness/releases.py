"""A throwaway template repository holding every release so far and the checkout as the next.

The update tests must not depend on tags in the clone they run in (CI clones may carry
none), so they rebuild every end from history: the recorded commit of each release is
tagged in a temporary clone, and the working tree (uncommitted changes included) is
committed on top and tagged as the next release.
"""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .paths import TEMPLATE_ROOT


@dataclass(frozen=True)
class Release:
    tag: str
    commit: str
    databases: tuple[str, ...]  # the backends it offered
    asks_database: bool = True  # False: it had no `database` question (PostgreSQL only)

    def answers(self, database: str) -> dict[str, str]:
        """The answers that choose `database` when rendering this release."""
        return {"database": database} if self.asks_database else {}


# Every release whose services must update cleanly to the working tree, oldest first:
# the update test crosses every change since each. Drop one only with its support.
RELEASES = (
    Release("v0.1.0", "506dc212309b137f36b2e6d1642cb9c2e6fd4f1b", ("postgresql",), False),
    Release(
        "v0.2.0", "a4954be5a5902cee4ba2be9e147399f6d98476bd", ("postgresql", "mysql", "sqlite")
    ),
    Release(
        "v0.3.0", "36b361fc247fb7a3e49f33073663f82c64536995", ("postgresql", "mysql", "sqlite")
    ),
)
BY_TAG = {release.tag: release for release in RELEASES}

_GIT_IDENTITY = [
    "-c",
    "user.name=Template Tests",
    "-c",
    "user.email=tests@example.invalid",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
]


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *_GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Releases:
    repo: Path
    new: str


def next_minor(tag: str) -> str:
    major, minor, _ = tag.lstrip("v").split(".")
    return f"v{major}.{int(minor) + 1}.0"


def next_release() -> str:
    """The release the working tree is: the one CHANGELOG.md's Unreleased section names
    (`This release is vX.Y.Z.`); on the commit that makes a release, its dated entry not
    yet recorded here; else the minor after the last recorded release."""
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    top = re.search(r"^## (Unreleased|(v\d+\.\d+\.\d+) \()", changelog, re.MULTILINE)
    if top and top[2] and top[2] not in BY_TAG:
        return top[2]
    if top and top[1] == "Unreleased":
        unreleased = changelog.split("\n## Unreleased\n", 1)[1].split("\n## ", 1)[0]
        named = re.search(r"^This release is (v\d+\.\d+\.\d+)\.$", unreleased, re.MULTILINE)
        if named:
            return named[1]
    return next_minor(RELEASES[-1].tag)


def build(workdir: Path, *, with_working_tree: bool = True) -> Releases:
    """A clone tagged with every recorded release and, unless told not to, the working
    tree committed on top as the next release."""
    repo = workdir / "template-repo"
    git(workdir, "clone", "--quiet", "--no-hardlinks", str(TEMPLATE_ROOT), str(repo))
    for release in RELEASES:
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{release.commit}^{{commit}}"], cwd=repo, check=False
        )
        if known.returncode != 0:
            pytest.fail(
                f"The history of release {release.tag} ({release.commit}) is missing from "
                "this clone, so the update test cannot rebuild it. Fetch the full history: "
                "`git fetch --unshallow` (or clone without --depth).",
                pytrace=False,
            )
    for tag in git(repo, "tag", "--list").split():
        git(repo, "tag", "-d", tag)
    for release in RELEASES:
        git(repo, "tag", release.tag, release.commit)
    if not with_working_tree:
        return Releases(repo=repo, new=RELEASES[-1].tag)
    # The new release is exactly the working tree being tested.
    git(repo, "rm", "-rq", "--cached", ".")
    for path in repo.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    new = next_release()
    commit_working_tree(repo, new)
    return Releases(repo=repo, new=new)


def commit_working_tree(repo: Path, tag: str) -> None:
    """Copy the template's working tree (uncommitted changes included, ignored files
    left out) into `repo`, commit it and tag the commit `tag`."""
    listed = git(TEMPLATE_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = TEMPLATE_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"release {tag} (the working tree)")
    git(repo, "tag", tag)


def snapshot(repo: Path, tag: str = "v1.0.0") -> Path:
    """A new repository holding only the working tree, committed and tagged `tag`: a
    template to render and update from without the history `build` needs."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit_working_tree(repo, tag)
    return repo


def check_update(project: Path) -> dict[str, object]:
    """What `copier check-update` says of `project` (its JSON answer)."""
    copier = str(Path(sys.executable).parent / "copier")
    out = subprocess.run(
        [copier, "check-update", "--output-format", "json", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))
