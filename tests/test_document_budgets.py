"""Budgets: hostile documents are refused while they are read, with a message naming the budget.

Every hostile file is built here, small where the attack allows: zip entries that inflate a
thousandfold or lie about their size, markup nested 30,000 deep, PDFs whose pages share one huge
content stream or draw one form a thousand times. "While reading" is checked by what the reader
did before it stopped (bytes inflated, pages parsed), never by a clock.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterable

import pytest
from pypdf import PageObject, PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from qa.config import OPTIONS, Settings
from qa.documents import budgets as budgets_module
from qa.documents.budgets import DEFAULT_BUDGETS, Budgets, DocumentMeter, setting_of
from qa.documents.passages import split_document
from qa.documents.readers import read_document_bytes
from qa.errors import BudgetExceeded, EmptyDocument, TooLarge, UnreadableDocument

WORD_NAMESPACE = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
MB = 1024 * 1024


def budget_error(data: bytes, filename: str, budgets: Budgets = DEFAULT_BUDGETS) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as caught:
        read_document_bytes(data, filename, budgets=budgets)
    error = caught.value
    message = str(error)
    # the message names the file, the budget and how to change it
    assert filename in message and error.budget in message and f"QA_{error.budget.upper()}" in message
    return error


# -- building hostile files -------------------------------------------------------------------


def word_package(body: Iterable[bytes], declared_size: int | None = None) -> bytes:
    """A .docx whose document.xml wraps ``body`` (written chunk by chunk, never held whole).

    ``declared_size``: what the zip headers claim document.xml unpacks to, instead of the truth.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        with package.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(f"<w:document {WORD_NAMESPACE}><w:body>".encode())
            for chunk in body:
                part.write(chunk)
            part.write(b"</w:body></w:document>")
    data = bytearray(out.getvalue())
    if declared_size is not None:
        # the uncompressed size sits at offset 22 of the local header and 24 of the central directory entry
        info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("word/document.xml")
        struct.pack_into("<I", data, info.header_offset + 22, declared_size)
        entry = data.rfind(b"PK\x01\x02")
        while entry != -1:
            name_length = struct.unpack_from("<H", data, entry + 28)[0]
            if data[entry + 46 : entry + 46 + name_length] == b"word/document.xml":
                struct.pack_into("<I", data, entry + 24, declared_size)
            entry = data.rfind(b"PK\x01\x02", 0, entry)
    return bytes(data)


def paragraphs(text: str, count: int) -> bytes:
    """``count`` paragraphs of ``text``, each numbered (as in real documents, no two alike)."""
    return "".join(f"<w:p><w:r><w:t>{number}. {text}</w:t></w:r></w:p>" for number in range(count)).encode()


def pdf_writer_page(writer: PdfWriter) -> PageObject:
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page = writer.add_blank_page(612, 792)
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
    return page


def flate_stream(content: bytes) -> DecodedStreamObject:
    stream = DecodedStreamObject()
    stream.set_data(content)
    return stream.flate_encode()


def shared_stream_pdf(pages: int, content: bytes) -> bytes:
    """A PDF of ``pages`` pages that all draw one compressed content stream."""
    writer = PdfWriter()
    first = pdf_writer_page(writer)
    first.replace_contents(flate_stream(content))
    for _ in range(pages - 1):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = first.raw_get("/Resources")
        page[NameObject("/Contents")] = first.raw_get("/Contents")  # the same indirect object
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def form_pdf(draws: int, form_content: bytes) -> bytes:
    """A one-page PDF that draws one form XObject ``draws`` times."""
    writer = PdfWriter()
    page = pdf_writer_page(writer)
    form = flate_stream(form_content)
    form.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Form"),
            NameObject("/BBox"): ArrayObject(map(NumberObject, (0, 0, 612, 792))),
        }
    )
    page[NameObject("/Resources")][NameObject("/XObject")] = DictionaryObject({NameObject("/X0"): form})
    page.replace_contents(flate_stream(b"/X0 Do\n" * draws))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


