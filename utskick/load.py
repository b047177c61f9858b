"""YAML -> model, with file:line:col on every error.

PyYAML's own constructor guesses types (``09:00`` becomes 540, ``no`` becomes False) and
expands aliases without limit. We compose the node tree ourselves instead: every plain scalar
stays text for pydantic to parse against the model, every node keeps its position, and anchors
are refused outright, which also makes an alias bomb fail in microseconds.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, Union

import yaml
from pydantic import BaseModel, ValidationError

from .errors import Problem, UtskickError
from .files import read_bytes
from .model import Issue

M = TypeVar("M", bound=BaseModel)
Loc = tuple[int | str, ...]

NULL_RE = re.compile(r"^(?:~|null|Null|NULL|)$")


@dataclass
class Document(Generic[M]):
    """A validated model plus where each of its values was written."""

    path: Path
    model: M
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def problem(self, loc: Loc, message: str, severity: typing.Literal["error", "warning"] = "error") -> Problem:
        """A problem at the closest written position to `loc`."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.marks:
                line, col = self.marks[loc[:n]]
                return Problem(message, self.path, line, col, format_loc(loc), severity)
        return Problem(message, self.path, where=format_loc(loc), severity=severity)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if part == "":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_text(path: Path) -> str:
    """Files from Windows editors: UTF-8 with or without BOM, CRLF."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UtskickError(
            Problem("not UTF-8 text (save the file as UTF-8)", path, line)
        ) from None


# Any C0 control but tab and line ends, DEL and the C1 controls: NUL or ESC in a subject would go
# into the Subject header as they are (and a terminal would act on them in our own output).
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _NoAnchors(yaml.SafeLoader):
    """Composes nodes, refusing anchors and aliases as they come: one pass, and a bomb of
    nested aliases stops at its first anchor."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Anchor(event.start_mark)
        return super().compose_node(parent, index)


class _Anchor(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


def _compose(text: str, path: Path) -> tuple[Any, dict[Loc, tuple[int, int]]]:
    marks: dict[Loc, tuple[int, int]] = {}
    try:
        node = yaml.compose(text, Loader=_NoAnchors)
    except RecursionError:
        raise UtskickError(Problem("nested too deeply to be an issue or settings file", path, 1, 1)) from None
    except _Anchor as e:
        raise UtskickError(Problem("YAML anchors and aliases (&, *) are not supported: write the text out",
                                   path, e.mark.line + 1, e.mark.column + 1)) from None
    except yaml.MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        msg = " ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        raise UtskickError(
            Problem(f"YAML syntax: {msg}", path, m.line + 1 if m else None, m.column + 1 if m else None)
        ) from None
    except yaml.YAMLError as e:
        raise UtskickError(Problem(f"YAML syntax: {e}", path)) from None
    if node is None:
        raise UtskickError(Problem("the file is empty", path, 1, 1))
    try:
        return _build(node, (), marks, path), marks
    except RecursionError:
        raise UtskickError(Problem("nested too deeply to be an issue or settings file", path, 1, 1)) from None


def _build(node: yaml.Node, loc: Loc, marks: dict[Loc, tuple[int, int]], path: Path) -> Any:
    marks[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and NULL_RE.match(node.value):
            return None
        bad = CONTROL_RE.search(node.value)
        if bad:
            raise UtskickError(Problem(f"contains the control character U+{ord(bad[0]):04X}, which would reach "
                                       "the email's headers or text: remove it", path, *marks[loc], format_loc(loc)))
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loc + (i,), marks, path) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.MappingNode)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            m = key_node.start_mark
            raise UtskickError(Problem("a key must be a plain name", path, m.line + 1, m.column + 1))
        key = key_node.value
        if key in out:
            m = key_node.start_mark
            raise UtskickError(
                Problem(f"'{key}' is given twice", path, m.line + 1, m.column + 1, format_loc(loc))
            )
        out[key] = _build(value_node, loc + (key,), marks, path)
        # Unknown keys are reported at the key itself, not at its value.
        marks[loc + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        marks[loc + (key, "")] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
    return out


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that owns the mapping at `loc`, by walking field annotations."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (list, Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if args else tp
            if origin not in (list,) and len(args) != 1:
                return tp
        else:
            return tp


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _message(err: Any, root: type[BaseModel], loc: Loc) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        names = _field_names(owner) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else (f" (allowed: {', '.join(names)})" if names else "")
        return f"'{loc[-1]}' is not a field{hint}"
    if kind == "missing":
        return f"'{loc[-1]}' is required"
    if err.get("input") is None and kind.endswith("_type"):
        return "is empty; give a value or remove the key (a value starting with # must be quoted: \"#00587a\")"
    if kind == "model_type" or kind == "dict_type":
        return "should be a mapping (key: value lines), not a single value or a list"
    if kind == "list_type":
        return "should be a list (lines starting with '- ')"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse(path: Path, model: type[M], text: str | None = None) -> Document[M]:
    """Read and validate one YAML file, raising every problem in it at once."""
    if text is None:
        text = read_text(path)
    data, marks = _compose(text, path)
    if not isinstance(data, dict):
        raise UtskickError(Problem("should be a mapping of fields (key: value lines)", path, 1, 1))
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc: Loc = tuple(p for p in err["loc"] if isinstance(p, (int, str)))
            doc: Document[Any] = Document(path, None, marks)
            at = loc if err["type"] in ("extra_forbidden", "missing") else loc + ("",)
            if err["type"] == "missing":
                at = loc[:-1] + ("",) if loc[:-1] else ()
            p = doc.problem(at, _message(err, model, loc))
            problems.append(Problem(p.message, p.file, p.line, p.col, format_loc(loc)))
        problems.sort(key=lambda p: (p.line or 0, p.col or 0))
        raise UtskickError(problems) from None
    return Document(path, obj, marks)


SLUG_RE = re.compile(r"(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,99}(?<!\.)", re.IGNORECASE)
# Names Windows keeps for devices, whatever follows them after a dot: outbox/nul/ cannot exist there.
WINDOWS_DEVICES = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


def slug_of(path: Path) -> str:
    """An issue's slug: its file name without the extension, which becomes part of links (the web
    version, the .ics files), of the outbox's folder and of every Message-ID. So only what a
    URL and every file system take: letters a-z, digits, '.', '_' and '-', no '..'."""
    slug = path.stem
    if not SLUG_RE.fullmatch(slug) or WINDOWS_DEVICES.fullmatch(slug):
        raise UtskickError(Problem(
            f"the file name {slug!r} cannot be an issue's name (its slug): it goes into links and file names, so use "
            "only letters a-z, digits, '.', '_' and '-', starting with a letter or digit, without '..', "
            "at most 100 characters (such as 2026-12.yaml)", path))
    return slug


def load_issue(path: Path) -> Document[Issue]:
    slug_of(path)
    return parse(path, Issue)
