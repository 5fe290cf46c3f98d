"""Files → text: the formats the service can index, and how each is read.

Every reader returns ``(text, title or None)``. Problems a user can fix raise the domain errors of
``qa.errors`` with a message that names the file and says what to do; nothing a parsing library
raises on a bad file escapes from here.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import docx
from bs4 import BeautifulSoup
from charset_normalizer import from_bytes
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph
from pypdf import PdfReader
from pypdf.errors import DependencyError

from qa.errors import EmptyDocument, TooLarge, UnreadableDocument, UnsupportedFormat

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: frozenset[str] = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}

# A .docx is a zip: a small upload can expand to gigabytes, so its unpacked size is capped too.
MAX_UNPACKED_DOCX_BYTES = 512 * 1024 * 1024

# Only this much of a legacy-encoded text is scored when choosing between encodings.
ENCODING_SAMPLE_CHARS = 20_000
# A Chinese decoding this plausible (see _implausibility) is taken without asking a general detector,
# which often calls short GBK text Korean or Big5.
CHINESE_IMPLAUSIBILITY_ACCEPTED = 0.25

_UNSUPPORTED_HINTS = {
    ".doc": "save it as .docx in Word or WPS and upload that",
    ".wps": "save it as .docx in WPS and upload that",
    ".rtf": "save it as .docx or .txt and upload that",
    ".png": "text in images is not read; upload the text itself or a PDF with selectable text",
    ".jpg": "text in images is not read; upload the text itself or a PDF with selectable text",
    ".jpeg": "text in images is not read; upload the text itself or a PDF with selectable text",
}

# (leading bytes, what a file starting with them is): used to tell users what they actually uploaded.
_SIGNATURES = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a zip archive (or a Word/Excel/PowerPoint file)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Office file (.doc/.xls/.ppt) or an encrypted Office file"),
    (b"{\\rtf", "an RTF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "a Linux program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)

_BOMS = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Declared HTML charsets (by Python codec name) read as the superset that pages really use, as browsers do:
# GB2312/GBK pages routinely contain GBK-only characters, "latin-1" pages are windows-1252, and a UTF-16
# declaration on a page without a byte-order mark is a mistake for UTF-8.
_CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "cp950",
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "utf-16": "utf-8",
    "utf-16-le": "utf-8",
    "utf-16-be": "utf-8",
}


def supported_files(paths: Iterable[Path]) -> list[Path]:
    """The readable files among ``paths``, folders searched recursively, in a stable order.

    Inside a folder, hidden files and folders (a leading dot) and unsupported types are skipped;
    a file named directly is kept whatever its type, so that reading it reports the problem.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                file
                for file in path.rglob("*")
                if file.is_file()
                and file.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in file.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"corpus path {path} does not exist")
    return files


def read_document_file(path: Path, max_bytes: int | None = None) -> tuple[str, str | None]:
    """(text, title or None) of the file at ``path``, by its extension; see ``read_document_bytes``."""
    path = Path(path)
    _require_supported(path.name)
    # Checked before reading, so an oversized file is never loaded into memory.
    _require_size(path.name, path.stat().st_size, max_bytes)
    return read_document_bytes(path.read_bytes(), path.name, max_bytes)


def read_document_bytes(data: bytes, filename: str, max_bytes: int | None = None) -> tuple[str, str | None]:
    """(text, title or None) of an uploaded file, read by the extension of ``filename``.

    Raises UnsupportedFormat for an extension not in SUPPORTED_SUFFIXES, TooLarge when ``data`` is
    over ``max_bytes``, UnreadableDocument when the content cannot be read as that type, and
    EmptyDocument when no text is left.
    """
    name = Path(filename).name or filename
    suffix = _require_supported(name)
    _require_size(name, len(data), max_bytes)
    if not data:
        raise EmptyDocument(f"{name} is empty (0 bytes); upload a file with text in it")
    reader = _READERS[suffix]
    text, title = reader(data, name)
    if not text.strip():
        raise EmptyDocument(f"{name} contains no text, only blank space")
    return text, title


