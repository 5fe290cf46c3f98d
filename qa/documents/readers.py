"""Files → text: the formats the service can index, and how each is read.

Every reader returns ``(text, title or None)``. Problems a user can fix raise the domain errors of
``qa.errors`` with a message that names the file and says what to do; nothing a parsing library
raises on a bad file escapes from here.

Readers stream: HTML and the XML of a .docx go through lxml parser targets (events in document
order, no tree kept, linear time), zip entries are inflated chunk by chunk, PDF pages one at a
time; the budgets of ``qa.documents.budgets`` are counted as they go and stop reading at once.
"""

from __future__ import annotations

import codecs
import io
import lzma
import posixpath
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from charset_normalizer import from_bytes
from lxml import etree
from pypdf import PdfReader
from pypdf.errors import DependencyError, LimitReachedError
from pypdf.generic import ArrayObject, DictionaryObject, StreamObject

from qa.documents.budgets import DEFAULT_BUDGETS, Budgets, DocumentMeter, check_document_chars, human_size
from qa.documents.text import has_visible_text
from qa.errors import BudgetExceeded, EmptyDocument, TooLarge, UnreadableDocument, UnsupportedFormat

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
MARKDOWN_SUFFIXES = frozenset({".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: frozenset[str] = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}

# Zip entries are inflated, and markup fed to its parser, this many bytes at a time.
READ_CHUNK_BYTES = 64 * 1024
# What zipfile raises on a damaged, encrypted (RuntimeError) or exotic (NotImplementedError) package.
_ZIP_ERRORS = (
    zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError, RuntimeError, ValueError
)

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


def read_document_file(
    path: Path, max_bytes: int | None = None, budgets: Budgets = DEFAULT_BUDGETS
) -> tuple[str, str | None]:
    """(text, title or None) of the file at ``path``, by its extension; see ``read_document_bytes``."""
    path = Path(path)
    _require_supported(path.name)
    # Checked before reading, so an oversized file is never loaded into memory.
    _require_size(path.name, path.stat().st_size, max_bytes)
    return read_document_bytes(path.read_bytes(), path.name, max_bytes, budgets)


def read_document_bytes(
    data: bytes, filename: str, max_bytes: int | None = None, budgets: Budgets = DEFAULT_BUDGETS
) -> tuple[str, str | None]:
    """(text, title or None) of an uploaded file, read by the extension of ``filename``.

    Raises UnsupportedFormat for an extension not in SUPPORTED_SUFFIXES, TooLarge when ``data`` is
    over ``max_bytes``, BudgetExceeded (a TooLarge) as soon as reading passes one of ``budgets``,
    UnreadableDocument when the content cannot be read as that type, and EmptyDocument when no
    visible text is left.
    """
    name = Path(filename).name or filename
    suffix = _require_supported(name)
    _require_size(name, len(data), max_bytes)
    if not data:
        raise EmptyDocument(f"{name} is empty (0 bytes); upload a file with text in it")
    reader = _READERS[suffix]
    text, title = reader(data, name, DocumentMeter(budgets, name, len(data)))
    # The readers count as they go; this is the exact count of what they produced.
    check_document_chars(len(text), budgets, name)
    if not text.strip():
        raise EmptyDocument(f"{name} contains no text, only blank space")
    if not has_visible_text(text):
        raise EmptyDocument(
            f"{name} contains no visible text, only invisible characters (zero-width spaces, format or "
            "control characters); upload a file with text in it"
        )
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
            f"{name} is {human_size(size)}, over the {human_size(max_bytes)} limit (QA_MAX_UPLOAD_BYTES); "
            "split it or upload a smaller file"
        )


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


def _read_text(data: bytes, name: str, meter: DocumentMeter) -> tuple[str, str | None]:
    text = decode_text(data, name)
    meter.add_chars(len(text))
    title = _markdown_title(text) if Path(name).suffix.lower() in MARKDOWN_SUFFIXES else None
    return text, title


def _markdown_title(text: str) -> str | None:
    """The heading of a leading ``# Title`` line, if the document starts with one."""
    match = re.match(r"\s*#[ \t]+(.+?)[ \t#]*(?:\n|$)", text)
    return match.group(1).strip() if match else None


# -- HTML -----------------------------------------------------------------------------------

_NOISE_TAGS = frozenset(
    {"script", "style", "noscript", "template", "head", "nav", "iframe", "svg", "canvas", "object", "embed"}
)
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "center", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup",
    "hr", "legend", "li", "main", "menu", "ol", "p", "pre", "section", "summary", "table", "tr", "ul",
})  # fmt: skip
# Markers put into the text stream, where they cannot clash with the page's own text.
_PARAGRAPH, _LINE, _CELL = "\x00", "\x01", "\x02"
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f]")
_WHITESPACE_RUN = re.compile(r"\s+")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_LINE_BREAK = re.compile(rf"(?<=[{_CJK}])[ \t]*[\r\n]\s*(?=[{_CJK}])")
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


