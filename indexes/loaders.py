"""Loaders: file formats (text, markdown, code, PDF, HTML, JSON) registered by extension, and the walk.

A loader checks a file before anything is written (SkipSource names the reason) and then streams it.
"""

from __future__ import annotations

import codecs
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentkit.errors import BadInputError

# Plain text is read in 1 Mi-character blocks: memory stays bounded whatever the file size, and a
# block is ~1000 chunks, so block edges (carried over by the splitter) are rare.
TEXT_BLOCK_CHARS = 1 << 20
# HTML and JSON must be parsed whole; past this size we refuse rather than hold it all in memory.
MAX_PARSED_BYTES = 64 << 20
_SNIFF_BYTES = 1 << 16
DEFAULT_EXCLUDES = (".*", "__pycache__", "node_modules", "*.egg-info")


class SkipSource(Exception):
    """A file we will not index, with the reason and the fix; counted in the add report."""

    def __init__(self, reason: str, fix: str = "", *, empty: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.empty = empty  # an emptied file drops its old chunks; other skips leave them alone

    def line(self) -> str:
        return f"{self.reason} (fix: {self.fix})" if self.fix else self.reason


@dataclass(frozen=True)
class Segment:
    """A piece of a document's text. `continues`: the next segment is the same text, cut for memory."""

    text: str
    start: int  # character offset of text[0] within its page (PDF) or document
    page: int | None = None  # 1-based, PDFs only
    continues: bool = False


@dataclass(frozen=True)
class FileFormat:
    """One document format: which extensions, how to check a file, how to stream its text."""

    name: str
    extensions: tuple[str, ...]
    check: Callable[[Path], None]  # raises SkipSource
    read: Callable[[Path], Iterator[Segment]]
    language: str | None = None  # langchain_text_splitters.Language value for code-aware separators


_FORMATS: dict[str, FileFormat] = {}
_BY_EXTENSION: dict[str, FileFormat] = {}


def register_format(fmt: FileFormat) -> FileFormat:
    """Add a document format; names and extensions (lower case, with the dot) are unique."""
    if fmt.name in _FORMATS:
        raise BadInputError(f"Document format {fmt.name!r} is already registered.", fix="pick another name.")
    taken = [e for e in fmt.extensions if e in _BY_EXTENSION]
    bad = [e for e in fmt.extensions if not re.fullmatch(r"\.[a-z0-9]+", e)]
    if taken or bad:
        raise BadInputError(
            f"Format {fmt.name!r}: extensions {', '.join(taken + bad)} are taken or malformed.",
            fix="use unregistered lower-case extensions with the dot, e.g. '.rst'.",
        )
    _FORMATS[fmt.name] = fmt
    for ext in fmt.extensions:
        _BY_EXTENSION[ext] = fmt
    return fmt


def format_for(path: Path) -> FileFormat | None:
    return _BY_EXTENSION.get(path.suffix.lower())


# ---- plain text (txt, markdown, code) -----------------------------------------------------------
def check_text(path: Path) -> None:
    """Binary content, non-UTF-8 bytes or no text at all: refused before anything is written."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset, has_text = 0, False
    with open(path, "rb") as handle:
        while block := handle.read(_SNIFF_BYTES):
            nul = block.find(b"\x00")
            if nul >= 0:
                raise SkipSource(
                    f"binary content (NUL byte at offset {offset + nul}) in a {path.suffix} file",
                    fix="exclude it with --exclude, or give it its real extension",
                )
            try:
                text = decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise SkipSource(
                    f"not UTF-8 (byte 0x{block[exc.start]:02x} at offset {offset + exc.start})",
                    fix=f"convert it, e.g. `iconv -f latin1 -t utf-8 {path.name}`",
                ) from None
            has_text = has_text or not text.isspace() and bool(text)
            offset += len(block)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise SkipSource(
                "not UTF-8 (truncated multi-byte character at the end)", fix="convert it to UTF-8"
            ) from None
    if not has_text:
        raise SkipSource("empty (no text)", empty=True)


def read_text(path: Path) -> Iterator[Segment]:
    # newline=None: \r\n and \r become \n, so offsets and chunk hashes do not depend on the OS.
    with open(path, encoding="utf-8-sig", newline=None) as handle:
        start, block = 0, handle.read(TEXT_BLOCK_CHARS)
        while block:
            following = handle.read(TEXT_BLOCK_CHARS)
            yield Segment(block, start, continues=bool(following))
            start += len(block)
            block = following


# ---- PDF --------------------------------------------------------------------------------------
def _pdf_reader(path: Path):  # -> pypdf.PdfReader, imported lazily
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password still opens some
            raise SkipSource(
                "encrypted PDF", fix=f"decrypt it first, e.g. `qpdf --decrypt {path.name} out.pdf`"
            )
        len(reader.pages)  # forces the page tree: a corrupt file fails here, not half-way
    except SkipSource:
        raise
    except (PyPdfError, ValueError, KeyError, OSError, TypeError) as exc:
        raise SkipSource(
            f"not a readable PDF ({type(exc).__name__}: {exc})", fix="re-export or repair the PDF"
        ) from None
    return reader


def check_pdf(path: Path) -> None:
    _pdf_reader(path)


def read_pdf(path: Path) -> Iterator[Segment]:
    """One segment per page (chunks never cross pages, so each carries its page number)."""
    reader = _pdf_reader(path)
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types on damaged pages
            raise SkipSource(
                f"page {number} cannot be read ({type(exc).__name__}: {exc})", fix="repair the PDF"
            ) from None
        if text.strip():
            yield Segment(text, 0, page=number)


# ---- HTML and JSON (parsed whole, size-capped) --------------------------------------------------
def _read_capped(path: Path, kind: str) -> bytes:
    size = path.stat().st_size
    if size > MAX_PARSED_BYTES:
        raise SkipSource(
            f"{kind} too large to parse ({size >> 20} MiB > {MAX_PARSED_BYTES >> 20} MiB)",
            fix="split it, or save its text as .txt (streamed at any size)",
        )
    data = path.read_bytes()
    if not data.strip():
        raise SkipSource("empty (no text)", empty=True)
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise SkipSource(f"binary content in a {path.suffix} file", fix="exclude it with --exclude")
    return data


def html_text(data: bytes) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")  # detects the charset from <meta> or the bytes
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    text = soup.get_text("\n")
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def check_html(path: Path) -> None:
    if not html_text(_read_capped(path, "HTML")):
        raise SkipSource("no text in the HTML", empty=True)


def read_html(path: Path) -> Iterator[Segment]:
    yield Segment(html_text(_read_capped(path, "HTML")), 0)


def _json_value(path: Path) -> object:
    data = _read_capped(path, "JSON")
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SkipSource(
            f"not UTF-8 (byte at offset {exc.start})", fix="JSON must be UTF-8; convert it"
        ) from None
    except json.JSONDecodeError as exc:
        raise SkipSource(
            f"invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", fix="fix the file"
        ) from None


def check_json(path: Path) -> None:
    _json_value(path)


def read_json(path: Path) -> Iterator[Segment]:
    # Indented JSON puts one field per line, so the recursive splitter cuts between fields.
    yield Segment(json.dumps(_json_value(path), indent=1, ensure_ascii=False), 0)


register_format(FileFormat("text", (".txt", ".text", ".log", ".csv", ".tsv"), check_text, read_text))
register_format(FileFormat("markdown", (".md", ".markdown"), check_text, read_text, language="markdown"))
register_format(FileFormat("rst", (".rst",), check_text, read_text, language="rst"))
register_format(FileFormat("pdf", (".pdf",), check_pdf, read_pdf))
register_format(FileFormat("html", (".html", ".htm", ".xhtml"), check_html, read_html))
register_format(FileFormat("json", (".json",), check_json, read_json))
for _language, _extensions in {
    "python": (".py", ".pyi"),
    "js": (".js", ".jsx", ".mjs"),
    "ts": (".ts", ".tsx"),
    "java": (".java",),
    "go": (".go",),
    "rust": (".rs",),
    "c": (".c", ".h"),
    "cpp": (".cpp", ".cc", ".hpp", ".cxx"),
    "csharp": (".cs",),
    "ruby": (".rb",),
    "php": (".php",),
    "kotlin": (".kt",),
    "scala": (".scala",),
    "swift": (".swift",),
    "lua": (".lua",),
    "perl": (".pl",),
    "haskell": (".hs",),
    "r": (".r",),
}.items():
    register_format(FileFormat(f"code-{_language}", _extensions, check_text, read_text, language=_language))


# ---- the walk -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFile:
    path: Path  # resolved
    format: FileFormat

    @property
    def key(self) -> str:
        """The source's identity in the manifest: its absolute, symlink-free path."""
        return self.path.as_posix()


@dataclass
class Walk:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    duplicates: int = 0  # the same file reached twice (repeated argument, symlink, overlapping roots)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    # A pattern without '/' matches the file or folder name ("*.md"); one with '/' matches the
    # path below the root ("docs/*/intro.md"; fnmatch's '*' also crosses '/').
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative if "/" in p else name, p) for p in patterns)


