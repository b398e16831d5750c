"""A streaming ``multipart/form-data`` reader on python-multipart's push parser (not a spooled
``UploadFile``): the ``file`` part goes to a sink as it arrives, so no plaintext ever lands on disk
and memory stays flat; small text fields are kept."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from email.utils import collapse_rfc2231_value

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from vault.storage.exceptions import InvalidDocumentInput

MAX_FIELD = 1000
MAX_FIELDS = 20
MAX_HEADER = 4096


class MalformedUpload(InvalidDocumentInput):
    def __init__(self, message: str) -> None:
        super().__init__({"file": message})


class MultipartUpload:
    """Feed request chunks to ``write``; then ``close``. ``on_file`` is called once, before the
    first byte of the file, with the filename (it may refuse by raising); then ``sink`` gets the bytes."""

    def __init__(self, content_type: str, *, sink: Callable[[bytes], None],
                 on_file: Callable[[str | None, dict[str, str]], None] | None = None, file_field: str = "file") -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise MalformedUpload("Le formulaire envoyé est illisible (boundary manquant).")
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.saw_file = False
        self._sink, self._on_file, self._file_field = sink, on_file, file_field
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._ended = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        })

    # -- parser callbacks
    def _part_begin(self) -> None:
        self._headers, self._name, self._is_file, self._value = {}, None, False, bytearray()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])
        if len(self._header_value) > MAX_HEADER:
            raise MalformedUpload("Le formulaire envoyé est illisible (en-tête trop long).")

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).decode("latin-1").lower()] = _decode(bytes(self._header_value))
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        disposition = Message()
        disposition["content-disposition"] = self._headers.get("content-disposition", "")
        name = disposition.get_param("name", header="content-disposition")
        # An RFC 2231 name (name*=UTF-8''…) comes as (charset, language, value): decoded to its text.
        self._name = collapse_rfc2231_value(name) if isinstance(name, tuple) else name
        filename = disposition.get_filename()
        if self._name == self._file_field:
            if self.saw_file:
                raise MalformedUpload("Envoyez un seul fichier à la fois.")
            self._is_file, self.saw_file, self.filename = True, True, filename
            if self._on_file is not None:
                self._on_file(filename, dict(self.fields))
        elif len(self.fields) >= MAX_FIELDS:
            raise MalformedUpload("Le formulaire contient trop de champs.")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self._sink(data[start:end])
            return
        self._value.extend(data[start:end])
        if len(self._value) > MAX_FIELD:
            raise InvalidDocumentInput({self._name or "field": "Un des champs est trop long."})

    def _part_end(self) -> None:
        if not self._is_file and self._name:
            self.fields.setdefault(self._name, _decode(bytes(self._value)))

    def _end(self) -> None:
        self._ended = True

    # -- feeding
    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise MalformedUpload("Le formulaire envoyé est illisible.") from None

    def close(self) -> None:
        """The body has ended: a multipart without its closing boundary was cut short."""
        try:
            self._parser.finalize()
        except MultipartParseError:
            raise MalformedUpload("Le formulaire envoyé est illisible.") from None
        if not self._ended:
            raise MalformedUpload("L'envoi a été interrompu avant la fin. Rien n'a été enregistré : recommencez.")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
