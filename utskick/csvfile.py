"""CSV files as real exports make them, with every row's line number.

Lists come from Swedish Excel (Windows-1252, `;`), from member registries (UTF-8 with a BOM,
CRLF), from web forms (`,`) and from "Unicode text" exports (UTF-16, tab). We take them as they
are; a broken row is reported at its line and skipped, and only a file we cannot read at all is an
error.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import read_bytes
from .errors import Problem, UtskickError

DELIMITERS = (",", ";", "\t")
# "Ã" followed by a high byte is how UTF-8 å, ä, ö look in Windows-1252; never real Swedish text.
UTF8_IN_CP1252 = re.compile(rb"\xc3[\x80-\xbf]")
QUOTED = re.compile(r'"[^"]*"')


def decode(data: bytes, path: Path) -> tuple[str, str]:
    """The text and its encoding (`Table.encode` writes the file back in it)."""
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding), encoding
            except UnicodeDecodeError:
                raise UtskickError(Problem("not valid UTF-16 text (save it as CSV UTF-8)", path)) from None
    try:
        return data.decode("utf-8-sig"), "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        if UTF8_IN_CP1252.search(data):
            raise UtskickError(
                Problem("mixed encodings: this line is not UTF-8 but other lines are "
                        "(save the file as CSV UTF-8)", path, line)
            ) from None
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UtskickError(
            Problem("neither UTF-8 nor Windows-1252 text (save the file as CSV UTF-8)", path, line)
        ) from None


def encode(text: str, encoding: str) -> bytes:
    """`text` in a file's own encoding, so Excel opens it as before: UTF-16 and UTF-8 keep their
    byte order mark. UTF-8 without one gets one once the text is more than ASCII, and text that
    Windows-1252 cannot hold becomes UTF-8 with a BOM: Excel reads UTF-8 without a BOM as
    Windows-1252 and would show å, ä, ö mangled."""
    if encoding.startswith("utf-16"):
        bom = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF16_BE
        return bom + text.encode(encoding)
    if encoding == "cp1252":
        try:
            return text.encode("cp1252")
        except UnicodeEncodeError:
            pass
    elif encoding == "utf-8" and text.isascii():
        return text.encode("ascii")
    return codecs.BOM_UTF8 + text.encode("utf-8")


def sniff(line: str) -> str:
    """The delimiter the header row uses most, outside quotes; a one-column file gets ','."""
    bare = QUOTED.sub("", line)
    counts = {d: bare.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class _Lines:
    """An iterator over the lines that we can rewind to resynchronise after a broken quote."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.pos = 0
        self.forgotten: int | None = None  # with `Table.read_once`: lines before this are let go

    def forget_before(self, line: int) -> None:
        """Let go of the lines before `line` (0-based): no rewind goes back past a finished row."""
        if self.forgotten is not None:
            for i in range(self.forgotten, line):
                self.lines[i] = ""
            self.forgotten = max(self.forgotten, line)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _closed(src: _Lines, first: int, delimiter: str) -> bool:
    """Whether a record that ran on over several lines really ended in a closing quote.

    The lenient reader accepts a quote left open up to the end of the file; when the field count
    happens to match, only a strict re-read of those lines tells the rows it swallowed.
    """
    if src.pos < len(src.lines):
        return True
    try:
        list(csv.reader(src.lines[first - 1 : src.pos], delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    return True


Row = tuple[int, list[str], str]
"""(line, cells, problem): a readable row has problem ''; an unreadable one has no cells."""


@dataclass
class Table:
    """A CSV file's header (stripped, lower-cased) and its rows; blank rows are left out."""

    path: Path
    header: list[str]
    delimiter: str
    newline: str
    encoding: str
    _lines: _Lines

    def column(self, names: Collection[str]) -> int | None:
        return next((i for i, h in enumerate(self.header) if h in names), None)

    def text(self) -> str:
        """The whole decoded file, to write it back with rows added."""
        assert self._lines.forgotten is None, "read_once let go of the lines"
        return "".join(self._lines.lines)

    def read_once(self) -> None:
        """Let each line go once its row is read: a list read to send to is 100,000 lines that
        would otherwise sit in memory beside its subscribers until the end. No `text()` after."""
        self._lines.forgotten = 0

    def encode(self, text: str) -> bytes:
        """`text` (the file with rows added) as bytes in this file's encoding."""
        return encode(text, self.encoding)

    def __iter__(self) -> Iterator[Row]:
        src = self._lines
        width = len(self.header)
        reader = csv.reader(src, delimiter=self.delimiter)
        while True:
            first = src.pos + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield first, [], f"cannot read this row ({e})"
                src.pos, reader = first, csv.reader(src, delimiter=self.delimiter)
                continue
            if src.pos > first and (len(cells) != width or not _closed(src, first, self.delimiter)):
                # A quote opened and never closed swallows the lines after it: report the one line
                # and read on from the next, so one stray quote costs one row, not the rest.
                yield first, [], f"a quote (\") in this row is not closed; it runs on to line {src.pos}"
                src.pos, reader = first, csv.reader(src, delimiter=self.delimiter)
                continue
            if "".join(cells).strip():
                yield first, cells, ""
            src.forget_before(src.pos)


LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+\Z")
"""A line with its ending (\n, \r\n or \r, as universal newlines): io.StringIO's readlines
would do, but copies the text into a buffer of four bytes a character first."""


def read_table(path: Path, data: bytes | None = None) -> Table:
    """Open a CSV file; an empty file has an empty header. Raises only for unreadable files."""
    if data is None:
        data = read_bytes(path)
    text, encoding = decode(data, path)
    lines = LINE.findall(text)
    del data, text  # the lines are all that is read from here: a list's size less in memory
    src = _Lines(lines)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    while src.pos < len(lines) and not lines[src.pos].strip():
        src.pos += 1
    if src.pos == len(lines):
        return Table(path, [], ",", newline, encoding, src)
    delimiter = sniff(lines[src.pos])
    first = src.pos + 1
    try:
        header = next(csv.reader(src, delimiter=delimiter), [])
    except csv.Error as e:  # a field over the csv module's limit (128 KiB), a NUL byte
        raise UtskickError(Problem(f"cannot read the header row ({e})", path, first)) from None
    if src.pos > first:
        raise UtskickError(Problem("the header row has a quote (\") that is not closed", path, first))
    return Table(path, [h.strip().lower() for h in header], delimiter, newline, encoding, src)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""What makes Excel (and LibreOffice) read a cell as a formula: `=cmd|'/Ccalc'!A0` would run."""


def excel_cell(value: str) -> str:
    """A cell as utskick writes it into a CSV meant for Excel: one that could start a formula
    gets a leading `'` (OWASP's CSV injection advice), as does one that starts with `'` itself,
    so that `read_cell` gives back exactly what was written."""
    return f"'{value}" if value.startswith((*FORMULA_START, "'")) else value


def read_cell(value: str) -> str:
    """A cell of a CSV file utskick wrote (`unsubscribed.csv`, a `--report`): `excel_cell`
    undone, since a valid address may start with - + or =."""
    return value[1:] if value.startswith("'") and value[1:].startswith((*FORMULA_START, "'")) else value


def format_row(cells: list[str], delimiter: str = ",", newline: str = "\n") -> str:
    """One row for Excel, as `csv` would quote it for this delimiter and line ending, every
    cell through `excel_cell`: the one place utskick writes CSV."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerow([excel_cell(c) for c in cells])
    return out.getvalue()