class _HtmlText:
    """An lxml parser target: the page's visible text with paragraph, line and cell markers, in one pass.

    libxml2's HTML parser fixes broken markup (unclosed and misnested tags) like browsers do and
    calls these methods in document order; no tree is built, so time is linear in the page and
    memory in its text. (BeautifulSoup's tree building was quadratic in nesting: 30,000 nested
    ``<div>`` took 227 s.) The title is the first ``<title>``, else the first ``<h1>``.
    """

    def __init__(self, meter: DocumentMeter) -> None:
        self.meter = meter
        self.parts: list[str] = []
        self.depth = 0
        self.noise = 0  # open elements whose text is not content (scripts, navigation, ...)
        self.preformatted = 0
        self.title: list[str] | None = None  # None until a <title> opens
        self.heading: list[str] | None = None  # the first <h1>
        self.in_title = self.in_heading = False

    def start(self, tag: str, attrib: object) -> None:
        self.depth += 1
        self.meter.check_depth(self.depth)
        if tag == "title" and self.title is None:
            self.title, self.in_title = [], True
        elif tag == "h1" and self.heading is None:
            self.heading, self.in_heading = [], True
        if tag in _NOISE_TAGS:
            self.noise += 1
        if self.noise:
            return
        if tag == "pre":
            self.preformatted += 1
        if tag == "br":
            self.parts.append(_LINE)
        elif tag in ("td", "th"):
            self.parts.append(_CELL)
        elif tag in _BLOCK_TAGS:
            self.parts.append(_PARAGRAPH)

    def end(self, tag: str) -> None:
        self.depth -= 1
        if tag == "title":
            self.in_title = False
        elif tag == "h1":
            self.in_heading = False
        if tag in _NOISE_TAGS:
            self.noise -= 1
            return
        if self.noise:
            return
        if tag == "pre":
            self.preformatted -= 1
        if tag in _BLOCK_TAGS:
            self.parts.append(_PARAGRAPH)

    def data(self, text: str) -> None:
        if self.in_title and self.title is not None:
            self.title.append(text)
        if self.in_heading and self.heading is not None:
            self.heading.append(text)
        if self.noise:
            return
        if self.preformatted:
            text = text.replace("\n", _LINE)
        self.parts.append(text)
        # white space in markup is mostly indentation: a run of it becomes one space in the text
        self.meter.add_chars(len(_WHITESPACE_RUN.sub(" ", text)))

    def close(self) -> tuple[str, str | None]:
        title = _clean_inline("".join(self.title or ())) or _clean_inline("".join(self.heading or ()))
        return _paragraphs_from_markers("".join(self.parts)), title or None


