"""Files as context: what an attachment is (image or document), decided from its bytes, and a document's text."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from bot import errors

log = logging.getLogger(__name__)

# Names whose content is text whatever the bytes look like; other names are read as text only when they
# decode cleanly (Discord's `message.txt`, made from a long paste, is one of these).
TEXT_SUFFIXES = frozenset(
    ".txt .text .md .markdown .rst .csv .tsv .json .jsonl .yaml .yml .toml .ini .cfg .conf .log .xml .html "
    ".htm .css .js .mjs .ts .tsx .jsx .py .pyi .rb .go .rs .java .kt .kts .c .h .cc .cpp .hpp .cs .swift .php "
    ".sh .bash .zsh .ps1 .bat .sql .lua .r .m .scala .dart .vue .svelte .tex .srt .vtt .diff .patch .env".split()
)
# Code-fence languages the model reads best (the rest get the suffix itself, or nothing).
FENCE_LANGUAGE = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
}
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Document:
    """A file's text as the model will read it."""

    name: str
    kind: str  # "text", "json", "csv", "markdown", "pdf"
    text: str
    pages: int = 0  # a PDF's page count


class UnreadableFile(errors.InvalidInput):
    """A file that is encrypted, corrupt, over a cap, or of a type the bot does not read."""


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(b"%PDF-")


def unknown_type(name: str) -> UnreadableFile:
    return UnreadableFile(message_id="file.unknown_type", name=name)


def read_document(name: str, data: bytes, *, max_pages: int) -> Document:
    """A document's text (blocking: run it in a thread); UnreadableFile with the reason when it can't be read."""
    if not data:
        raise UnreadableFile(message_id="file.empty", name=name)
    if is_pdf(data):
        return _read_pdf(name, data, max_pages=max_pages)
    suffix = PurePosixPath(name.lower()).suffix
    text = decode_text(data, trusted=suffix in TEXT_SUFFIXES)
    if text is None:
        raise unknown_type(name)
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise UnreadableFile(message_id="file.no_text", name=name)
    return Document(name, _text_kind(suffix, text), text)


def decode_text(data: bytes, *, trusted: bool) -> str | None:
    """UTF-8 first; other encodings detected (charset-normalizer). None when the bytes are not text."""
    head = data[:SNIFF_BYTES]
    bom_utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if b"\x00" in head and not bom_utf16:
        return None  # binary: no text encoding people use puts NUL bytes in a file without a BOM
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if not trusted and not bom_utf16:
        # An unknown name that is not UTF-8 is far more often a binary format than a legacy-encoded text.
        return None
    from charset_normalizer import from_bytes  # imported on first use: most files are UTF-8

    best = from_bytes(data).best()
    return None if best is None else str(best)


def _text_kind(suffix: str, text: str) -> str:
    if suffix in (".json", ".jsonl"):
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".md", ".markdown"):
        return "markdown"
    if suffix == "":
        try:
            json.loads(text)
        except ValueError:
            return "text"
        return "json"
    return "text"


def _read_pdf(name: str, data: bytes, *, max_pages: int) -> Document:
    # pypdf is imported only when a PDF arrives: start-up and every other /ask skip it.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                # Many PDFs are "encrypted" only against editing, with an empty password to open them.
                opened = bool(reader.decrypt(""))
            except (DependencyError, NotImplementedError, FileNotDecryptedError, PdfReadError):
                opened = False
            if not opened:
                raise UnreadableFile(message_id="file.encrypted", name=name)
        pages = len(reader.pages)
        if pages > max_pages:
            raise UnreadableFile(
                message_id="file.too_many_pages", name=name, pages=pages, max_pages=max_pages
            )
        texts = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        log.info("could not read a PDF: %s", type(exc).__name__)
        raise UnreadableFile(message_id="file.damaged_pdf", name=name) from exc
    text = "\n\n".join(
        f"[page {number}]\n{body.strip()}" for number, body in enumerate(texts, 1) if body.strip()
    )
    if not text:
        raise UnreadableFile(message_id="file.no_pdf_text", name=name)
    return Document(name, "pdf", text, pages)


def fence_language(document: Document) -> str:
    if document.kind in ("json", "csv", "markdown"):
        return document.kind
    return FENCE_LANGUAGE.get(PurePosixPath(document.name.lower()).suffix, "")