TEXT_LINE = b"BT /F1 12 Tf 72 720 Td (A line of text on the page.) Tj ET\n"
# drawing operations with one short text: pages that cost parsing but add few characters
DRAWING_LINE = b"0 0 m 100 100 l 200 50 l h S 1 0 0 1 0 0 cm\n"


@pytest.fixture
def parsed_pages(monkeypatch) -> list[int]:
    """Records each PDF page whose text pypdf extracts (the expensive part of reading a PDF)."""
    calls: list[int] = []
    original = PageObject.extract_text

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counting)
    return calls


# -- characters ---------------------------------------------------------------------------------


def test_a_one_line_text_over_the_character_budget_is_refused_before_it_is_split():
    # the 19 MB one-line .txt of the report, at a tenth of the size: still over the default budget
    data = b"x" * (DEFAULT_BUDGETS.max_document_chars + 1)
    error = budget_error(data, "line.txt")
    assert error.budget == "max_document_chars" and "2,000,000 characters" in str(error)
    assert isinstance(error, TooLarge) and error.code == "budget_exceeded"


def test_a_text_at_the_character_budget_is_read():
    budgets = Budgets(max_document_chars=1000)
    assert len(read_document_bytes(b"y" * 1000, "fits.txt", budgets=budgets)[0]) == 1000
    budget_error(b"y" * 1001, "over.txt", budgets)


def test_html_characters_are_counted_as_they_are_parsed_white_space_runs_as_one():
    budgets = Budgets(max_document_chars=5000)
    indented = "<html><body>" + "<p>\n        word\n    </p>" * 600 + "</body></html>"
    text, _ = read_document_bytes(indented.encode(), "indented.html", budgets=budgets)
    assert text.count("word") == 600
    budget_error(("<p>" + "word " * 2000 + "</p>").encode(), "long.html", budgets)


def test_docx_characters_are_counted_as_the_xml_is_inflated():
    budgets = Budgets(max_document_chars=10_000)
    error = budget_error(word_package([paragraphs("一段文字。", 10_000)]), "long.docx", budgets)
    assert error.budget == "max_document_chars"


def test_pdf_reading_stops_at_the_page_that_passes_the_character_budget(parsed_pages):
    data = shared_stream_pdf(50, TEXT_LINE * 200)  # ~5,600 characters a page
    error = budget_error(data, "long.pdf", Budgets(max_document_chars=20_000))
    assert error.budget == "max_document_chars"
    assert len(parsed_pages) == 4


# -- nesting ------------------------------------------------------------------------------------


def nested_divs(depth: int) -> bytes:
    return ("<html><body>" + "<div>深" * depth + "</div>" * depth + "</body></html>").encode()


def test_thirty_thousand_nested_divs_are_refused_by_the_depth_budget():
    error = budget_error(nested_divs(30_000), "deep.html")
    assert error.budget == "max_markup_depth" and "200" in str(error)


def test_deep_html_within_a_raised_budget_is_read_completely_in_one_pass():
    # BeautifulSoup took 227 s on this page; lxml's parser target reads it in linear time
    text, _ = read_document_bytes(nested_divs(30_000), "deep.html", budgets=Budgets(max_markup_depth=40_000))
    assert text.count("深") == 30_000


def test_unclosed_paragraphs_are_not_nesting():
    # libxml2 closes <p> at the next <p>, as browsers do: 50,000 of them are flat, not 50,000 deep
    text, _ = read_document_bytes(("<p>段落" * 50_000).encode(), "flat.html")
    assert text.count("段落") == 50_000


def test_deeply_nested_docx_tables_are_refused_by_the_depth_budget():
    body = [b"<w:tbl><w:tr><w:tc>" * 100, paragraphs("深", 1), b"</w:tc></w:tr></w:tbl>" * 100]
    error = budget_error(word_package(body), "deep.docx")
    assert error.budget == "max_markup_depth"