def _read_html(data: bytes, name: str, meter: DocumentMeter) -> tuple[str, str | None]:
    # Stray control characters are dropped: the markers are control characters too.
    page = _CONTROL_CHARACTERS.sub("", _decode_html(data, name))
    parser = etree.HTMLParser(target=_HtmlText(meter), no_network=True)
    try:
        for start in range(0, len(page), READ_CHUNK_BYTES):
            parser.feed(page[start : start + READ_CHUNK_BYTES])
        return parser.close()
    except etree.LxmlError as error:  # libxml2 recovers from nearly anything in HTML; not from everything
        raise UnreadableDocument(
            f"{name} cannot be read as a web page ({error}); save it again from a browser and upload that"
        ) from None


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
    for block in _WHITESPACE_RUN.sub(" ", marked).split(_PARAGRAPH):
        lines = []
        for line in block.split(_LINE):
            line = " | ".join(cell for cell in map(str.strip, line.split(_CELL)) if cell)
            if line:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _clean_inline(text: str) -> str:
    return _WHITESPACE_RUN.sub(" ", text).strip()


# -- PDF ------------------------------------------------------------------------------------


def _read_pdf(data: bytes, name: str, meter: DocumentMeter) -> tuple[str, str | None]:
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
        meter.check_pages(len(reader.pages))
        pages = [_pdf_page_text(page, number, meter) for number, page in enumerate(reader.pages, start=1)]
        title = _pdf_title(reader)
    except (UnreadableDocument, BudgetExceeded):
        raise
    except DependencyError as error:
        raise UnreadableDocument(f"{name} uses PDF encryption this server cannot open ({error})") from error
    except LimitReachedError as error:
        raise TooLarge(f"{name} goes past a safety limit of the PDF reader ({error}); export it again") from error
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


def _pdf_page_text(page: DictionaryObject, number: int, meter: DocumentMeter) -> str:
    """The text of one page, its content counted against the budgets before pypdf parses it.

    A page's own content streams are measured first (pages may share one stream: each page that
    draws it pays for it). Forms it draws (``Do``) are measured by a visitor as they are met,
    before pypdf parses them; once a budget is passed the visitor raises at every later
    operation, since pypdf swallows errors raised inside a form.
    """
    drawn = _stream_size(page.get("/Contents"))
    meter.check_page_bytes(number, drawn)
    meter.add_unpacked(drawn)
    forms = _page_forms(page)
    sizes: dict[int, int] = {}
    failure: BudgetExceeded | None = None

    def count_forms(operator: bytes, operands: list, *_: object) -> None:
        nonlocal drawn, failure
        if failure is not None:
            raise failure
        if operator == b"Do" and operands and (candidates := forms.get(operands[0])):
            size = max(sizes.setdefault(id(form), _stream_size(form)) for form in candidates)
            drawn += size
            try:
                meter.check_page_bytes(number, drawn)
                meter.add_unpacked(size)
            except BudgetExceeded as error:
                failure = error
                raise

    text = page.extract_text(visitor_operand_before=count_forms)
    if failure is not None:
        raise failure
    text = normalise_newlines(text or "").strip()
    meter.add_chars(len(text))
    return text


def _stream_size(contents: object) -> int:
    """Decoded bytes of a content stream, or of an array of them (0 for anything else)."""
    contents = contents.get_object() if contents is not None else None
    if isinstance(contents, StreamObject):
        return len(contents.get_data())
    if isinstance(contents, ArrayObject):
        return sum(_stream_size(part) for part in contents)
    return 0


# Forms inside forms are followed this deep, and at most this many forms are looked at per page.
_FORM_DEPTH = 8
_FORMS_PER_PAGE = 1000


