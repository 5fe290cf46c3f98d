"""Document ids: the form they may take, and ids derived from file names or titles."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from qa.errors import InvalidInput

DOCUMENT_ID_PATTERN = re.compile(r"^[\w][\w.\-]{0,127}$")


def document_id_for(name: str) -> str:
    """A valid document id made from a file name or title."""
    slug = re.sub(r"[^\w.\-]+", "-", name.strip()).strip("-.")[:128]
    return slug or "document"


def distinct_document_id(relative: Path) -> str:
    """An id for a file whose name-derived id another file shares: its full name and a digest of its path."""
    digest = hashlib.sha256(relative.as_posix().encode()).hexdigest()[:8]
    return f"{document_id_for(relative.as_posix())[:119]}-{digest}"


def validate_document_id(document_id: str) -> str:
    """The id itself, or InvalidInput explaining the allowed form."""
    if not isinstance(document_id, str) or not DOCUMENT_ID_PATTERN.fullmatch(document_id):
        raise InvalidInput(
            "document id must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return document_id
