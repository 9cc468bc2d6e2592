"""CSV as digest reads and writes it, in one place: the delimiter told from the header line,
formulas neutralized on the way out (and read back as written), and files read row by row in
bounded memory with the line each row starts on.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from typing import BinaryIO

DELIMITERS = (",", ";", "\t", "|")
# A cell starting with one of these is a formula to a spreadsheet (OWASP's list): written
# with a leading apostrophe, which spreadsheets show as text and `restore` takes off again.
FORMULA_START = frozenset("=+-@\t\r")
MAX_ROW_CHARS = 1 << 20  # characters in one row (its lines together): more is no CSV row
READ_SIZE = 64 * 1024
_QUOTED = re.compile(r'"[^"]*"')
_ESCAPED = re.compile("[\ud800-\udfff]")  # bytes the encoding could not read (see _mark)
_LINE_END = re.compile(r"\r\n|\n|\r")


def guess_delimiter(header: str) -> str:
    """The delimiter of a CSV file, told from its header line: whichever of , ; tab | it holds
    most often outside quotes (spreadsheets in many locales save with ';' or tabs); ','
    when it holds none."""
    bare = _QUOTED.sub("", header)
    counts = [(bare.count(d), -i, d) for i, d in enumerate(DELIMITERS)]
    found, _, delimiter = max(counts)
    return delimiter if found else ","


def neutralize(cell: str) -> str:
    """The cell as it is safe to open in a spreadsheet: a formula gets a leading apostrophe.

    A cell that is apostrophes then a formula gets one more, so that `restore` gives back
    exactly what was written.
    """
    if cell[:1] in FORMULA_START or (cell[:1] == "'" and cell.lstrip("'")[:1] in FORMULA_START):
        return "'" + cell if cell.lstrip("'") else cell
    return cell


def restore(cell: str) -> str:
    """What `neutralize` was given: one leading apostrophe off a neutralized formula."""
    if cell[:1] == "'":
        rest = cell.lstrip("'")
        if rest and rest[0] in FORMULA_START:
            return cell[1:]
    return cell


class RowTooLong(Exception):
    """A row went on past MAX_ROW_CHARS characters."""


def _mark(error: UnicodeError) -> tuple[str, int]:
    """Undecodable bytes become lone surrogates (as 'surrogateescape' does, for any codec):
    no decoder makes those from good input, so a row holding one had a bad byte."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error("digest-mark", _mark)


# One CSV row: the line it starts on, its cells, and what is wrong with it (None if nothing).
Row = tuple[int, list[str], str | None]