def decode_text(data: bytes, name: str) -> str:
    """Bytes of a text file as str, with line endings normalised to ``\\n``.

    A byte-order mark (UTF-8, UTF-16, UTF-32) decides; otherwise valid UTF-8 wins; otherwise the
    Chinese legacy encodings GB18030 (a superset of GBK and GB2312) and Big5 are tried, then a
    general detector. Binary data is refused with UnreadableDocument.
    """
    _refuse_known_binary(data, name)
    text = _decode_with_bom(data, name)
    if text is None:
        if b"\x00" in data:
            raise UnreadableDocument(
                f"{name} contains NUL bytes, so it is a binary file or UTF-16 text without a byte-order mark; "
                "save it as UTF-8 text and upload it again"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_legacy(data, name)
    _refuse_control_characters(text, name)
    return normalise_newlines(text)


def normalise_newlines(text: str) -> str:
    """``\\r\\n`` and lone ``\\r`` (old Mac files) as ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- checks shared by all formats ------------------------------------------------------------


def _require_supported(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        kind = f"{suffix} files" if suffix else "files without an extension"
        hint = _UNSUPPORTED_HINTS.get(suffix)
        raise UnsupportedFormat(
            f"{name}: cannot read {kind}; supported types are {supported}" + (f" ({hint})" if hint else "")
        )
    return suffix


def _require_size(name: str, size: int, max_bytes: int | None) -> None:
    if max_bytes is not None and size > max_bytes:
        raise TooLarge(
            f"{name} is {_human_size(size)}, over the {_human_size(max_bytes)} limit; split it or upload a smaller file"
        )


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _what_it_is(data: bytes) -> str | None:
    """A description of ``data`` when its leading bytes give its type away, else None."""
    for signature, description in _SIGNATURES:
        if data.startswith(signature):
            return description
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "a web page (HTML)"
    return None


def _refuse_known_binary(data: bytes, name: str) -> None:
    what = _what_it_is(data)
    if what is not None and what != "a web page (HTML)":
        raise UnreadableDocument(f"{name} is not a text file: it is {what}; upload it with its proper extension")


def _refuse_control_characters(text: str, name: str) -> None:
    sample = text[:8192]
    # Tabs, newlines, form feeds, ESC (colour codes in logs) and Ctrl-Z (the end of old DOS files) occur in
    # real text; other control characters mean binary.
    controls = sum(1 for char in sample if unicodedata.category(char) == "Cc" and char not in "\t\n\r\f\v\x1a\x1b")
    if "\x00" in sample or controls > len(sample) // 100:
        raise UnreadableDocument(f"{name} looks like a binary file, not text; upload a text document")


# -- text encodings -------------------------------------------------------------------------


def _decode_with_bom(data: bytes, name: str) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                label = encoding.upper()
                raise UnreadableDocument(
                    f"{name} starts with a {label} byte-order mark but is not valid {label} text; "
                    "save it again as UTF-8 and upload that"
                ) from None
    return None


def _decode_legacy(data: bytes, name: str) -> str:
    """Text not in UTF-8: the most plausible of the encodings that decode it without errors.

    Chinese encodings are tried first and win ties, GB18030 before Big5: a short GBK text is
    valid in several encodings, and general detectors often call it Korean or Big5.
    """
    candidates: list[tuple[float, int, str]] = []
    for encoding in ("gb18030", "cp950", "big5hkscs"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        candidates.append((_implausibility(text, encoding), len(candidates), text))
        if encoding != "gb18030":
            break  # one Big5 variant is enough
    if candidates and min(candidates)[0] <= CHINESE_IMPLAUSIBILITY_ACCEPTED:
        return min(candidates)[2]
    # Not clearly Chinese: a general detector may know better (Japanese, windows-1252, ...).
    guess = from_bytes(data).best()
    if guess is not None and guess.encoding:
        text = str(guess)
        candidates.append((_implausibility(text, guess.encoding), len(candidates), text))
    if candidates and min(candidates)[0] <= 0.5:
        return min(candidates)[2]
    raise UnreadableDocument(
        f"{name}: cannot tell which text encoding this file uses (it is not UTF-8, GBK/GB18030 or Big5); "
        "save it as UTF-8 and upload it again"
    )


def _implausibility(text: str, encoding: str) -> float:
    """Share of the non-ASCII characters that a real text in ``encoding`` would rarely contain (0 to 1)."""
    characters = [char for char in text[:ENCODING_SAMPLE_CHARS] if not char.isascii()]
    if not characters:
        return 0.0
    return sum(_character_cost(char, encoding) for char in characters) / len(characters)


def _character_cost(char: str, encoding: str) -> float:
    if char == "\ufffd" or unicodedata.category(char) in {"Co", "Cn", "Cs", "Cc"}:
        return 1.0  # private-use, unassigned or control: the bytes were not meant this way
    if encoding == "gb18030":
        # Big5 bytes read as GB land in GB's kana/Greek/Cyrillic/box rows and on rare hanzi outside GB2312.
        if _is_hanzi(char):
            return 0.0 if _encodes(char, "gb2312") else 0.5
        if "\u0370" <= char <= "\u04ff" or "\u2500" <= char <= "\u257f" or "\u3040" <= char <= "\u30ff":
            return 1.0
    elif encoding in {"cp950", "big5hkscs"} and _is_hanzi(char):
        # GB bytes read as Big5 land about half the time on Big5's less frequent second level (lead byte ≥ 0xC9).
        encoded = _encodes(char, "cp950")
        return 0.0 if encoded and encoded[0] < 0xC9 else 0.5
    return 0.0


def _is_hanzi(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\U00020000" <= char <= "\U0003ffff"


def _encodes(char: str, encoding: str) -> bytes | None:
    try:
        return char.encode(encoding)
    except UnicodeEncodeError:
        return None


# -- plain text and markdown ----------------------------------------------------------------


def _read_text(data: bytes, name: str) -> tuple[str, str | None]:
    text = decode_text(data, name)
    title = _markdown_title(text) if Path(name).suffix.lower() in MARKDOWN_SUFFIXES else None
    return text, title


def _markdown_title(text: str) -> str | None:
    """The heading of a leading ``# Title`` line, if the document starts with one."""
    match = re.match(r"\s*#[ \t]+(.+?)[ \t#]*(?:\n|$)", text)
    return match.group(1).strip() if match else None


# -- HTML -----------------------------------------------------------------------------------

_NOISE_TAGS = ("script", "style", "noscript", "template", "head", "nav", "iframe", "svg", "canvas", "object", "embed")
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "caption", "center", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup",
    "hr", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary", "table", "tr", "ul",
)  # fmt: skip
# Markers put into the tree before get_text(), where they cannot clash with the page's own text.
_PARAGRAPH, _LINE, _CELL = "\x00", "\x01", "\x02"
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_LINE_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t]*[\r\n]\s*(?=[{_CJK}])")
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def _read_html(data: bytes, name: str) -> tuple[str, str | None]:
    # Stray control characters are dropped: the markers below are control characters too.
    soup = BeautifulSoup(_CONTROL_CHARACTERS.sub("", _decode_html(data, name)), "html.parser")
    title = _clean_inline(soup.title.get_text()) if soup.title else ""
    if not title and (heading := soup.find("h1")) is not None:
        title = _clean_inline(heading.get_text())
    for tag in soup.find_all(_NOISE_TAGS):
        tag.decompose()
    for pre in soup.find_all("pre"):
        for string in pre.find_all(string=True):
            string.replace_with(string.replace("\n", _LINE))
    for tag in soup.find_all("br"):
        tag.replace_with(_LINE)
    for tag in soup.find_all(("td", "th")):
        tag.insert_before(_CELL)
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_PARAGRAPH)
        tag.insert_after(_PARAGRAPH)
    return _paragraphs_from_markers(soup.get_text()), title or None


