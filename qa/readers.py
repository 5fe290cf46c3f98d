"""Files → text: the formats the service can index, and how each is read."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from qa.errors import UnreadableDocument, UnsupportedFormat

TEXT_SUFFIXES = {".txt", ".md"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES


def supported_files(paths: Iterable[Path]) -> list[Path]:
    """The readable files among ``paths``, folders searched recursively, in a stable order."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"corpus path {path} does not exist")
    return files


def decode_text(data: bytes, name: str) -> str:
    """Bytes of a text file as str: UTF-8 (with or without BOM), else GB18030 for Chinese files."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnreadableDocument(f"{name}: not UTF-8 or GB18030 text")


def read_document_file(path: Path) -> tuple[str, str | None]:
    """(text, title or None) of a file, by its extension."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFormat(f"{path.name}: unsupported file type {suffix or '(none)'}")
    return decode_text(path.read_bytes(), path.name), None