def _page_forms(page: DictionaryObject) -> dict[str, list[StreamObject]]:
    """The form XObjects a page can draw, by resource name, nested forms included (nothing decoded).

    A name can mean different forms at different levels; the visitor then charges the largest.
    """
    forms: dict[str, list[StreamObject]] = {}
    seen: set[int] = set()
    pending = [(page.get("/Resources"), 0)]
    while pending and len(seen) < _FORMS_PER_PAGE:
        resources, depth = pending.pop()
        resources = resources.get_object() if resources is not None else None
        xobjects = resources.get("/XObject") if isinstance(resources, DictionaryObject) else None
        xobjects = xobjects.get_object() if xobjects is not None else None
        if not isinstance(xobjects, DictionaryObject):
            continue
        for resource_name, reference in xobjects.items():
            form = reference.get_object()
            if not isinstance(form, StreamObject) or form.get("/Subtype") != "/Form" or id(form) in seen:
                continue
            seen.add(id(form))
            forms.setdefault(resource_name, []).append(form)
            if depth < _FORM_DEPTH:
                pending.append((form.get("/Resources"), depth + 1))
    return forms


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
# A .docx is a zip of XML parts. The parts read (the package relationships, the main document,
# its styles and the core properties) are inflated chunk by chunk into lxml parser targets, so
# neither the XML nor a tree of it is ever held whole: python-docx built the whole tree, and
# 500 MB of tiny paragraphs took 9 GB. Sizes in zip headers are not trusted: bytes are counted
# as they are inflated, and zipfile checks each entry's length and CRC at its end.

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_RELATIONSHIP = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_MAIN_DOCUMENT = "word/document.xml"
_TITLE_STYLES = frozenset({"title", "标题"})
_HEADING_STYLES = frozenset({"heading 1", "标题 1"})
# Inside a run, these elements stand for characters.
_RUN_CHARACTERS = {_W + "tab": "\t", _W + "ptab": "\t", _W + "br": "\n", _W + "cr": "\n", _W + "noBreakHyphen": "-"}


def _read_docx(data: bytes, name: str, meter: DocumentMeter) -> tuple[str, str | None]:
    with _open_docx_package(data, name) as package:
        entries = {info.filename: info for info in package.infolist()}
        main = _main_document_part(package, entries, name, meter)
        styles = posixpath.join(posixpath.dirname(main), "styles.xml")
        core = "docProps/core.xml"
        # the sizes the headers declare are checked first: an honest oversized file is refused before inflating
        meter.check_declared_unpacked(sum(entries[part].file_size for part in (main, styles, core) if part in entries))
        style_names = _read_part(package, styles, _DocxStyles(meter), name, meter) if styles in entries else {}
        blocks = _read_part(package, main, _DocxBody(meter, style_names), name, meter)
        title = _read_part(package, core, _CoreTitle(meter), name, meter) if core in entries else ""
    if not title:
        title = _docx_heading(blocks, _TITLE_STYLES) or _docx_heading(blocks, _HEADING_STYLES)
    return "\n\n".join(text for text, _ in blocks), title or None


def _open_docx_package(data: bytes, name: str) -> zipfile.ZipFile:
    """The zip package of a Word document; files that are not one are refused with a useful message."""
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
        package = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as error:
        raise _broken_zip(name, error) from error
    return package


def _broken_zip(name: str, error: Exception) -> UnreadableDocument:
    return UnreadableDocument(
        f"{name} is damaged or incomplete (its zip structure is broken: {error}); "
        "download it again, or open it in Word or WPS and save it again"
    )


def _main_document_part(
    package: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo], name: str, meter: DocumentMeter
) -> str:
    """The main document part, as the package relationships name it (``word/document.xml`` in practice)."""
    main = None
    if "_rels/.rels" in entries:
        targets = _read_part(package, "_rels/.rels", _Relationships(meter), name, meter)
        main = targets.get("officeDocument")
    if main is None or main not in entries:
        main = _MAIN_DOCUMENT
    if main not in entries:
        if "xl/workbook.xml" in entries:
            what = "an Excel workbook"
        elif "ppt/presentation.xml" in entries:
            what = "a PowerPoint presentation"
        else:
            what = "a zip archive"
        raise UnreadableDocument(f"{name} is not a Word document: it is {what}; upload a .docx, .pdf or .txt instead")
    return main


