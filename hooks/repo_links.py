"""MkDocs hook: links from a page to a file of the repository, outside the site.

A page names a template file by its path relative to the page, as GitHub resolves it
(`../template/src/%7B%7Bpackage_name%7D%7D/db/session.py` from `docs/`), so the link
also works when the Markdown is read on GitHub. MkDocs knows only the files under
`docs/`; this hook points each such link at the file on `repo_url` instead, and reports
a path that does not exist in the checkout as a warning, which `--strict` makes an
error, like a broken link between pages.
"""

import logging
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

log = logging.getLogger("mkdocs.hooks.repo_links")

# An inline link whose target climbs out of the page's folder: ](../x/y.py#anchor).
OUTWARD = re.compile(r"\]\((?P<target>(?:\.\./)+[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")
BRANCH = "main"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    root = Path(config["docs_dir"]).resolve().parent
    docs = Path(config["docs_dir"]).resolve().relative_to(root).as_posix()
    base = f"{config['repo_url'].rstrip('/')}/"
    page_dir = posixpath.join(docs, posixpath.dirname(page.file.src_uri))

    def to_repository(match: re.Match[str]) -> str:
        path = posixpath.normpath(posixpath.join(page_dir, unquote(match["target"])))
        if path == docs or path.startswith(docs + "/"):
            return match[0]  # a page of the site: MkDocs checks it
        if path.startswith("../") or not (root / path).exists():
            log.warning(
                "Doc file '%s' links to '%s', which is not a file of the repository.",
                page.file.src_uri,
                path,
            )
            return match[0]
        kind = "tree" if (root / path).is_dir() else "blob"
        return f"]({base}{kind}/{BRANCH}/{quote(path)}{match['anchor'] or ''})"

    return OUTWARD.sub(to_repository, markdown)