def test_docx_nesting_within_a_raised_budget_is_read():
    # a parser target has no 256-level limit of its own (libxml2's tree builder has): the budget decides
    body = [b"<w:tbl><w:tr><w:tc>" * 100, paragraphs("深", 1), b"</w:tc></w:tr></w:tbl>" * 100]
    text, _ = read_document_bytes(word_package(body), "deep.docx", budgets=Budgets(max_markup_depth=1000))
    assert text == "0. 深"


# -- decompression ------------------------------------------------------------------------------


@pytest.fixture
def inflated(monkeypatch) -> list[int]:
    """Records every chunk of bytes the readers unpack."""
    chunks: list[int] = []
    original = DocumentMeter.add_unpacked

    def counting(self, count):
        chunks.append(count)
        return original(self, count)

    monkeypatch.setattr(DocumentMeter, "add_unpacked", counting)
    return chunks


def test_a_docx_declaring_500_mb_of_tiny_paragraphs_is_refused_before_inflating(inflated):
    # the report's 1.5 MB .docx whose document.xml holds 500 MB of tiny paragraphs (9 GB resident);
    # 6 MB are written and 504 MB declared, which is all the reader looks at before refusing
    data = word_package([b"<w:p/>" * 1_000_000], declared_size=504_000_000)
    error = budget_error(data, "bomb.docx")
    assert error.budget == "max_unpacked_bytes" and "declares" in str(error)
    assert inflated == []


def test_a_docx_declaring_a_thousandfold_expansion_is_refused_before_inflating(inflated):
    data = word_package([b"<w:p/>" * 1_000_000] * 4)  # 24 MB of XML in ~25 KB: under 32 MiB, over 100x
    error = budget_error(data, "bomb.docx")
    assert error.budget == "max_unpack_ratio" and "declares" in str(error)
    assert inflated == []


def test_bytes_are_counted_as_they_are_inflated_whatever_the_headers_say(inflated, monkeypatch):
    # second line of defence: with the declared sizes not checked, inflating stops at the allowance
    # (without the first free MiB, so that the test parses little)
    monkeypatch.setattr(DocumentMeter, "check_declared_unpacked", lambda self, declared: None)
    monkeypatch.setattr(budgets_module, "RATIO_GRACE_BYTES", 0)
    data = word_package([b"<w:p/>" * 1_000_000] * 4)
    error = budget_error(data, "bomb.docx")
    assert error.budget == "max_unpack_ratio" and "declares" not in str(error)
    # stopped within a chunk of 100 x the file size, not at 24 MB
    assert 100 * len(data) < sum(inflated) <= 100 * len(data) + 64 * 1024


def test_a_docx_whose_zip_entry_lies_about_its_size_is_unreadable_after_the_declared_bytes():
    # the header says 1,000 bytes; the entry inflates to 30 MB: zipfile stops at 1,000 and the CRC fails
    data = word_package([b"<w:p/>" * 1_000_000] * 5, declared_size=1000)
    with pytest.raises(UnreadableDocument, match="damaged or incomplete"):
        read_document_bytes(data, "liar.docx")


def test_an_ordinary_docx_is_far_below_the_compression_ratio():
    data = word_package([paragraphs("正常的段落，包含一些文字。", 20_000)])
    text, _ = read_document_bytes(data, "normal.docx")
    assert text.count("正常的段落") == 20_000