def _read_part(package: zipfile.ZipFile, part: str, target: _XmlTarget, name: str, meter: DocumentMeter):
    """What ``target`` makes of one XML part, inflated and parsed chunk by chunk, every byte counted."""
    # No DTDs, no entity expansion, no network: a Word part needs none of them (XML bombs do).
    parser = etree.XMLParser(target=target, resolve_entities=False, no_network=True, load_dtd=False)
    meter.check_declared_unpacked(package.getinfo(part).file_size)
    try:
        with package.open(part) as stream:
            while chunk := stream.read(READ_CHUNK_BYTES):
                meter.add_unpacked(len(chunk))
                parser.feed(chunk)
        return parser.close()
    except etree.LxmlError as error:
        raise UnreadableDocument(
            f"{name} is damaged and cannot be read as a Word document (broken XML in {part}: {error}); "
            "open it in Word or WPS, save it again as .docx and upload that"
        ) from error
    except _ZIP_ERRORS as error:
        # a wrong CRC or size means the entry is not what its header says (damaged, or made to lie);
        # RuntimeError: an encrypted entry; NotImplementedError: an unknown compression method
        raise _broken_zip(name, error) from error


class _XmlTarget:
    """Base of the lxml parser targets below: counts nesting against the depth budget."""

    def __init__(self, meter: DocumentMeter) -> None:
        self.meter = meter
        self.depth = 0

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.depth += 1
        self.meter.check_depth(self.depth)

    def end(self, tag: str) -> None:
        self.depth -= 1

    def data(self, text: str) -> None:
        pass

    def close(self):
        return None


class _Relationships(_XmlTarget):
    """Package relationships: the last word of each type (``officeDocument``) to its target part."""

    def __init__(self, meter: DocumentMeter) -> None:
        super().__init__(meter)
        self.targets: dict[str, str] = {}

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        super().start(tag, attrib)
        if tag == _RELATIONSHIP and attrib.get("TargetMode") != "External":
            kind = attrib.get("Type", "").rsplit("/", 1)[-1]
            self.targets[kind] = posixpath.normpath(attrib.get("Target", "").lstrip("/"))

    def close(self) -> dict[str, str]:
        return self.targets


class _DocxStyles(_XmlTarget):
    """styles.xml: the lower-case name of each paragraph style, by style id."""

    def __init__(self, meter: DocumentMeter) -> None:
        super().__init__(meter)
        self.names: dict[str, str] = {}
        self.style_id: str | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        super().start(tag, attrib)
        if tag == _W + "style":
            self.style_id = attrib.get(_W + "styleId")
        elif tag == _W + "name" and self.style_id is not None:
            self.names[self.style_id] = attrib.get(_W + "val", "").lower()

    def end(self, tag: str) -> None:
        super().end(tag)
        if tag == _W + "style":
            self.style_id = None

    def close(self) -> dict[str, str]:
        return self.names


class _CoreTitle(_XmlTarget):
    """docProps/core.xml: the document title from its properties."""

    def __init__(self, meter: DocumentMeter) -> None:
        super().__init__(meter)
        self.parts: list[str] = []
        self.in_title = False

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        super().start(tag, attrib)
        self.in_title = tag == _DC_TITLE

    def end(self, tag: str) -> None:
        super().end(tag)
        self.in_title = False

    def data(self, text: str) -> None:
        if self.in_title and sum(map(len, self.parts)) < 10_000:
            self.parts.append(text)

    def close(self) -> str:
        return _clean_inline("".join(self.parts))


@dataclass
class _Paragraph:
    parts: list[str] = field(default_factory=list)
    style: str = ""


@dataclass
class _Table:
    row: list[str] = field(default_factory=list)
    cell: list[str] | None = None  # the texts of the open cell
    merged: bool = False  # the open cell continues a vertically merged one above: its text is there


