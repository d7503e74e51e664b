"""A throwaway template repository holding an old release and the checkout as the new one.

The update tests must not depend on tags in the clone they run in (CI clones may carry
none), so they rebuild both ends from history: the recorded commit of an old release is
tagged in a temporary clone, and the working tree (uncommitted changes included) is
committed on top and tagged as the next release.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .paths import TEMPLATE_ROOT

# The oldest release whose services must update cleanly to the working tree: the test
# crosses every change since. Move it forward only when dropping support for it.
OLD_TAG = "v0.1.0"
OLD_COMMIT = "506dc212309b137f36b2e6d1642cb9c2e6fd4f1b"

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
    old: str
    new: str


def next_minor(tag: str) -> str:
    major, minor, _ = tag.lstrip("v").split(".")
    return f"v{major}.{int(minor) + 1}.0"


def build(workdir: Path) -> Releases:
    repo = workdir / "template-repo"
    git(workdir, "clone", "--quiet", "--no-hardlinks", str(TEMPLATE_ROOT), str(repo))
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"], cwd=repo, check=False
    )
    if known.returncode != 0:
        pytest.fail(
            f"The history of release {OLD_TAG} ({OLD_COMMIT}) is missing from this clone, "
            "so the update test cannot rebuild it. Fetch the full history: "
            "`git fetch --unshallow` (or clone without --depth).",
            pytrace=False,
        )
    for tag in git(repo, "tag", "--list").split():
        git(repo, "tag", "-d", tag)
    git(repo, "tag", OLD_TAG, OLD_COMMIT)
    # The new release is exactly the working tree being tested.
    git(repo, "rm", "-rq", "--cached", ".")
    for path in repo.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    listed = git(TEMPLATE_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = TEMPLATE_ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    new = next_minor(OLD_TAG)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", f"release {new} (the working tree)")
    git(repo, "tag", new)
    return Releases(repo=repo, old=OLD_TAG, new=new)