def _decode_html(data: bytes, name: str) -> str:
    """An HTML page as str: a byte-order mark, else the declared charset if it fits, else detection."""
    if not any(data.startswith(bom) for bom, _ in _BOMS) and (match := _META_CHARSET.search(data[:4096])):
        try:
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
            text = data.decode(_CHARSET_SUPERSETS.get(encoding, encoding))
        except (LookupError, UnicodeDecodeError):
            pass  # unknown or wrong declaration (common on old Chinese sites): detect instead
        else:
            _refuse_control_characters(text, name)
            return normalise_newlines(text)
    return decode_text(data, name)


def _paragraphs_from_markers(marked: str) -> str:
    # A line break between two CJK characters is source formatting, not a space (as browsers render it).
    marked = _CJK_LINE_BREAK.sub("", marked)
    paragraphs = []
    for block in re.sub(r"\s+", " ", marked).split(_PARAGRAPH):
        lines = []
        for line in block.split(_LINE):
            line = " | ".join(cell for cell in map(str.strip, line.split(_CELL)) if cell)
            if line:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _clean_inline(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# -- PDF ------------------------------------------------------------------------------------


def _read_pdf(data: bytes, name: str) -> tuple[str, str | None]:
    if b"%PDF-" not in data[:1024]:
        raise UnreadableDocument(f"{name} is not a PDF file: {_not_this_format(data, name, '.pdf')}")
    # pypdf raises many exception types (and sometimes plain ValueError/KeyError) on damaged files;
    # every failure of the library is a property of the file, so all of them become UnreadableDocument.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(
                f"{name} is encrypted/password protected; remove the password "
                "(e.g. open it and save or print it as a new PDF) and upload it again"
            )
        pages = [normalise_newlines(page.extract_text() or "").strip() for page in reader.pages]
        title = _pdf_title(reader)
    except UnreadableDocument:
        raise
    except DependencyError as error:
        raise UnreadableDocument(f"{name} uses PDF encryption this server cannot open ({error})") from error
    except Exception as error:
        raise UnreadableDocument(
            f"{name} is damaged or incomplete and cannot be read as a PDF ({type(error).__name__}: {error}); "
            "download or export it again"
        ) from error
    if not pages:
        raise UnreadableDocument(f"{name} is a PDF with no pages; download or export it again")
    text = "\n\n".join(page for page in pages if page)
    if not text.strip():
        raise EmptyDocument(
            f"{name} has no text layer (it looks like a scanned or image-only PDF); "
            "run OCR on it, or upload a version with selectable text"
        )
    return text, title


