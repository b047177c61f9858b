"""Markdown -> safe HTML and plain text.

Editors' Markdown is data, never markup or a template: raw HTML is escaped (`html=False`), only
http(s), mailto and tel links survive, and `{{` is just text. The plain-text twin is rendered from
the same syntax tree (not scraped from the HTML), so lists and links read well in a text client.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from .model import URL_SCHEMES

WIDTH = 78


def _safe_link(url: str) -> bool:
    return url.strip().lower().startswith(URL_SCHEMES)


@lru_cache(maxsize=2)
def _parser(breaks: bool = False) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False, "breaks": breaks})
    md.enable(["table", "linkify", "strikethrough"])
    # Bare domains ("subscriber.name", "t.ex") are not links; full URLs and e-mail addresses are.
    assert md.linkify is not None
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": True})
    md.validateLink = _safe_link  # type: ignore[method-assign]
    return md


def to_html(text: str | None, breaks: bool = False, level: int = 3) -> str:
    """HTML for an editor's Markdown, its headings placed just below the heading at `level`.

    Editors write '#' for "a heading here"; inside an article (h3) that must become h4, and
    the levels an editor used are packed in order so that none is skipped. `breaks` keeps every
    line break (addresses in a footer).
    """
    md = _parser(breaks)
    tokens = md.parse(text or "")
    used = sorted({int(t.tag[1]) for t in tokens if t.type == "heading_open"})
    for t in tokens:
        if t.type in ("heading_open", "heading_close"):
            t.tag = f"h{min(6, level + 1 + used.index(int(t.tag[1])))}"
        elif t.type == "th_open":
            t.attrSet("scope", "col")  # Markdown tables have one header row: every th heads a column
    html = str(md.renderer.render(tokens, md.options, {})).strip()
    # Data tables (not layout): a class so the theme can give them borders and padding.
    return html.replace("<table>", '<table class="data">')


def links(text: str | None) -> list[str]:
    """Every link target in the text, for checks such as 'http link' warnings."""
    out = []
    for node in SyntaxTreeNode(_parser().parse(text or "")).walk():
        if node.type in ("link", "image"):
            out.append(str(node.attrs.get("href") or node.attrs.get("src") or ""))
    return out


def to_text(text: str | None, width: int = WIDTH, breaks: bool = False) -> str:
    """Plain text wrapped at `width`, with lists, quotes and links (as full URLs) kept."""
    root = SyntaxTreeNode(_parser(breaks).parse(text or ""))
    blocks = (_block(child, width, "\n" if breaks else " ") for child in root.children)
    return "\n\n".join(b for b in blocks if b).rstrip()


def _inline(node: SyntaxTreeNode, soft: str = " ") -> str:
    out = []
    for child in node.children:
        if child.type == "text":
            out.append(child.content)
        elif child.type == "softbreak":
            out.append(soft)
        elif child.type == "hardbreak":
            out.append("\n")
        elif child.type == "code_inline":
            out.append(child.content)
        elif child.type == "image":
            out.append(_inline(child, soft) or str(child.attrs.get("alt", "")))
        elif child.type == "link":
            label = _inline(child, soft)
            href = str(child.attrs.get("href", ""))
            bare = href.removeprefix("mailto:")
            out.append(label if label in (href, bare) else f"{label} ({bare})")
        else:
            out.append(_inline(child, soft))
    return "".join(out)


def _wrap(text: str, width: int, first: str = "", rest: str = "") -> str:
    lines = []
    for i, para in enumerate(text.split("\n")):
        lines.extend(
            textwrap.wrap(
                para, width=max(width, 20), initial_indent=first if i == 0 else rest,
                subsequent_indent=rest, break_long_words=False, break_on_hyphens=False,
            ) or [rest.rstrip()]
        )
    return "\n".join(lines)


def _block(node: SyntaxTreeNode, width: int, soft: str = " ") -> str:
    t = node.type
    if t in ("paragraph", "heading"):
        return _wrap(_inline(node.children[0], soft) if node.children else "", width)
    if t in ("bullet_list", "ordered_list"):
        items = []
        start = int(str(node.attrs.get("start", 1)))
        for n, item in enumerate(node.children, start):
            marker = f"{n}. " if t == "ordered_list" else "- "
            body = "\n".join(_block(c, width - len(marker), soft) for c in item.children)
            pad = " " * len(marker)
            items.append(marker + body.replace("\n", "\n" + pad).replace("\n" + pad + "\n", "\n\n"))
        return "\n".join(items)
    if t == "blockquote":
        inner = "\n\n".join(_block(c, width - 2, soft) for c in node.children)
        return "\n".join(("> " + line).rstrip() for line in inner.split("\n"))
    if t in ("code_block", "fence"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").split("\n"))
    if t == "hr":
        return "-" * 20
    if t == "table":
        rows = []
        for row in (r for part in node.children for r in part.children):
            rows.append(" | ".join(_inline(cell.children[0]) if cell.children else "" for cell in row.children))
        return "\n".join(rows)
    return "\n\n".join(_block(c, width, soft) for c in node.children)
