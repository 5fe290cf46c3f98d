"""Budgets: how much work one document may cost while it is read and cut into passages.

A small upload can be expensive to read: a zip entry that inflates a thousandfold, a PDF whose
pages all draw one huge content stream, markup nested thirty thousand deep, a one-line text that
becomes tens of thousands of passages. Each budget is counted *while* the document is read, so
reading stops at the first byte, element or page past it; nothing is parsed in full and refused
afterwards. Every budget is a setting (``qa.config``: field name = flag = ``QA_`` variable), and
an exceeded budget raises ``BudgetExceeded`` with a message that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa.errors import BudgetExceeded

MIB = 1024 * 1024
# The first MiB unpacked is never held against the compression ratio: tiny files (a 20 KB .docx
# whose document.xml is 400 KB of table markup) legitimately unpack a hundredfold and cost nothing.
RATIO_GRACE_BYTES = MIB


@dataclass(frozen=True)
class Budgets:
    """The limits of one document. Defaults suit a 2-core server; each is a setting of the same name."""

    # characters of extracted text (white-space runs in markup count as one)
    max_document_chars: int = 2_000_000
    # passages one document is cut into (each one is embedded: ~4-10 a second on 2 cores)
    max_document_passages: int = 10_000
    # elements open at once in HTML and in the XML of a .docx
    max_markup_depth: int = 200
    # pages of a PDF
    max_pdf_pages: int = 1_000
    # decoded bytes a PDF page draws: its content streams, plus each form it draws, each time
    max_pdf_page_bytes: int = 2 * MIB
    # bytes decompressed to read one file (the XML parts of a .docx, the page contents of a PDF)
    max_unpacked_bytes: int = 32 * MIB
    # bytes unpacked per byte of the file, beyond the first MiB (Apache POI's zip-bomb rule is 100)
    max_unpack_ratio: int = 100


DEFAULT_BUDGETS = Budgets()


def setting_of(budget: str) -> str:
    """How an operator changes a budget, e.g. ``QA_MAX_PDF_PAGES (--max-pdf-pages)``."""
    return f"QA_{budget.upper()} (--{budget.replace('_', '-')})"


def exceeded(budget: str, what: str, advice: str = "split it into smaller documents") -> BudgetExceeded:
    """The error for a passed budget: what went over, which budget and setting, what to do."""
    return BudgetExceeded(f"{what}: over the {budget} budget, set by {setting_of(budget)}; {advice}", budget)


class DocumentMeter:
    """The running counts of one document being read, checked against its budgets as they grow.

    ``name`` is the file name used in messages; ``file_size`` the size of the file as uploaded
    (the base of the compression ratio).
    """

    def __init__(self, budgets: Budgets, name: str, file_size: int = 0) -> None:
        self.budgets = budgets
        self.name = name
        self.file_size = file_size
        self.chars = 0
        self.unpacked = 0

    def add_chars(self, count: int) -> None:
        """Count extracted characters; BudgetExceeded past ``max_document_chars``."""
        self.chars += count
        check_document_chars(self.chars, self.budgets, self.name)

    def add_unpacked(self, count: int) -> None:
        """Count decompressed bytes; BudgetExceeded past ``max_unpacked_bytes`` or ``max_unpack_ratio``."""
        self.unpacked += count
        self._check_unpacked(self.unpacked, "unpacks to")

    def check_declared_unpacked(self, declared: int) -> None:
        """Check what zip headers declare will be unpacked, before inflating (the real bytes are counted too)."""
        self._check_unpacked(self.unpacked + declared, "declares that it unpacks to")

    def _check_unpacked(self, total: int, verb: str) -> None:
        limit = self.budgets.max_unpacked_bytes
        if total > limit:
            raise exceeded(
                "max_unpacked_bytes",
                f"{self.name} {verb} more than {human_size(limit)}",
                "split it into smaller documents, or save it again without embedded clutter",
            )
        ratio = self.budgets.max_unpack_ratio
        if total > RATIO_GRACE_BYTES + ratio * self.file_size:
            raise exceeded(
                "max_unpack_ratio",
                f"{self.name} {verb} more than {ratio} times its size of {human_size(self.file_size)} "
                f"({human_size(total)}; real documents stay far below, zip bombs do not)",
                "if it is a genuine document, save it again uncompressed or raise the setting",
            )

    def check_depth(self, depth: int) -> None:
        """BudgetExceeded when markup is nested deeper than ``max_markup_depth``."""
        if depth > self.budgets.max_markup_depth:
            raise exceeded(
                "max_markup_depth",
                f"{self.name} nests its markup more than {self.budgets.max_markup_depth} elements deep",
                "real documents stay far below this; save it again from the program that made it",
            )

    def check_pages(self, pages: int) -> None:
        """BudgetExceeded when a PDF has more than ``max_pdf_pages`` pages."""
        if pages > self.budgets.max_pdf_pages:
            limit = self.budgets.max_pdf_pages
            raise exceeded("max_pdf_pages", f"{self.name} has {pages:,} pages, more than {limit:,}")

    def check_page_bytes(self, page: int, size: int) -> None:
        """BudgetExceeded when PDF page ``page`` (1-based) draws more than ``max_pdf_page_bytes``."""
        limit = self.budgets.max_pdf_page_bytes
        if size > limit:
            raise exceeded(
                "max_pdf_page_bytes",
                f"page {page} of {self.name} draws more than {human_size(limit)} of content ({human_size(size)})",
                "export the PDF again (e.g. print it to a new PDF) or raise the setting",
            )


def check_document_chars(chars: int, budgets: Budgets, name: str) -> None:
    """BudgetExceeded when a document's text has more than ``max_document_chars`` characters."""
    if chars > budgets.max_document_chars:
        raise exceeded("max_document_chars", f"{name} has more than {budgets.max_document_chars:,} characters of text")


def human_size(size: int) -> str:
    """A byte count as people read it: ``512 bytes``, ``1.5 KB``, ``20.0 MB``."""
    if size < 1024:
        return f"{size} bytes"
    if size < MIB:
        return f"{size / 1024:.1f} KB"
    return f"{size / MIB:.1f} MB"
