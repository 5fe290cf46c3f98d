"""Files → text: encodings, formats, and the errors a user sees for files that cannot be read.

Every test file is made here, in memory or in tmp_path: no binary fixtures in the repository.
"""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter

from qa.documents.readers import (
    SUPPORTED_SUFFIXES,
    decode_text,
    read_document_bytes,
    read_document_file,
    supported_files,
)
from qa.errors import EmptyDocument, InvalidInput, TooLarge, UnreadableDocument, UnsupportedFormat

PAGE = Path(__file__).resolve().parent.parent / "data" / "shanxi-daily-2025-07-page.txt"
PARAGRAPHS = [paragraph for paragraph in PAGE.read_text(encoding="utf-8").split("\n\n") if paragraph.strip()]
LONG_PARAGRAPH = max(PARAGRAPHS, key=len)
TRADITIONAL = "臺灣的傳統中文使用繁體字，這段文字以大五碼編碼儲存。讀者應該看到原來的字，而不是亂碼。"


def read(data: bytes, filename: str, max_bytes: int | None = None) -> tuple[str, str | None]:
    return read_document_bytes(data, filename, max_bytes)


def error_of(kind: type[Exception], data: bytes, filename: str, max_bytes: int | None = None) -> str:
    """The message of the error that reading raises; every message must name the file."""
    with pytest.raises(kind) as caught:
        read(data, filename, max_bytes)
    message = str(caught.value)
    assert filename in message
    return message


# -- building test files --------------------------------------------------------------------