class _Lines:
    """The text lines of a binary file, read in chunks: a line ends at CR, LF or CRLF."""

    def __init__(self, handle: BinaryIO, encoding: str) -> None:
        self.handle = handle
        head = handle.read(4)
        for bom, name in (
            (codecs.BOM_UTF8, "utf-8"),
            (codecs.BOM_UTF16_LE, "utf-16-le"),
            (codecs.BOM_UTF16_BE, "utf-16-be"),
        ):
            if head.startswith(bom):  # the byte-order mark says which, whatever was asked
                encoding, head = name, head[len(bom) :]
                break
        self.encoding = encoding
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="digest-mark")
        self.ready: list[str] = []  # whole lines decoded and not yet handed out
        self.pending = self.decoder.decode(head)  # a line's start, its end not read yet
        self.eof = False
        self.number = 0  # lines handed out
        self.row_chars = 0  # characters handed out since the row began
        self.bad: list[int] = []  # lines that held bytes the encoding could not read
        self.dirty = False  # whether the lines in `ready` may hold such bytes

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        while not self.ready:
            if self.eof:
                raise StopIteration
            self._fill()
        line = self.ready.pop()
        self.number += 1
        self.row_chars += len(line)
        if self.row_chars > MAX_ROW_CHARS:
            raise RowTooLong
        if self.dirty and _ESCAPED.search(line):
            self.bad.append(self.number)
        return line

    def first_line(self, limit: int) -> str | None:
        """The first line if it ends within `limit` characters (it is handed out again)."""
        while not self.ready and not self.eof and len(self.pending) <= limit:
            self._fill(skip_long=False)
        if not self.ready:
            return self.pending if self.eof and len(self.pending) <= limit else None
        return self.ready[-1] if len(self.ready[-1]) <= limit else None

    def _fill(self, skip_long: bool = True) -> None:
        data = self.handle.read(READ_SIZE)
        text = self.pending + self.decoder.decode(data, final=not data)
        self.eof = not data
        if "\r" not in text or text.count("\r") == text.count("\r\n"):
            *whole, self.pending = text.split("\n")  # the usual file: a split in C
            lines = [line + "\n" for line in whole]
        else:  # lone CRs end lines too (classic Mac files)
            start, lines = 0, []
            for end in _LINE_END.finditer(text):
                if end.group() == "\r" and end.end() == len(text) and not self.eof:
                    break  # maybe the CR of a CRLF whose LF comes in the next chunk
                lines.append(text[start : end.end()])
                start = end.end()
            self.pending = text[start:]
        if self.eof and self.pending:
            lines.append(self.pending)
            self.pending = ""
        if skip_long and len(self.pending) > MAX_ROW_CHARS:
            # A line longer than a row may be: its start is handed out (to be refused), the
            # rest dropped as it comes.
            lines.append(self.pending[: MAX_ROW_CHARS + 1])
            self.pending = ""
            self._skip_line()
        self.ready = lines[::-1]
        self.dirty = _ESCAPED.search(text) is not None  # one search a chunk, not one a line

    def _skip_line(self) -> None:
        """Read on to the end of the current line, keeping none of it (a 1 GB line costs a
        chunk of memory); what follows it is the next line."""
        while True:
            data = self.handle.read(READ_SIZE)
            if not data:
                self.decoder.decode(b"", final=True)
                self.eof = True
                return
            text = self.decoder.decode(data)
            end = _LINE_END.search(text)
            if end is not None:
                self.pending = text[end.end() :]
                return


def read_rows(
    handle: BinaryIO, encoding: str = "utf-8", header_limit: int = 1 << 16
) -> Iterator[Row]:
    """Every row of a CSV file (the header row first), each with the line it starts on.

    Never raises for bad content: a row with a byte the encoding cannot read, broken quoting
    or over MAX_ROW_CHARS characters comes with its `problem`, and reading goes on after it.
    The delimiter is `guess_delimiter` of the header line, which must end within
    `header_limit` characters (else one row with a problem, and nothing more).
    """
    lines = _Lines(handle, encoding)
    first = lines.first_line(header_limit)
    if first is None:
        yield 1, [], f"no header line in the first {header_limit:,} characters"
        return
    delimiter = guess_delimiter(first)
    while True:
        reader = csv.reader(lines, delimiter=delimiter)
        start = lines.number + 1
        lines.row_chars = 0
        try:
            for cells in reader:
                last = lines.number
                if lines.bad and lines.bad[0] <= last:
                    lines.bad = [n for n in lines.bad if n > last]
                    yield start, cells, _undecodable(lines.encoding)
                else:
                    yield start, cells, None
                start = last + 1
                lines.row_chars = 0
            return
        except RowTooLong:
            lines.bad = []
            yield start, [], f"a row over {MAX_ROW_CHARS:,} characters; it was skipped"
        except csv.Error as e:
            lines.bad = []
            yield start, [], f"{e} (check the quoting); the row was skipped"
        # Read on with a fresh reader from the next line: the broken row's state goes.


def _undecodable(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return (
        f"not valid {name} text; the row was skipped (save the file as UTF-8, or pass its "
        "encoding, e.g. --encoding cp1252 for Excel on Windows)"
    )