class _DocxBody(_XmlTarget):
    """document.xml: (text, lower-case style name) of each non-blank paragraph and table row, in order.

    A table row is its cells' text joined by `` | ``, a merged cell only where it starts; a cell's
    paragraphs and nested tables are joined by spaces. Paragraphs in text boxes are blocks of their
    own; the fallback copy of a text box (``mc:Fallback``, for old readers) is skipped.
    """

    def __init__(self, meter: DocumentMeter, style_names: dict[str, str]) -> None:
        super().__init__(meter)
        self.style_names = style_names
        self.blocks: list[tuple[str, str]] = []
        self.paragraphs: list[_Paragraph] = []
        self.tables: list[_Table] = []
        self.parents: list[str] = []
        self.skip_below: int | None = None  # depth of an mc:Fallback being skipped
        self.in_text = False

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        super().start(tag, attrib)
        parent = self.parents[-1] if self.parents else ""
        self.parents.append(tag)
        if self.skip_below is not None:
            return
        if tag == _MC_FALLBACK:
            self.skip_below = self.depth
        elif tag == _W + "p":
            self.paragraphs.append(_Paragraph())
        elif tag == _W + "t":
            self.in_text = True
        elif parent == _W + "r" and tag in _RUN_CHARACTERS and self.paragraphs:
            self.paragraphs[-1].parts.append(_RUN_CHARACTERS[tag])
        elif tag == _W + "pStyle" and self.paragraphs:
            style_id = attrib.get(_W + "val", "")
            self.paragraphs[-1].style = self.style_names.get(style_id, style_id.lower())
        elif tag == _W + "tbl":
            self.tables.append(_Table())
        elif tag == _W + "tr" and self.tables:
            self.tables[-1].row = []
        elif tag == _W + "tc" and self.tables:
            self.tables[-1].cell, self.tables[-1].merged = [], False
        elif tag in (_W + "vMerge", _W + "hMerge") and parent == _W + "tcPr" and self.tables:
            self.tables[-1].merged = attrib.get(_W + "val", "continue") != "restart"

    def data(self, text: str) -> None:
        if self.in_text and self.skip_below is None and self.paragraphs:
            self.paragraphs[-1].parts.append(text)
            self.meter.add_chars(len(text))

    def end(self, tag: str) -> None:
        self.parents.pop()
        if self.skip_below is not None:
            if self.depth == self.skip_below:
                self.skip_below = None
            super().end(tag)
            return
        super().end(tag)
        if tag == _W + "t":
            self.in_text = False
        elif tag == _W + "p" and self.paragraphs:
            paragraph = self.paragraphs.pop()
            if text := normalise_newlines("".join(paragraph.parts)).strip():
                self._place(text, paragraph.style, self.tables[-1] if self.tables else None)
        elif tag == _W + "tc" and self.tables:
            table = self.tables[-1]
            if table.cell and not table.merged:
                table.row.append(" ".join(table.cell))
            table.cell = None
        elif tag == _W + "tr" and self.tables:
            row, self.tables[-1].row = self.tables[-1].row, []
            if row:
                self._place(" | ".join(row), "", self.tables[-2] if len(self.tables) > 1 else None)
        elif tag == _W + "tbl" and self.tables:
            self.tables.pop()

    def _place(self, text: str, style: str, table: _Table | None) -> None:
        """A finished paragraph or row goes into the open cell of ``table``, or is a block of its own."""
        if not self.paragraphs and table is not None and table.cell is not None:
            table.cell.append(text)
        else:
            self.blocks.append((text, style))

    def close(self) -> list[tuple[str, str]]:
        return self.blocks


def _docx_heading(paragraphs: list[tuple[str, str]], styles: frozenset[str]) -> str | None:
    return next((_clean_inline(text) for text, style in paragraphs if style in styles), None)


_READERS: dict[str, Callable[[bytes, str, DocumentMeter], tuple[str, str | None]]] = {
    **dict.fromkeys(TEXT_SUFFIXES, _read_text),
    **dict.fromkeys(HTML_SUFFIXES, _read_html),
    ".pdf": _read_pdf,
    ".docx": _read_docx,
}
