"""Streaming encryption of document objects: Tink's AES-GCM-HKDF streaming AEAD, byte for byte.

An object is exactly what Tink's ``AesGcmHkdfStreaming`` writes with the ``AES256_GCM_HKDF_1MB``
parameters (32-byte key, HKDF-SHA256, 32-byte derived key, 1 MiB ciphertext segments, ciphertext
offset 0), so Tink in any language decrypts our objects and we decrypt Tink's::

    header   = header length (1 byte, = 40) | salt (32) | nonce prefix (7)
    segments = AES-256-GCM(stream key, nonce, plaintext chunk), empty AAD, 16-byte tag each
    stream key = HKDF-SHA256(ikm=key, salt=salt, info=associated data, length=32)
    nonce of segment i = nonce prefix (7) | i (uint32, big endian) | 0x01 if last else 0x00

Segment 0 shares the first MiB with the header, so it holds ``SEGMENT_SIZE - 40 - 16`` plaintext
bytes; every other segment but the last holds ``SEGMENT_SIZE - 16``. The last segment holds the
remaining 0 to ``SEGMENT_SIZE - 16`` bytes (an empty plaintext is the header and one 16-byte tag).

The associated data is the document id: an object only decrypts under the id it was written for,
so it cannot be swapped for another. Callers never see nonces or salts (both are random per object).

Everything that can go wrong on decryption (wrong key or associated data, a flipped bit, a missing
final segment, trailing bytes, reordered or foreign segments, an impossible size, empty input)
raises the one :class:`~vault.crypto.exceptions.DecryptionError`. Decryption releases plaintext only
of segments whose tag has been verified, with the right segment index and last-segment flag, and
never holds more than about one segment of ciphertext beyond the chunk it is given.

Three ways in:

* push style, for pipelines: :class:`StreamEncryptor`, :class:`StreamDecryptor`;
* pull style, over an iterable of chunks: :func:`encrypt_stream`, :func:`decrypt_stream`;
* random access: :func:`decrypt_range` fetches and decrypts only the segments a byte range needs;
* whole objects of known size, read sequentially: :func:`decrypt_object` reads each segment with
  one call and decrypts it where it landed (no re-buffering: the download and export path).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.crypto.exceptions import DecryptionError

__all__ = [
    "HEADER_SIZE",
    "KEY_SIZE",
    "SEGMENT_SIZE",
    "StreamDecryptor",
    "StreamEncryptor",
    "ciphertext_size",
    "decrypt_object",
    "decrypt_range",
    "decrypt_stream",
    "encrypt_stream",
    "plaintext_size",
]

SEGMENT_SIZE = 1 << 20
"""Size of a ciphertext segment (the first one includes the header), as in ``AES256_GCM_HKDF_1MB``."""
KEY_SIZE = 32
"""Size of the key (Tink's input keying material); the per-object key HKDF derives is 32 bytes too."""

_TAG_SIZE = 16
_SALT_SIZE = 32  # Tink: salt size = derived key size
_NONCE_PREFIX_SIZE = 7
HEADER_SIZE = 1 + _SALT_SIZE + _NONCE_PREFIX_SIZE
"""Size of the object header (40): its own length in one byte, the salt, the nonce prefix."""

_FIRST_CT = SEGMENT_SIZE - HEADER_SIZE  # ciphertext bytes of segment 0 (after the header)
_FIRST_PT = _FIRST_CT - _TAG_SIZE  # plaintext bytes of a full segment 0
_PT = SEGMENT_SIZE - _TAG_SIZE  # plaintext bytes of any other full segment
_MAX_SEGMENTS = 1 << 32  # the segment index is a uint32 in the nonce
_NONCE_TAIL = struct.Struct(">IB")  # segment index, last-segment flag


# ---- sizes and layout ------------------------------------------------------------------------


def ciphertext_size(plaintext_size: int) -> int:
    """Size of the object that encrypting ``plaintext_size`` bytes produces (header included).

    Raises ``ValueError`` for a negative size or one beyond the format's 2**32 segments.
    """
    if plaintext_size < 0:
        raise ValueError("plaintext size must not be negative")
    segments = _segment_count_for_plaintext(plaintext_size)
    if segments > _MAX_SEGMENTS:
        raise ValueError("plaintext too large for the streaming format")
    return HEADER_SIZE + plaintext_size + segments * _TAG_SIZE


def plaintext_size(ciphertext_size: int) -> int:
    """Size of the plaintext inside an object of ``ciphertext_size`` bytes.

    Raises ``DecryptionError`` if no object can have that size (shorter than a header and one tag,
    or a last segment too short to hold its tag). The size alone proves nothing: decrypting does.
    """
    return _Layout.of(ciphertext_size).plaintext_size


def _segment_count_for_plaintext(size: int) -> int:
    # Tink's writer only closes a segment when more plaintext follows: a plaintext that exactly
    # fills its segments ends with that full segment (flagged last), not with an empty segment.
    if size <= _FIRST_PT:
        return 1
    return 1 + -(-(size - _FIRST_PT) // _PT)


def _segment_of(position: int) -> int:
    """Index of the segment that holds plaintext byte ``position``."""
    return 0 if position < _FIRST_PT else 1 + (position - _FIRST_PT) // _PT


def _plaintext_offset(index: int) -> int:
    """Plaintext offset of the first byte of segment ``index``."""
    return 0 if index == 0 else _FIRST_PT + (index - 1) * _PT


class _Layout:
    """Where the segments of an object of a given ciphertext size lie."""

    __slots__ = ("ciphertext_size", "plaintext_size", "segments")

    def __init__(self, ciphertext_size: int, segments: int, plaintext_size: int) -> None:
        self.ciphertext_size = ciphertext_size
        self.segments = segments
        self.plaintext_size = plaintext_size

    @classmethod
    def of(cls, ciphertext_size: int) -> _Layout:
        # The reader splits the bytes after the header into segment 0 (SEGMENT_SIZE - 40 bytes)
        # and SEGMENT_SIZE-byte segments; whatever remains (1 to SEGMENT_SIZE bytes) is the last.
        body = ciphertext_size - HEADER_SIZE
        if body < _TAG_SIZE:
            raise DecryptionError()
        if body <= _FIRST_CT:
            segments, last = 1, body
        else:
            full, last = divmod(body - _FIRST_CT, SEGMENT_SIZE)
            if last == 0:
                segments, last = 1 + full, SEGMENT_SIZE
            else:
                segments = 2 + full
        if last < _TAG_SIZE or segments > _MAX_SEGMENTS:
            raise DecryptionError()
        return cls(ciphertext_size, segments, body - segments * _TAG_SIZE)

    def span(self, index: int) -> tuple[int, int]:
        """Ciphertext offset and length of segment ``index`` (segment 0 excludes the header)."""
        if index == 0:
            start, end = HEADER_SIZE, SEGMENT_SIZE
        else:
            start, end = index * SEGMENT_SIZE, (index + 1) * SEGMENT_SIZE
        return start, min(end, self.ciphertext_size) - start


# ---- shared helpers ------------------------------------------------------------------------


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError("key must be bytes")
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise ValueError(f"key must be {KEY_SIZE} bytes")
    return key


def _check_associated_data(associated_data: bytes) -> bytes:
    if not isinstance(associated_data, bytes | bytearray | memoryview):
        raise TypeError("associated_data must be bytes")
    return bytes(associated_data)


def _stream_cipher(key: bytes, salt: bytes, associated_data: bytes) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=associated_data).derive(key)
    return AESGCM(derived)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + _NONCE_TAIL.pack(index, last)


def _join(parts: list[bytes]) -> bytes:
    if not parts:
        return b""
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Segments:
    """Cuts a stream into segments, holding back the last one until the stream is known to go on.

    ``first`` is the size of segment 0, ``size`` of the others. Complete segments are handed to
    ``seal(view, last=False)`` straight from the caller's buffer when possible; the partial one
    is copied into a fixed buffer (one copy per byte at most, no quadratic concatenation).
    """

    __slots__ = ("_buffer", "_fill", "_first", "_index", "_size", "_view")

    def __init__(self, first: int, size: int) -> None:
        self._first = first
        self._size = size
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._index = 0

    def push(self, data: memoryview, seal: Callable[[memoryview, int, bool], bytes]) -> list[bytes]:
        out: list[bytes] = []
        capacity = self._first if self._index == 0 else self._size
        if self._fill:
            need = capacity - self._fill
            if len(data) <= need:  # not yet known whether more follows: hold back
                self._view[self._fill : self._fill + len(data)] = data
                self._fill += len(data)
                return out
            self._view[self._fill : capacity] = data[:need]
            data = data[need:]
            out.append(seal(self._view[:capacity], self._index, False))
            self._fill = 0
            self._index += 1
            capacity = self._size
        while len(data) > capacity:  # more follows this segment: it is not the last
            out.append(seal(data[:capacity], self._index, False))
            data = data[capacity:]
            self._index += 1
            capacity = self._size
        self._view[: len(data)] = data
        self._fill = len(data)
        return out

    def last(self, seal: Callable[[memoryview, int, bool], bytes]) -> bytes:
        return seal(self._view[: self._fill], self._index, True)

    def release(self) -> None:
        self._view.release()
        self._buffer = bytearray()


def _as_bytes_view(data: bytes) -> memoryview:
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


# ---- encryption ------------------------------------------------------------------------------


class StreamEncryptor:
    """Push-style encryption of one object.

    The object is the concatenation, in order, of everything ``update()`` and ``finalize()``
    return: the first call's output starts with the header, so it cannot be forgotten. Each output
    holds only complete segments; the segment being filled is held back (it may turn out to be the
    last one, whose nonce differs), so ``update()`` often returns ``b""``. The object is complete
    only once ``finalize()``'s output is written: without it, decryption fails.

    A fresh random salt and nonce prefix are drawn for every encryptor; never reuse the output of
    one encryptor for two objects. Memory stays at about one segment whatever the object's size.
    """

    def __init__(self, key: bytes, associated_data: bytes) -> None:
        key = _check_key(key)
        associated_data = _check_associated_data(associated_data)
        salt = os.urandom(_SALT_SIZE)
        self._prefix = os.urandom(_NONCE_PREFIX_SIZE)
        self._cipher: AESGCM | None = _stream_cipher(key, salt, associated_data)
        self._header: bytes | None = bytes([HEADER_SIZE]) + salt + self._prefix
        self._segments = _Segments(_FIRST_PT, _PT)

    def update(self, data: bytes) -> bytes:
        """Add plaintext; return the ciphertext ready to send (header first on the first call)."""
        return _join(self._update(data))

    def finalize(self) -> bytes:
        """Seal the last segment and return it (with the header if nothing was returned yet)."""
        return _join(self._finalize())

    def _update(self, data: bytes) -> list[bytes]:
        self._require_open()
        return self._emit(self._segments.push(_as_bytes_view(data), self._seal))

    def _finalize(self) -> list[bytes]:
        self._require_open()
        out = [self._segments.last(self._seal)]
        self._cipher = None
        self._segments.release()
        return self._emit(out)

    def _emit(self, out: list[bytes]) -> list[bytes]:
        if self._header is not None:
            out.insert(0, self._header)
            self._header = None
        return out

    def _require_open(self) -> None:
        if self._cipher is None:
            raise ValueError("finalize() was already called on this StreamEncryptor")

    def _seal(self, chunk: memoryview, index: int, last: bool) -> bytes:
        assert self._cipher is not None
        if index >= _MAX_SEGMENTS:
            raise ValueError("plaintext too large for the streaming format")
        return self._cipher.encrypt(_nonce(self._prefix, index, last), chunk, None)


def encrypt_stream(key: bytes, associated_data: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext chunks; yield the object's bytes: the header, then each segment.

    The key is checked at once (``ValueError``), not when iteration starts.
    """
    encryptor = StreamEncryptor(key, associated_data)

    def generate() -> Iterator[bytes]:
        # One piece per segment (the header alone first), whatever the chunk sizes: no joining.
        for chunk in chunks:
            yield from encryptor._update(chunk)
        yield from encryptor._finalize()

    return generate()


# ---- decryption ------------------------------------------------------------------------------


class StreamDecryptor:
    """Push-style decryption of one object.

    ``update()`` accepts the object's bytes in chunks of any size and returns the plaintext of the
    segments it could authenticate (often ``b""``). A segment is only decrypted once the next byte
    after it has arrived, since until then it might be the last one (whose nonce differs);
    ``finalize()`` then authenticates that last segment and returns its plaintext. Only after
    ``finalize()`` has returned is the whole plaintext known to be complete and authentic.

    Any failure raises ``DecryptionError``, and every later call raises it again. Memory stays at
    about one segment plus the chunk being processed.
    """

    def __init__(self, key: bytes, associated_data: bytes) -> None:
        self._key: bytes | None = _check_key(key)
        self._associated_data = _check_associated_data(associated_data)
        self._header = bytearray()
        self._cipher: AESGCM | None = None
        self._prefix = b""
        self._segments = _Segments(_FIRST_CT, SEGMENT_SIZE)
        self._state = "open"  # open | failed | finalized

    def update(self, data: bytes) -> bytes:
        """Add ciphertext; return the plaintext of the segments authenticated by it."""
        return _join(self._update(data))

    def _update(self, data: bytes) -> list[bytes]:
        self._require_open()
        view = _as_bytes_view(data)
        try:
            if self._cipher is None:
                view = self._read_header(view)
                if self._cipher is None:
                    return []
            return self._segments.push(view, self._open)
        except DecryptionError:
            self._fail()
            raise

    def finalize(self) -> bytes:
        """Authenticate the last segment and return its plaintext.

        Raises ``DecryptionError`` if the object is incomplete, has trailing bytes, or was altered.
        """
        self._require_open()
        try:
            if self._cipher is None:  # empty input or a partial header
                raise DecryptionError()
            plaintext = self._segments.last(self._open)
        except DecryptionError:
            self._fail()
            raise
        self._state = "finalized"
        self._cipher = None
        self._segments.release()
        return plaintext

    def _read_header(self, view: memoryview) -> memoryview:
        need = HEADER_SIZE - len(self._header)
        self._header += view[:need]
        if len(self._header) < HEADER_SIZE:
            return view[len(view) :]
        assert self._key is not None
        self._cipher, self._prefix = _open_header(self._key, self._associated_data, bytes(self._header))
        self._key = None
        return view[need:]

    def _open(self, chunk: memoryview, index: int, last: bool) -> bytes:
        assert self._cipher is not None
        return _open_segment(self._cipher, self._prefix, chunk, index, last)

    def _require_open(self) -> None:
        if self._state == "failed":
            raise DecryptionError()
        if self._state == "finalized":
            raise ValueError("finalize() was already called on this StreamDecryptor")

    def _fail(self) -> None:
        self._state = "failed"
        self._key = None
        self._cipher = None


def _open_header(key: bytes, associated_data: bytes, header: bytes) -> tuple[AESGCM, bytes]:
    if len(header) != HEADER_SIZE or header[0] != HEADER_SIZE:
        raise DecryptionError()
    salt = header[1 : 1 + _SALT_SIZE]
    prefix = header[1 + _SALT_SIZE :]
    return _stream_cipher(key, salt, associated_data), prefix


def _open_segment(cipher: AESGCM, prefix: bytes, chunk: memoryview | bytes, index: int, last: bool) -> bytes:
    if index >= _MAX_SEGMENTS or len(chunk) < _TAG_SIZE:
        raise DecryptionError()
    try:
        return cipher.decrypt(_nonce(prefix, index, last), chunk, None)
    except InvalidTag:
        raise DecryptionError() from None


def decrypt_stream(key: bytes, associated_data: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt an iterable of ciphertext chunks; yield the plaintext of each authenticated segment.

    The iteration ends normally only if the whole object was authentic and complete; otherwise it
    raises ``DecryptionError`` (after having yielded only plaintext of authenticated segments).
    The key is checked at once (``ValueError``), not when iteration starts.
    """
    decryptor = StreamDecryptor(key, associated_data)

    def generate() -> Iterator[bytes]:
        # One piece per segment, whatever the chunk sizes: no joining.
        for chunk in chunks:
            yield from decryptor._update(chunk)
        out = decryptor.finalize()
        if out:
            yield out

    return generate()


def decrypt_range(
    key: bytes,
    associated_data: bytes,
    *,
    read: Callable[[int, int], bytes],
    ciphertext_size: int,
    start: int,
    end: int,
) -> Iterator[bytes]:
    """Decrypt plaintext bytes ``[start, end)`` of an object, fetching only the segments they need.

    ``read(offset, length)`` must return exactly ``length`` bytes of the object from ``offset``
    (an S3 ranged GET, a file ``pread``...). It is called once per needed segment, the header
    being fetched with segment 0 when that segment is needed and by one 40-byte read otherwise, so
    memory stays at about one segment whatever the range. Each segment is authenticated before its
    bytes are yielded, with its index and, for the object's final segment, the last-segment flag:
    ``ciphertext_size`` must be the object's real size (a truncated or extended object fails).
    A range that reaches the end of the object also authenticates the final segment.

    Raises ``ValueError`` at once for an invalid key or range (``start < 0``, ``start > end``,
    ``end`` beyond the plaintext size), ``DecryptionError`` at once if ``ciphertext_size`` is
    impossible, and ``DecryptionError`` while iterating if anything fails to authenticate or
    ``read`` returns the wrong number of bytes. An empty range reads nothing and yields nothing.
    """
    key = _check_key(key)
    associated_data = _check_associated_data(associated_data)
    if start < 0 or start > end:
        raise ValueError("invalid range")
    layout = _Layout.of(ciphertext_size)
    if end > layout.plaintext_size:
        raise ValueError("range beyond the end of the plaintext")
    if start == end:
        return iter(())
    first = _segment_of(start)
    final = layout.segments - 1 if end == layout.plaintext_size else _segment_of(end - 1)

    def fetch(offset: int, length: int) -> bytes:
        data = read(offset, length)
        if len(data) != length:
            raise DecryptionError()
        return data

    def generate() -> Iterator[bytes]:
        if first == 0:
            _, length = layout.span(0)
            data = memoryview(fetch(0, HEADER_SIZE + length))
            cipher, prefix = _open_header(key, associated_data, bytes(data[:HEADER_SIZE]))
            pending: memoryview | None = data[HEADER_SIZE:]
        else:
            cipher, prefix = _open_header(key, associated_data, bytes(fetch(0, HEADER_SIZE)))
            pending = None
        for index in range(first, final + 1):
            if pending is None:
                pending = memoryview(fetch(*layout.span(index)))
            plaintext = _open_segment(cipher, prefix, pending, index, index == layout.segments - 1)
            pending = None
            base = _plaintext_offset(index)
            lo, hi = max(start - base, 0), min(end - base, len(plaintext))
            if lo < hi:
                yield plaintext if (lo, hi) == (0, len(plaintext)) else plaintext[lo:hi]

    return generate()


def decrypt_object(
    key: bytes,
    associated_data: bytes,
    *,
    read: Callable[[int], bytes],
    ciphertext_size: int,
) -> Iterator[bytes]:
    """Decrypt a whole object read from the start, whose size is known (kept when it was written).

    ``read(n)`` returns the next bytes of the object, at most ``n`` (a file's or an HTTP body's
    ``read``); a shorter answer is followed up until ``n`` bytes or the end. Each segment is read
    with its exact length and authenticated where it landed, with its index and, for the final
    segment of an object of ``ciphertext_size`` bytes, the last-segment flag: a truncated or
    extended object fails (after the final segment, the object must end). One segment of
    ciphertext and one of plaintext are alive at a time.

    Raises ``DecryptionError`` at once if ``ciphertext_size`` is impossible, and while iterating if
    a segment fails to authenticate or the object is shorter or longer than ``ciphertext_size``.
    """
    key = _check_key(key)
    associated_data = _check_associated_data(associated_data)
    layout = _Layout.of(ciphertext_size)

    def exactly(length: int) -> bytes:
        data = read(length)
        if len(data) == length:
            return data
        parts = [data]
        got = len(data)
        while data and got < length:
            data = read(length - got)
            parts.append(data)
            got += len(data)
        if got != length:
            raise DecryptionError()  # the object ends early
        return b"".join(parts)

    def generate() -> Iterator[bytes]:
        _, first = layout.span(0)
        data = memoryview(exactly(HEADER_SIZE + first))
        cipher, prefix = _open_header(key, associated_data, bytes(data[:HEADER_SIZE]))
        final = layout.segments - 1
        segment: memoryview | bytes = data[HEADER_SIZE:]
        for index in range(layout.segments):
            if index:
                segment = exactly(layout.span(index)[1])
            if index == final and read(1):
                raise DecryptionError()  # bytes after the final segment
            yield _open_segment(cipher, prefix, segment, index, index == final)

    return generate()