def walk(
    roots: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    *,
    default_excludes: bool = True,
) -> Walk:
    """Files to index under `roots`, in a stable order. A file named directly is always taken if
    its format is known; folders are walked recursively, filtered by include/exclude globs."""
    out, seen = Walk(), set()
    excludes = [*exclude, *(DEFAULT_EXCLUDES if default_excludes else ())]

    def take(path: Path, relative: str | None) -> None:
        fmt = format_for(path)
        if fmt is None:
            if relative is None:  # named on the command line: say why it is not indexed
                out.skipped.append((str(path), f"unsupported file type {path.suffix or '(none)'!r}"))
            return
        if relative is not None and (
            (include and not _matches(relative, include)) or _matches(relative, excludes)
        ):
            return
        resolved = path.resolve()
        if resolved in seen:
            out.duplicates += 1
            return
        seen.add(resolved)
        out.files.append(SourceFile(resolved, fmt))

    for root in roots:
        if root.is_file():
            take(root, None)
            continue
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            rel_dir = here.relative_to(root).as_posix()
            prefix = "" if rel_dir == "." else f"{rel_dir}/"
            dirs[:] = sorted(d for d in dirs if not _matches(prefix + d, excludes))
            for name in sorted(names):
                if (here / name).is_file():
                    take(here / name, prefix + name)
    return out
