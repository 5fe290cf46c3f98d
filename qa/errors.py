"""Domain errors of the core. Plain exceptions here; the HTTP edge maps them to status codes."""

from __future__ import annotations


class QAError(Exception):
    """Base class: ``code`` is a stable machine-readable name, the message is for people."""

    code = "error"


class InvalidInput(QAError):
    """A caller passed something the core cannot work with; the message says what to change."""

    code = "invalid_input"


class NotFound(QAError):
    """A document or passage id that the index does not hold."""

    code = "not_found"


class EmptyDocument(InvalidInput):
    """A document with no text left after cleaning."""

    code = "empty_document"


class UnsupportedFormat(QAError):
    """A file type the service cannot read."""

    code = "unsupported_media_type"


class UnreadableDocument(InvalidInput):
    """A file that claims a format but cannot be parsed (corrupt, encrypted, wrong encoding)."""

    code = "unreadable_document"


class TooLarge(QAError):
    """Input over a configured size limit."""

    code = "payload_too_large"


class BudgetExceeded(TooLarge):
    """A document that would cost more to read or index than one of its budgets allows.

    ``budget`` is the name of the setting (``max_document_chars``, ...), for callers that react to it.
    """

    code = "budget_exceeded"

    def __init__(self, message: str, budget: str) -> None:
        super().__init__(message)
        self.budget = budget


class Conflict(QAError):
    """The request contradicts the current state (e.g. cancelling a job that has finished)."""

    code = "conflict"


class QueueFull(QAError):
    """The background queue holds as many jobs as it may; ``retry_after`` says when to try again (seconds)."""

    code = "queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CannotStart(QAError):
    """The service cannot start as configured (port taken, model or folder missing); the message says what to change."""

    code = "cannot_start"


class ModelNotFound(CannotStart):
    """A model setting that names no folder and no model in the local cache (nothing is downloaded at run time)."""

    code = "model_not_found"


class StorageFull(QAError):
    """The disk holding the index is full; the write was rolled back and nothing of it was kept."""

    code = "insufficient_storage"


class ReadOnlyIndex(QAError):
    """A write to an index opened read-only (``--read-only``)."""

    code = "read_only"


class DamagedIndex(CannotStart):
    """The index's database failed its integrity check; the message names the repair command."""

    code = "damaged_index"