def text_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF showing ``pages`` (lines of text), CJK included.

    No font file is embedded (none is needed to extract text): a Type0 font with a ToUnicode map,
    as CJK PDFs usually have, maps each glyph id (here the code point) back to its character.
    """
    characters = sorted({char for lines in pages for line in lines for char in line})
    to_unicode = (
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Test def\n"
        "1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        f"{len(characters)} beginbfchar\n"
        + "".join(f"<{ord(char):04X}> <{ord(char):04X}>\n" for char in characters)
        + "endbfchar endcmap CMapName currentdict /CMap defineresource pop end end"
    ).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the page numbers are known
        b"<< /Type /Font /Subtype /Type0 /BaseFont /SimSun /Encoding /Identity-H "
        b"/DescendantFonts [4 0 R] /ToUnicode 5 0 R >>",
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /SimSun "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> /FontDescriptor 6 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(to_unicode), to_unicode),
        b"<< /Type /FontDescriptor /FontName /SimSun /Flags 4 /FontBBox [0 -200 1000 900] "
        b"/ItalicAngle 0 /Ascent 900 /Descent -200 /CapHeight 700 /StemV 80 >>",
    ]
    page_numbers = []
    for lines in pages:
        shown = "".join("<" + "".join(f"{ord(char):04X}" for char in line) + "> Tj T*\n" for line in lines)
        content = f"BT /F1 12 Tf 72 720 Td 14 TL\n{shown}ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects)
        )
        page_numbers.append(len(objects))
    kids = " ".join(f"{number} 0 R" for number in page_numbers).encode()
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_numbers))
    info = b""
    if title is not None:
        objects.append(b"<< /Title <FEFF%s> >>" % title.encode("utf-16-be").hex().upper().encode())
        info = b" /Info %d 0 R" % len(objects)
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref))
    return out.getvalue()


CHINESE_PDF_PAGES = [["山西日报 第一版", "坚持党性党风党纪一起抓"], ["第二页：努力营造风清气正政治生态", "Page two."]]


def encrypted_pdf(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(text_pdf(CHINESE_PDF_PAGES)))
    writer.encrypt(user_password, "owner-secret", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def word_document(title: str | None = None) -> docx.document.Document:
    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    return document


def docx_bytes(document: docx.document.Document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_bytes(entries: dict[str, str | bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return out.getvalue()


# -- plain text: encodings ------------------------------------------------------------------


def test_gbk_chinese_text_reads_back_exactly():
    text, title = read(LONG_PARAGRAPH.encode("gbk"), "新闻.txt")
    assert text == LONG_PARAGRAPH
    assert title is None


@pytest.mark.parametrize("length", [8, 16, 40, None])
def test_gbk_text_is_never_taken_for_another_encoding(length):
    # General detectors call short GBK snippets Big5 or Korean; every paragraph of the page must survive.
    # (Below about 8 characters GBK bytes can be valid UTF-8, which wins: that ambiguity is inherent.)
    wrong = []
    for paragraph in PARAGRAPHS:
        snippet = paragraph[:length]
        data = snippet.encode("gbk")
        if data.isascii():
            continue
        if decode_text(data, "snippet.txt") != snippet:
            wrong.append(snippet)
    assert wrong == []


def test_gb18030_characters_outside_gbk_are_kept():
    text = "𠀀𠀁是GBK里没有的字，€也是；" + PARAGRAPHS[3][:60]
    data = text.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("gbk")
    assert decode_text(data, "ext.txt") == text


def test_big5_traditional_text_reads_back_exactly():
    assert decode_text(TRADITIONAL.encode("big5"), "繁體.txt") == TRADITIONAL


def test_big5_text_without_punctuation_is_not_read_as_gbk():
    # Without Big5 punctuation (invalid in GBK) the bytes are valid GB18030 too; plausibility decides.
    text = "臺灣傳統中文使用繁體字這段文字以大五碼編碼儲存"
    data = text.encode("big5")
    data.decode("gb18030")  # the ambiguity this test is about
    assert decode_text(data, "繁體.txt") == text


@pytest.mark.parametrize(
    "data",
    [
        "中文文本".encode(),
        "\ufeff中文文本".encode(),
        "\ufeff中文文本".encode("utf-16-le"),
        "\ufeff中文文本".encode("utf-16-be"),
        "\ufeff中文文本".encode("utf-32-le"),
    ],
    ids=["utf-8", "utf-8 with BOM", "utf-16-le BOM", "utf-16-be BOM", "utf-32-le BOM"],
)
def test_unicode_text_is_decoded_and_its_byte_order_mark_dropped(data):
    assert decode_text(data, "a.txt") == "中文文本"


@pytest.mark.parametrize("text", ["书记考察山西重要讲话", "Café crème brûlée"])
def test_valid_utf8_wins_over_gb18030(text):
    data = text.encode()
    assert data.decode("gb18030") != text  # the same bytes are also valid (and wrong) GB18030
    assert decode_text(data, "a.txt") == text


def test_big5_text_with_less_common_characters_is_still_big5():
    # 忻 is on Big5's second level; a general detector calls these bytes UTF-16.
    text = "忻州市委副書記"
    assert decode_text(text.encode("big5"), "繁體.txt") == text


def test_line_endings_become_newlines():
    data = "第一行\r\n第二行\r第三行\n".encode("gbk")
    assert decode_text(data, "a.txt") == "第一行\n第二行\n第三行\n"
    assert read("第一行\r\nline two\r\n".encode(), "a.txt")[0] == "第一行\nline two\n"


def test_binary_junk_named_txt_is_refused():
    junk = random.Random(7).randbytes(4096)
    message = error_of(UnreadableDocument, junk, "notes.txt")
    assert "binary" in message


def test_an_image_named_txt_says_what_it_really_is():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    message = error_of(UnreadableDocument, png, "notes.txt")
    assert "PNG image" in message


def test_utf16_without_byte_order_mark_is_refused_with_a_fix():
    message = error_of(UnreadableDocument, "第一行\r\nline two".encode("utf-16-le"), "notes.txt")
    assert "UTF-8" in message


def test_text_in_no_identifiable_encoding_is_refused():
    # Bytes that no encoding reads as plausible text, and with no NUL or control bytes to call them binary.
    rng = random.Random(1)
    noise = bytes(rng.randrange(0x20, 0x100) for _ in range(3000))
    message = error_of(UnreadableDocument, noise, "notes.txt")
    assert "encoding" in message and "UTF-8" in message


def test_unreadable_documents_are_invalid_input():
    # The HTTP edge maps InvalidInput to 400: a bad file is the caller's to fix.
    with pytest.raises(InvalidInput):
        read(b"\x00\x01\x02", "a.txt")


# -- plain text and markdown: titles --------------------------------------------------------


def test_markdown_leading_heading_is_the_title_and_stays_in_the_text():
    text, title = read("# 山西日报 #\n\n正文第一段。\n".encode(), "news.md")
    assert title == "山西日报"
    assert text.startswith("# 山西日报")


@pytest.mark.parametrize(
    ("content", "filename"),
    [("正文。\n\n# 后面的标题\n", "news.markdown"), ("# 不是标题\n正文。\n", "notes.txt"), ("#hashtag\n", "a.md")],
)
def test_title_only_from_a_leading_markdown_heading(content, filename):
    assert read(content.encode(), filename)[1] is None


# -- empty, too large, unsupported ----------------------------------------------------------


@pytest.mark.parametrize("filename", ["a.txt", "a.md", "a.html", "a.pdf", "a.docx"])
def test_an_empty_file_is_an_empty_document(filename):
    assert "empty" in error_of(EmptyDocument, b"", filename)


@pytest.mark.parametrize("content", [" \n\t\r\n", "\u3000\u3000\n \n"])
def test_a_whitespace_only_file_is_an_empty_document(content):
    assert "no text" in error_of(EmptyDocument, content.encode(), "blank.txt")


def test_a_file_over_the_limit_is_too_large_before_it_is_parsed():
    damaged_pdf = b"%PDF-1.7\n" + b"x" * 200
    message = error_of(TooLarge, damaged_pdf, "big.pdf", max_bytes=100)
    assert "limit" in message
    assert read(b"x" * 100, "exact.txt", max_bytes=100)[0] == "x" * 100


def test_read_document_file_checks_the_size_without_reading_the_file(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 101)

    def refuse(self: Path) -> bytes:
        raise AssertionError("read an oversized file")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(TooLarge, match="big.txt"):
        read_document_file(path, max_bytes=100)


@pytest.mark.parametrize("filename", ["setup.exe", "scan.png", "README", "report.doc"])
def test_unsupported_types_are_refused_with_the_supported_list(filename):
    message = error_of(UnsupportedFormat, b"MZ\x90\x00 anything", filename)
    assert all(suffix in message for suffix in SUPPORTED_SUFFIXES)


def test_an_old_word_file_is_told_to_save_as_docx():
    assert "save it as .docx" in error_of(UnsupportedFormat, b"\xd0\xcf\x11\xe0", "report.doc")


def test_supported_suffixes_are_the_documented_formats():
    assert SUPPORTED_SUFFIXES == {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"}


def test_extensions_are_matched_without_regard_to_case():
    assert read("大写扩展名".encode("gbk"), "NOTES.TXT")[0] == "大写扩展名"


# -- HTML -----------------------------------------------------------------------------------

GBK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="gbk"><title> 山西日报 - 要闻 </title>
<style>body {{ color: red }}</style><script>var 广告 = "不要这个";</script></head>
<body>
<nav><a href="/">首页</a> <a href="/news">新闻</a></nav>
<div class="article">
  <h1>坚持党性党风党纪一起抓</h1>
  <div><p>第一段：全面从严治党
  永远在路上。</p>
  <p>第二段，<b>加粗</b>和<a href="#">链接</a>都在同一段。<!-- 注释不要 --></p></div>
  <ul><li>第一条</li><li>第二条</li></ul>
  <p>地址：太原市<br>电话：0351</p>
  <table><tr><th>市</th><th>人数</th></tr><tr><td>晋中</td><td>12</td></tr></table>
</div>
<script>document.write("也不要这个")</script>
</body></html>"""