def _pdf_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a broken info dictionary only loses the title, not the document
        return None
    if not isinstance(title, str):
        return None
    return _clean_inline(title) or None


def _not_this_format(data: bytes, name: str, suffix: str) -> str:
    """Why ``data`` is not a ``suffix`` file, in words a user can act on."""
    what = _what_it_is(data)
    if what is not None:
        return f"it is {what}; upload it with its proper extension"
    try:
        decode_text(data, name)
    except UnreadableDocument:
        return f"its content is not in the {suffix} format (wrong extension or a damaged download)"
    return "it contains plain text; rename it to .txt (or export the document again)"


# -- Word (.docx) ---------------------------------------------------------------------------

_TITLE_STYLES = frozenset({"title", "标题"})
_HEADING_STYLES = frozenset({"heading 1", "标题 1"})


def _read_docx(data: bytes, name: str) -> tuple[str, str | None]:
    _check_docx_package(data, name)
    # python-docx and the zip/XML layers under it raise many exception types on damaged files.
    try:
        document = docx.Document(io.BytesIO(data))
        paragraphs = list(_docx_blocks(document))
        title = _clean_inline(document.core_properties.title or "")
    except Exception as error:
        raise UnreadableDocument(
            f"{name} is damaged and cannot be read as a Word document ({type(error).__name__}: {error}); "
            "open it in Word or WPS, save it again as .docx and upload that"
        ) from error
    if not title:
        title = _docx_heading(paragraphs, _TITLE_STYLES) or _docx_heading(paragraphs, _HEADING_STYLES)
    return "\n\n".join(text for text, _ in paragraphs), title or None


