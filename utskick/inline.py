"""CSS inlining (premailer), done once per distinct page and kept under `.utskick/cache/inlined/`.

Importing premailer (cssutils, lxml, requests) and parsing the theme's CSS cost about 0.3 s in
every process, a third of a build, and give the same result whenever the page is the same: a
check, a build and a send of one unchanged issue, or a second build. So the result is cached
by content: the page with its per-render marker nonce taken out, and premailer's own files, so
an upgrade of it inlines afresh.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

from .errors import UtskickError
from .files import make_folders, write_atomic

KEPT = 200
"""Cached pages kept; the preview makes one per save."""

_PLACEHOLDER = "\0"
"""Stands for the nonce in the key; a page never holds it, so the key maps to one page only."""


def inline(page: str, cache: Path | None = None, nonce: str = "") -> str:
    """`page` with its CSS inlined as an email needs it; through the cache in `cache` (a folder).

    The cached copy carries the nonce of the render that made it, replaced by `nonce` on use.
    A cache that cannot be read or written only means inlining again.
    """
    if cache is None or _PLACEHOLDER in page:
        return _premailer(page)
    folder = cache / "inlined"
    keyed = page.replace(nonce, _PLACEHOLDER) if nonce else page
    key = hashlib.sha256("\n".join([*_library_files(), keyed]).encode()).hexdigest()
    path = folder / f"{key}.html"
    try:
        made_with, _, html = path.read_text("utf-8").partition("\n")
        return html.replace(made_with, nonce) if made_with else html
    except (OSError, UnicodeError):
        pass
    html = _premailer(page)
    try:
        make_folders(folder, 0o700)  # inside .utskick/, private like the journal
        write_atomic(path, f"{nonce}\n{html}", private=True)
        _prune(folder)
    except (OSError, UtskickError):
        pass
    return html


def _library_files() -> list[str]:
    """Where premailer and cssutils are installed, and when: stands in for their versions
    (asking importlib.metadata costs more than the cache saves)."""
    found = []
    for name in ("premailer", "cssutils"):
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None and spec.origin else ""
        try:
            st = os.stat(Path(origin).parent / ("premailer.py" if name == "premailer" else "__init__.py"))
            found.append(f"{origin} {st.st_mtime_ns} {st.st_size}")
        except OSError:
            found.append(origin)
    return found


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.html"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEPT:]:
        old.unlink(missing_ok=True)


def _premailer(page: str) -> str:
    from premailer import Premailer

    # premailer's cssutils logs every unknown property at WARNING: keep it out of the terminal.
    logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)
    return str(
        Premailer(
            page, strip_important=False, keep_style_tags=False, remove_classes=False,
            disable_validation=True, cssutils_logging_level=logging.CRITICAL, allow_network=False,
            disable_leftover_css=False,
            # Our templates set width/height attributes themselves; premailer's height="auto" is invalid.
            disable_basic_attributes=["height", "width"],
            # It re-parses every image's style with cssutils' validation on, which compiles a few
            # hundred regexes: 60 % of a build's inlining. A theme that floats an image writes
            # the `align` Outlook needs itself, as it does `width`.
            align_floating_images=False,
        ).transform(pretty_print=False)
    )