def test_html_keeps_paragraphs_and_drops_scripts_styles_and_navigation():
    text, title = read(GBK_PAGE.encode("gbk"), "page.html")
    assert title == "山西日报 - 要闻"
    assert text.split("\n\n") == [
        "坚持党性党风党纪一起抓",
        "第一段：全面从严治党永远在路上。",
        "第二段，加粗和链接都在同一段。",
        "第一条",
        "第二条",
        "地址：太原市\n电话：0351",
        "市 | 人数",
        "晋中 | 12",
    ]


def test_html_title_falls_back_to_the_first_h1():
    page = "<html><body><h1>  第一个标题 </h1><p>正文。</p><h1>第二个</h1></body></html>"
    assert read(page.encode(), "a.htm")[1] == "第一个标题"


def test_html_without_title_or_h1_has_no_title():
    assert read(b"<p>just text</p>", "a.html") == ("just text", None)


def test_html_with_a_wrong_charset_declaration_is_detected_instead():
    page = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
    page += f"<body><p>{LONG_PARAGRAPH}</p></body></html>"
    assert read(page.encode("gbk"), "old-site.html")[0] == LONG_PARAGRAPH


def test_html_declared_gb2312_may_contain_gbk_only_characters():
    page = '<meta charset="gb2312"><p>镕基和堃都不在GB2312里</p>'
    assert read(page.encode("gbk"), "a.html")[0] == "镕基和堃都不在GB2312里"


def test_html_declared_latin1_is_read_as_windows_1252_like_browsers_do():
    page = '<meta charset="iso-8859-1"><p>He said “hello” — 5 €</p>'
    assert read(page.encode("cp1252"), "a.html")[0] == "He said “hello” — 5 €"


def test_html_with_only_scripts_is_an_empty_document():
    error_of(EmptyDocument, b"<html><head><title>t</title></head><script>x()</script></html>", "a.html")


def test_html_preformatted_text_keeps_its_lines():
    text, _ = read(b"<pre>line one\nline two</pre><p>after</p>", "a.html")
    assert text == "line one\nline two\n\nafter"