def test_pdf_pages_sharing_one_20_mb_content_stream_are_refused_at_the_first_page(parsed_pages):
    # the report's 56 KB PDF whose 300 pages share one 20 MB content stream (10+ minutes, +1.5 GB)
    data = shared_stream_pdf(300, TEXT_LINE * (20_000_000 // len(TEXT_LINE)))
    error = budget_error(data, "shared.pdf")
    assert error.budget == "max_pdf_page_bytes" and "page 1 " in str(error)
    assert parsed_pages == []


def test_pdf_pages_sharing_a_smaller_stream_pay_for_it_on_every_page(parsed_pages, monkeypatch):
    # under the page budget, but every page that draws the shared stream counts it again;
    # without the first free MiB, so that the test parses little
    monkeypatch.setattr(budgets_module, "RATIO_GRACE_BYTES", 0)
    content = DRAWING_LINE * (50_000 // len(DRAWING_LINE)) + TEXT_LINE
    data = shared_stream_pdf(100, content)
    error = budget_error(data, "shared.pdf", Budgets(max_unpack_ratio=20))
    assert error.budget == "max_unpack_ratio"
    assert len(parsed_pages) == 20 * len(data) // len(content) < 100


def test_a_pdf_page_drawing_one_form_a_thousand_times_is_refused_while_drawing(monkeypatch):
    drawn: list[int] = []
    original = DocumentMeter.check_page_bytes

    def counting(self, page, size):
        drawn.append(size)
        return original(self, page, size)

    monkeypatch.setattr(DocumentMeter, "check_page_bytes", counting)
    form = TEXT_LINE * (100_000 // len(TEXT_LINE))
    data = form_pdf(1000, form)
    # the ratio budget would stop it too; raised here to show the page budget on its own
    error = budget_error(data, "forms.pdf", Budgets(max_unpack_ratio=1_000_000))
    assert error.budget == "max_pdf_page_bytes"
    # stopped at the draw that passed 2 MiB, not after a thousand
    assert len(drawn) == 1 + DEFAULT_BUDGETS.max_pdf_page_bytes // len(form) + 1


def test_a_pdf_with_more_pages_than_the_budget_is_refused_before_any_page_is_parsed(parsed_pages):
    error = budget_error(shared_stream_pdf(6, TEXT_LINE), "many.pdf", Budgets(max_pdf_pages=5))
    assert error.budget == "max_pdf_pages" and parsed_pages == []


def test_a_pdf_within_its_budgets_is_read():
    text, _ = read_document_bytes(shared_stream_pdf(3, TEXT_LINE * 3), "fine.pdf")
    assert text.count("A line of text on the page.") == 9


# -- passages -------------------------------------------------------------------------------------


def test_splitting_stops_when_the_passage_budget_is_passed():
    paragraph = "这是一段足够长的文字，它自己就是一个段落，不会和别的段落合并在一起，因为它比最短的段落长得多。"
    text = "\n\n".join(f"第{number}段。{paragraph}" for number in range(500))
    assert len(split_document(text, "d", max_passages=500)) == 500
    with pytest.raises(BudgetExceeded, match="max_document_passages") as caught:
        split_document(text, "d", max_passages=499)
    assert "QA_MAX_DOCUMENT_PASSAGES" in str(caught.value)


# -- invisible text -------------------------------------------------------------------------------

INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u2062\u2063\u202a\u202c\u2066\u2069\u180e\ufe0f\u3164\u2800\U000e0041 \n"


@pytest.mark.parametrize(
    "data, filename",
    [
        (INVISIBLE.encode() * 100, "invisible.txt"),
        (f"<html><body><p>{INVISIBLE * 50}</p></body></html>".encode(), "invisible.html"),
        (word_package([f"<w:p><w:r><w:t>{INVISIBLE.strip()}</w:t></w:r></w:p>".encode() * 20]), "invisible.docx"),
    ],
)
def test_a_document_of_only_invisible_characters_is_an_empty_document(data, filename):
    with pytest.raises(EmptyDocument, match="invisible"):
        read_document_bytes(data, filename)


def test_visible_text_among_invisible_characters_is_kept():
    text, _ = read_document_bytes((INVISIBLE + "看得见的字" + INVISIBLE).encode(), "mixed.txt")
    assert "看得见的字" in text


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", Budgets.__dataclass_fields__)
def test_every_budget_is_a_setting_named_as_its_messages_say(budget):
    flag, variable, _ = OPTIONS[budget]
    assert setting_of(budget) == f"{variable} ({flag})"
    assert getattr(Settings(), budget) == getattr(DEFAULT_BUDGETS, budget)
    assert getattr(Settings().replace(**{budget: 7}).budgets(), budget) == 7