def _check_docx_package(data: bytes, name: str) -> None:
    """Refuse, with a useful message, files that are not a Word zip package."""
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        if "EncryptedPackage".encode("utf-16-le") in data:
            raise UnreadableDocument(
                f"{name} is password protected; remove the password in Word or WPS, save it and upload it again"
            )
        raise UnreadableDocument(
            f"{name} is an old Word 97-2003 (.doc) file with a .docx name; open it in Word or WPS, "
            "save it as .docx and upload that"
        )
    if not data.startswith(b"PK"):
        raise UnreadableDocument(f"{name} is not a Word document: {_not_this_format(data, name, '.docx')}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            entries = {info.filename: info.file_size for info in package.infolist()}
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise UnreadableDocument(
            f"{name} is damaged or incomplete (its zip structure is broken: {error}); "
            "download it again, or open it in Word or WPS and save it again"
        ) from error
    if "word/document.xml" not in entries:
        if "xl/workbook.xml" in entries:
            what = "an Excel workbook"
        elif "ppt/presentation.xml" in entries:
            what = "a PowerPoint presentation"
        else:
            what = "a zip archive"
        raise UnreadableDocument(f"{name} is not a Word document: it is {what}; upload a .docx, .pdf or .txt instead")
    if sum(entries.values()) > MAX_UNPACKED_DOCX_BYTES:
        raise TooLarge(
            f"{name} unpacks to {_human_size(sum(entries.values()))}, over the "
            f"{_human_size(MAX_UNPACKED_DOCX_BYTES)} limit for Word documents"
        )


def _docx_blocks(container: docx.document.Document | _Cell) -> Iterator[tuple[str, str]]:
    """(text, lower-case style name) of each non-blank paragraph and table row, in document order."""
    for block in container.iter_inner_content():
        if isinstance(block, Table):
            yield from ((row, "") for row in _docx_table_rows(block))
        elif text := block.text.strip():
            yield normalise_newlines(text), _style_name(block)


def _docx_table_rows(table: Table) -> Iterator[str]:
    """Each row as its cells' text joined by `` | ``, a merged cell only where it starts."""
    # python-docx returns a merged cell once per grid position it covers, across columns and rows;
    # the set holds the cell elements themselves, which keeps their identity stable.
    seen: set[object] = set()
    for row in table.rows:
        cells = []
        for cell in row.cells:
            if cell._tc in seen:
                continue
            seen.add(cell._tc)
            if text := " ".join(text for text, _ in _docx_blocks(cell)):
                cells.append(text)
        if cells:
            yield " | ".join(cells)


def _style_name(paragraph: Paragraph) -> str:
    try:
        return (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    except (AttributeError, KeyError, ValueError):
        return ""


def _docx_heading(paragraphs: list[tuple[str, str]], styles: frozenset[str]) -> str | None:
    return next((_clean_inline(text) for text, style in paragraphs if style in styles), None)


_READERS: dict[str, Callable[[bytes, str], tuple[str, str | None]]] = {
    **dict.fromkeys(TEXT_SUFFIXES, _read_text),
    **dict.fromkeys(HTML_SUFFIXES, _read_html),
    ".pdf": _read_pdf,
    ".docx": _read_docx,
}