# -- PDF ------------------------------------------------------------------------------------


def test_pdf_text_of_every_page_separated_by_a_blank_line():
    text, title = read(text_pdf(CHINESE_PDF_PAGES, title="山西日报"), "paper.pdf")
    first, second = text.split("\n\n")
    assert "坚持党性党风党纪一起抓" in first and "山西日报 第一版" in first
    assert "努力营造风清气正政治生态" in second and "Page two." in second
    assert title == "山西日报"


def test_pdf_without_a_title_in_its_metadata_has_no_title():
    assert read(text_pdf([["Hello PDF"]]), "a.pdf") == ("Hello PDF", None)


def test_a_password_protected_pdf_is_unreadable_with_a_fix():
    message = error_of(UnreadableDocument, encrypted_pdf(user_password="open-sesame"), "secret.pdf")
    assert "password" in message


def test_an_encrypted_pdf_that_opens_without_a_password_is_read():
    text, _ = read(encrypted_pdf(user_password=""), "restricted.pdf")
    assert "坚持党性党风党纪一起抓" in text


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_a_truncated_pdf_is_unreadable_not_a_crash(keep):
    data = text_pdf(CHINESE_PDF_PAGES, title="山西日报")
    message = error_of(UnreadableDocument, data[: int(len(data) * keep)], "cut.pdf")
    assert "damaged" in message


def test_a_text_file_named_pdf_says_it_is_text():
    message = error_of(UnreadableDocument, "这其实是一个文本文件。".encode(), "report.pdf")
    assert "plain text" in message and ".txt" in message


def test_a_word_file_named_pdf_says_what_it_is():
    message = error_of(UnreadableDocument, docx_bytes(word_document()), "report.pdf")
    assert "Word" in message


def test_a_pdf_without_a_text_layer_is_an_empty_document_that_says_why():
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    message = error_of(EmptyDocument, out.getvalue(), "scan.pdf")
    assert "scanned" in message and "OCR" in message


# -- Word (.docx) ---------------------------------------------------------------------------


def test_docx_paragraphs_headings_and_tables_in_document_order():
    document = word_document(title="工作报告")
    document.add_heading("坚持党性党风党纪一起抓", level=1)
    document.add_paragraph("第一段：全面从严治党永远在路上。")
    document.add_paragraph("   ")
    table = document.add_table(rows=4, cols=3)
    for row, values in enumerate([("市", "人数", "备注"), ("晋中", "12", "")]):
        for column, value in enumerate(values):
            table.cell(row, column).text = value
    table.cell(2, 0).merge(table.cell(2, 1)).text = "横向合并"
    table.cell(2, 2).merge(table.cell(3, 2)).text = "纵向合并"
    table.cell(3, 0).text = "最后一行"
    document.add_paragraph("表格之后的段落。")
    text, title = read(docx_bytes(document), "report.docx")
    assert title == "工作报告"
    assert text.split("\n\n") == [
        "坚持党性党风党纪一起抓",
        "第一段：全面从严治党永远在路上。",
        "市 | 人数 | 备注",
        "晋中 | 12",
        "横向合并 | 纵向合并",
        "最后一行",
        "表格之后的段落。",
    ]


def test_docx_text_boxes_once_content_controls_and_tracked_insertions_are_read():
    # Word writes a text box twice: the DrawingML version (mc:Choice) and a VML copy (mc:Fallback)
    text_box = "<w:txbxContent><w:p><w:r><w:t>文本框里的话</w:t></w:r></w:p></w:txbxContent>"
    body = (
        "<w:p><w:r><w:t>正文开头</w:t></w:r><w:r><mc:AlternateContent>"
        f"<mc:Choice Requires=\"wps\"><w:drawing><wps:txbx>{text_box}</wps:txbx></w:drawing></mc:Choice>"
        f"<mc:Fallback><w:pict><v:textbox>{text_box}</v:textbox></w:pict></mc:Fallback>"
        "</mc:AlternateContent></w:r><w:r><w:t>正文结尾</w:t><w:tab/><w:t>制表</w:t></w:r></w:p>"
        "<w:sdt><w:sdtContent><w:p><w:r><w:t>内容控件</w:t></w:r></w:p></w:sdtContent></w:sdt>"
        "<w:p><w:ins><w:r><w:t>修订插入</w:t></w:r></w:ins><w:del><w:r><w:delText>已删除</w:delText></w:r></w:del></w:p>"
    )
    namespaces = " ".join(
        f'xmlns:{prefix}="{uri}"'
        for prefix, uri in {
            "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
            "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
            "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
            "v": "urn:schemas-microsoft-com:vml",
        }.items()
    )
    document = f"<w:document {namespaces}><w:body>{body}</w:body></w:document>"
    text, _ = read(zip_bytes({"[Content_Types].xml": "<Types/>", "word/document.xml": document}), "boxes.docx")
    assert text.split("\n\n") == ["文本框里的话", "正文开头正文结尾\t制表", "内容控件", "修订插入"]


def test_docx_title_from_a_title_style_paragraph_when_properties_have_none():
    document = word_document()
    document.add_heading("一级标题", level=1)
    document.add_heading("文档标题", level=0)  # level 0 is Word's Title style
    assert read(docx_bytes(document), "a.docx")[1] == "文档标题"


def test_docx_title_from_the_first_heading_1_otherwise():
    document = word_document()
    document.add_paragraph("正文。")
    document.add_heading("第一章", level=1)
    document.add_heading("第二章", level=1)
    assert read(docx_bytes(document), "a.docx")[1] == "第一章"


def test_a_truncated_docx_is_unreadable_with_a_fix():
    data = docx_bytes(word_document())
    message = error_of(UnreadableDocument, data[: len(data) // 2], "cut.docx")
    assert "damaged" in message and "save it again" in message


def test_a_password_protected_docx_says_so():
    # Word saves an encrypted .docx as an OLE container holding an "EncryptedPackage" stream.
    encrypted = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptedPackage".encode("utf-16-le")
    assert "password" in error_of(UnreadableDocument, encrypted, "secret.docx")


def test_a_text_file_named_docx_says_it_is_text():
    message = error_of(UnreadableDocument, "这只是文本。".encode("gbk"), "report.docx")
    assert "plain text" in message


def test_an_old_word_file_named_docx_is_told_to_save_as_docx():
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    assert "save it as .docx" in error_of(UnreadableDocument, ole, "old.docx")


def test_an_excel_workbook_named_docx_says_what_it_is():
    workbook = zip_bytes({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"})
    assert "Excel" in error_of(UnreadableDocument, workbook, "sheet.docx")


def test_a_docx_with_broken_xml_is_unreadable():
    good = zipfile.ZipFile(io.BytesIO(docx_bytes(word_document())))
    parts = {name: good.read(name) for name in good.namelist()}
    parts["word/document.xml"] = parts["word/document.xml"][:200]
    assert "damaged" in error_of(UnreadableDocument, zip_bytes(parts), "broken.docx")


def test_a_docx_with_no_text_is_an_empty_document():
    error_of(EmptyDocument, docx_bytes(word_document(title="只有标题属性")), "blank.docx")


# -- files on disk --------------------------------------------------------------------------


def test_read_document_file_reads_by_extension(tmp_path):
    path = tmp_path / "新闻.txt"
    path.write_bytes(LONG_PARAGRAPH.encode("gbk"))
    assert read_document_file(path) == (LONG_PARAGRAPH, None)
    (tmp_path / "doc.docx").write_bytes(docx_bytes(word_document(title="标题")))
    with pytest.raises(EmptyDocument, match="doc.docx"):
        read_document_file(tmp_path / "doc.docx")


def test_supported_files_walks_folders_and_skips_hidden_and_unsupported(tmp_path):
    for relative in [
        "b.txt",
        "a.md",
        "sub/deeper/c.PDF",
        "sub/d.docx",
        "sub/e.html",
        "sub/f.htm",
        "sub/g.markdown",
        "sub/image.png",
        "sub/program.exe",
        "sub/no-extension",
        ".hidden.txt",
        ".git/config.txt",
        "sub/.cache/h.txt",
    ]:
        path = tmp_path / "corpus" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    single = tmp_path / "single.exe"
    single.write_text("x")
    found = supported_files([tmp_path / "corpus", single])
    corpus = tmp_path / "corpus"
    assert found == [
        corpus / "a.md",
        corpus / "b.txt",
        corpus / "sub/d.docx",
        corpus / "sub/deeper/c.PDF",
        corpus / "sub/e.html",
        corpus / "sub/f.htm",
        corpus / "sub/g.markdown",
        single,  # named directly: kept, so that reading it reports the unsupported type
    ]


def test_supported_files_reads_a_folder_inside_a_hidden_one(tmp_path):
    # Only dots below the given folder count: a corpus may live in e.g. ~/.local/share.
    corpus = tmp_path / ".local" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "a.txt").write_text("x")
    assert supported_files([corpus]) == [corpus / "a.txt"]


def test_supported_files_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        supported_files([tmp_path / "missing"])
