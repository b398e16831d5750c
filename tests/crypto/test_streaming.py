"""Streaming encryption of document objects: Tink's AES-GCM-HKDF streaming format (AES256_GCM_HKDF_1MB).

Compatibility is proved against Tink itself (the ``tink`` package, a test dependency), both ways;
every kind of damage must fail with the one ``DecryptionError`` without releasing plaintext of a
segment that was not authenticated; ranged reads fetch only the segments they need.
"""

from __future__ import annotations

import functools
import io
import os
import random
from collections.abc import Callable, Iterator

import pytest
import tink
from tink import secret_key_access, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

from vault.crypto.exceptions import DecryptionError
from vault.crypto.streaming import (
    HEADER_SIZE,
    KEY_SIZE,
    SEGMENT_SIZE,
    StreamDecryptor,
    StreamEncryptor,
    ciphertext_size,
    decrypt_object,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
DOC = b"document:7f3c9a2e"
TAG = 16
FIRST_PT = SEGMENT_SIZE - HEADER_SIZE - TAG  # plaintext in segment 0
PT = SEGMENT_SIZE - TAG  # plaintext in a full later segment

SIZES = [0, 1, FIRST_PT - 1, FIRST_PT, FIRST_PT + 1, 3 * (1 << 20) + 7]


# ---- helpers -------------------------------------------------------------------------------------


def random_chunks(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Cut ``data`` into chunks of mixed sizes: single bytes, odd sizes, around a segment, several MiB."""
    sizes = [1, 7, 39, 40, 41, 4096, 65_537, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE]
    i = 0
    while i < len(data):
        n = rng.choice(sizes)
        yield data[i : i + n]
        i += n


def encrypt(plaintext: bytes, key: bytes = KEY, ad: bytes = DOC) -> bytes:
    return b"".join(encrypt_stream(key, ad, [plaintext]))


def segment_plaintext_offset(index: int) -> int:
    return 0 if index == 0 else FIRST_PT + (index - 1) * PT


def segment_ciphertext_span(index: int, total: int) -> tuple[int, int]:
    start = HEADER_SIZE if index == 0 else index * SEGMENT_SIZE
    return start, min((index + 1) * SEGMENT_SIZE, total) - start


def decrypt_collecting(ciphertext: bytes, *, key: bytes = KEY, ad: bytes = DOC,
                       chunk: int = 1 << 20) -> tuple[bytes, BaseException | None]:
    """Iterate decrypt_stream, keeping what it yielded before an exception (and the exception)."""
    released: list[bytes] = []
    try:
        for piece in decrypt_stream(key, ad, (ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk))):
            released.append(piece)
    except Exception as exc:  # noqa: BLE001  (the test inspects whatever was raised)
        return b"".join(released), exc
    return b"".join(released), None


class RecordingReader:
    """``read(offset, length)`` over an in-memory object, recording every call."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.calls.append((offset, length))
        return self.data[offset : offset + length]


# ---- Tink, the reference -------------------------------------------------------------------------


@functools.cache
def tink_streaming_aead(key: bytes) -> streaming_aead.StreamingAead:
    """Tink's StreamingAead over a keyset holding ``key`` as an AES256_GCM_HKDF_1MB key."""
    streaming_aead.register()
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=SEGMENT_SIZE, derived_key_size=32, hkdf_hash_type=common_pb2.HashType.SHA256)
    key_proto = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, params=params, key_value=key)
    keyset = tink_pb2.Keyset(primary_key_id=42, key=[tink_pb2.Keyset.Key(
        key_data=tink_pb2.KeyData(type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                                  value=key_proto.SerializeToString(),
                                  key_material_type=tink_pb2.KeyData.SYMMETRIC),
        status=tink_pb2.ENABLED, key_id=42, output_prefix_type=tink_pb2.RAW)])
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _KeepOnClose(io.BytesIO):
    """Tink closes the destination when its stream closes; keep the bytes."""

    value = b""

    def close(self) -> None:
        if not self.closed:
            self.value = self.getvalue()
        super().close()


def tink_encrypt(plaintext: bytes, key: bytes = KEY, ad: bytes = DOC, write_size: int = 300_000) -> bytes:
    sink = _KeepOnClose()
    with tink_streaming_aead(key).new_encrypting_stream(sink, ad) as stream:
        for i in range(0, len(plaintext), write_size):
            stream.write(plaintext[i : i + write_size])
    return sink.value


def tink_decrypt(ciphertext: bytes, key: bytes = KEY, ad: bytes = DOC) -> bytes:
    with tink_streaming_aead(key).new_decrypting_stream(io.BytesIO(ciphertext), ad) as stream:
        return stream.read()


# ---- sizes ------------------------------------------------------------------------------------


def test_sizes_follow_tinks_layout() -> None:
    assert (SEGMENT_SIZE, KEY_SIZE, HEADER_SIZE) == (1 << 20, 32, 40)
    expected = {
        0: HEADER_SIZE + TAG,  # header and one empty (last) segment
        1: HEADER_SIZE + 1 + TAG,
        FIRST_PT: SEGMENT_SIZE,  # exactly one full segment, flagged last: no empty segment after it
        FIRST_PT + 1: SEGMENT_SIZE + 1 + TAG,
        FIRST_PT + PT: 2 * SEGMENT_SIZE,
        FIRST_PT + PT + 1: 2 * SEGMENT_SIZE + 1 + TAG,
    }
    for size, ct_size in expected.items():
        assert ciphertext_size(size) == ct_size
        assert plaintext_size(ct_size) == size
    rng = random.Random(1)
    for size in [rng.randrange(0, 50 * SEGMENT_SIZE) for _ in range(2000)]:
        assert plaintext_size(ciphertext_size(size)) == size
    # An object whose last segment is an empty tag after full segments is well formed (Tink reads it).
    assert plaintext_size(SEGMENT_SIZE + TAG) == FIRST_PT
    with pytest.raises(ValueError):
        ciphertext_size(-1)


@pytest.mark.parametrize("size", [-1, 0, 1, HEADER_SIZE, HEADER_SIZE + TAG - 1, SEGMENT_SIZE + 1,
                                  SEGMENT_SIZE + TAG - 1, 5 * SEGMENT_SIZE + 15])
def test_impossible_ciphertext_sizes_are_decryption_errors(size: int) -> None:
    with pytest.raises(DecryptionError):
        plaintext_size(size)


# ---- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_with_random_chunkings(size: int) -> None:
    rng = random.Random(size)
    plaintext = rng.randbytes(size)
    for _ in range(3):
        ciphertext = b"".join(encrypt_stream(KEY, DOC, random_chunks(plaintext, rng)))
        assert len(ciphertext) == ciphertext_size(size)
        pieces = list(decrypt_stream(KEY, DOC, random_chunks(ciphertext, rng)))
        assert all(pieces) and b"".join(pieces) == plaintext


def test_push_style_api() -> None:
    plaintext = os.urandom(FIRST_PT + PT + 1000)
    encryptor = StreamEncryptor(KEY, DOC)
    header = encryptor.update(b"")
    assert len(header) == HEADER_SIZE and header[0] == HEADER_SIZE  # the first output starts with the header
    outputs = [header]
    for i in range(0, len(plaintext), 100_000):
        out = encryptor.update(plaintext[i : i + 100_000])
        assert isinstance(out, bytes)
        outputs.append(out)
        # Only complete segments leave the encryptor before finalize().
        assert sum(map(len, outputs)) in (HEADER_SIZE, SEGMENT_SIZE, 2 * SEGMENT_SIZE)
    outputs.append(encryptor.finalize())
    ciphertext = b"".join(outputs)
    assert len(ciphertext) == ciphertext_size(len(plaintext))
    with pytest.raises(ValueError):
        encryptor.update(b"more")
    with pytest.raises(ValueError):
        encryptor.finalize()

    decryptor = StreamDecryptor(KEY, DOC)
    # A full first segment is held back until the stream is known to go on: it could be the last.
    assert decryptor.update(ciphertext[:SEGMENT_SIZE]) == b""
    assert decryptor.update(ciphertext[SEGMENT_SIZE : SEGMENT_SIZE + 1]) == plaintext[:FIRST_PT]
    assert decryptor.update(ciphertext[SEGMENT_SIZE + 1 :]) == plaintext[FIRST_PT : FIRST_PT + PT]
    assert decryptor.finalize() == plaintext[FIRST_PT + PT :]
    with pytest.raises(ValueError):
        decryptor.update(b"")


def test_finalize_alone_makes_an_empty_object_and_objects_never_repeat() -> None:
    empty = StreamEncryptor(KEY, DOC).finalize()
    assert len(empty) == HEADER_SIZE + TAG
    assert b"".join(decrypt_stream(KEY, DOC, [empty])) == b""
    assert tink_decrypt(empty) == b""
    # Fresh salt and nonce prefix per object: the same plaintext never gives the same bytes.
    assert encrypt(b"same") != encrypt(b"same")
    assert encrypt(b"same")[1:HEADER_SIZE] != encrypt(b"same")[1:HEADER_SIZE]


def test_accepts_any_bytes_like_input() -> None:
    plaintext = os.urandom(5000)
    ciphertext = b"".join(encrypt_stream(bytearray(KEY), memoryview(DOC), [bytearray(plaintext[:10]),
                                                                            memoryview(plaintext)[10:]]))
    assert b"".join(decrypt_stream(KEY, DOC, [memoryview(ciphertext)])) == plaintext


@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33), bytes(64)])
def test_keys_must_be_32_bytes(key: bytes) -> None:
    read = RecordingReader(encrypt(b"x"))
    with pytest.raises(ValueError):
        StreamEncryptor(key, DOC)
    with pytest.raises(ValueError):
        StreamDecryptor(key, DOC)
    with pytest.raises(ValueError):  # at call time, not at the first next()
        encrypt_stream(key, DOC, [])
    with pytest.raises(ValueError):
        decrypt_stream(key, DOC, [])
    with pytest.raises(ValueError):
        decrypt_range(key, DOC, read=read, ciphertext_size=len(read.data), start=0, end=1)
    with pytest.raises(TypeError):
        StreamEncryptor("k" * 32, DOC)


# ---- compatibility with Tink, both ways -----------------------------------------------------------

INTEROP_SIZES = [0, 1, 1000, FIRST_PT - 1, FIRST_PT, FIRST_PT + 1, FIRST_PT + PT, 2 * SEGMENT_SIZE + 12_345]


@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_tink_decrypts_what_we_write(size: int) -> None:
    plaintext = random.Random(size).randbytes(size)
    ciphertext = b"".join(encrypt_stream(KEY, DOC, random_chunks(plaintext, random.Random(-size))))
    assert tink_decrypt(ciphertext) == plaintext
    # The associated data is bound the same way on both sides.
    with pytest.raises(tink.TinkError):
        tink_decrypt(ciphertext, ad=b"document:other")


def test_objects_ending_with_an_empty_segment_are_read_like_tink_reads_them() -> None:
    # Neither writer produces this (a full segment flagged "not last", then a lone 16-byte tag),
    # but it is well formed and Tink's reader accepts it, so ours must too. Built with the
    # encryptor's sealing step (white box): update() has sealed segment 1 as "not last" already.
    plaintext = os.urandom(FIRST_PT + PT)
    encryptor = StreamEncryptor(KEY, DOC)
    body = encryptor.update(plaintext + b"!")
    assert len(body) == 2 * SEGMENT_SIZE
    ciphertext = body + encryptor._seal(memoryview(b""), 2, True)
    assert len(ciphertext) == 2 * SEGMENT_SIZE + TAG and plaintext_size(len(ciphertext)) == len(plaintext)
    assert tink_decrypt(ciphertext) == plaintext
    assert b"".join(decrypt_stream(KEY, DOC, random_chunks(ciphertext, random.Random(5)))) == plaintext
    # A range that reaches the end authenticates the end, the lone tag included.
    reader = RecordingReader(ciphertext)
    assert b"".join(decrypt_range(KEY, DOC, read=reader, ciphertext_size=len(ciphertext),
                                  start=len(plaintext) - 3, end=len(plaintext))) == plaintext[-3:]
    assert reader.calls == [(0, HEADER_SIZE), (SEGMENT_SIZE, SEGMENT_SIZE), (2 * SEGMENT_SIZE, TAG)]
    with pytest.raises(DecryptionError):  # without its lone tag, the object is truncated
        b"".join(decrypt_stream(KEY, DOC, [ciphertext[:-TAG]]))


@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_we_decrypt_what_tink_writes(size: int) -> None:
    plaintext = random.Random(size).randbytes(size)
    ciphertext = tink_encrypt(plaintext)
    assert len(ciphertext) == ciphertext_size(size)  # same segmentation as Tink's writer
    assert plaintext_size(len(ciphertext)) == size
    assert b"".join(decrypt_stream(KEY, DOC, random_chunks(ciphertext, random.Random(size)))) == plaintext
    read = RecordingReader(ciphertext)
    assert b"".join(decrypt_range(KEY, DOC, read=read, ciphertext_size=len(ciphertext),
                                  start=size // 3, end=size)) == plaintext[size // 3 :]
    with pytest.raises(DecryptionError):
        b"".join(decrypt_stream(KEY, b"document:other", [ciphertext]))


# ---- damage: one error, and nothing unauthenticated released ------------------------------------------

# 3 full segments and a partial last one.
DAMAGE_PT = random.Random(7).randbytes(FIRST_PT + 2 * PT + 1000)


@functools.cache
def damage_ct() -> bytes:
    return encrypt(DAMAGE_PT)


def flip(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x01
    return bytes(damaged)


def swap_segments(data: bytes, a: int, b: int) -> bytes:
    (sa, la), (sb, lb) = segment_ciphertext_span(a, len(data)), segment_ciphertext_span(b, len(data))
    assert la == lb == SEGMENT_SIZE
    damaged = bytearray(data)
    damaged[sa : sa + la], damaged[sb : sb + lb] = data[sb : sb + lb], data[sa : sa + la]
    return bytes(damaged)


def splice_from_other_object(data: bytes, index: int) -> bytes:
    other = encrypt(DAMAGE_PT)  # same key, same document, same plaintext: only salt and prefix differ
    start, length = segment_ciphertext_span(index, len(data))
    return data[:start] + other[start : start + length] + data[start + length :]


# name -> (damaged object, decrypting parameters, index of the first segment that cannot be authentic)
DAMAGES: dict[str, tuple[Callable[[], bytes], dict[str, bytes], int]] = {
    "wrong key": (damage_ct, {"key": OTHER_KEY}, 0),
    "wrong associated data": (damage_ct, {"ad": b"document:other"}, 0),
    "header length byte": (lambda: flip(damage_ct(), 0), {}, 0),
    "header salt": (lambda: flip(damage_ct(), 5), {}, 0),
    "header nonce prefix": (lambda: flip(damage_ct(), HEADER_SIZE - 1), {}, 0),
    "segment 0 body": (lambda: flip(damage_ct(), HEADER_SIZE + 10), {}, 0),
    "segment 1 body": (lambda: flip(damage_ct(), SEGMENT_SIZE + 12_345), {}, 1),
    "segment 0 tag": (lambda: flip(damage_ct(), SEGMENT_SIZE - 1), {}, 0),
    "last segment tag": (lambda: flip(damage_ct(), len(damage_ct()) - 3), {}, 3),
    "truncated at a segment boundary": (lambda: damage_ct()[: 3 * SEGMENT_SIZE], {}, 2),
    "truncated after the first segment": (lambda: damage_ct()[:SEGMENT_SIZE], {}, 0),
    "truncated mid-segment": (lambda: damage_ct()[: SEGMENT_SIZE + 5000], {}, 1),
    "truncated mid last segment": (lambda: damage_ct()[:-1], {}, 3),
    "truncated to the header": (lambda: damage_ct()[:HEADER_SIZE], {}, 0),
    "truncated inside the header": (lambda: damage_ct()[:HEADER_SIZE - 1], {}, 0),
    "one trailing byte": (lambda: damage_ct() + b"\x00", {}, 3),
    "trailing tag-sized bytes": (lambda: damage_ct() + bytes(16), {}, 3),
    "last segment repeated": (lambda: damage_ct() + damage_ct()[3 * SEGMENT_SIZE :], {}, 3),
    "segments 1 and 2 swapped": (lambda: swap_segments(damage_ct(), 1, 2), {}, 1),
    "segment from another object": (lambda: splice_from_other_object(damage_ct(), 1), {}, 1),
    "header from another object": (lambda: encrypt(DAMAGE_PT)[:HEADER_SIZE] + damage_ct()[HEADER_SIZE:], {}, 0),
    "empty input": (lambda: b"", {}, 0),
}


@pytest.mark.parametrize("chunk", [1 << 20, 65_536, 10 << 20])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damage_fails_with_one_error_and_releases_only_authentic_segments(damage: str, chunk: int) -> None:
    make, params, first_bad = DAMAGES[damage]
    damaged = make()
    released, error = decrypt_collecting(damaged, chunk=chunk, **params)
    assert type(error) is DecryptionError
    assert str(error) == "decryption failed"
    # What was released is authentic plaintext of segments before the first bad one, nothing more.
    assert DAMAGE_PT.startswith(released)
    assert len(released) <= segment_plaintext_offset(first_bad)
    if chunk == 65_536:  # small chunks: every authentic segment before the damage did come out
        assert len(released) == segment_plaintext_offset(first_bad)


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_tink_rejects_the_same_damage(damage: str) -> None:
    make, params, _ = DAMAGES[damage]
    with pytest.raises(tink.TinkError):
        tink_decrypt(make(), key=params.get("key", KEY), ad=params.get("ad", DOC))


def test_swapping_two_later_segments_fails() -> None:
    plaintext = os.urandom(FIRST_PT + 3 * PT + 10)  # segments 1, 2 and 3 are full
    ciphertext = encrypt(plaintext)
    for a, b in [(1, 2), (2, 3), (1, 3)]:
        released, error = decrypt_collecting(swap_segments(ciphertext, a, b))
        assert type(error) is DecryptionError
        assert plaintext.startswith(released) and len(released) <= segment_plaintext_offset(a)


def test_a_failed_decryptor_stays_failed() -> None:
    decryptor = StreamDecryptor(OTHER_KEY, DOC)
    with pytest.raises(DecryptionError):
        decryptor.update(damage_ct())
    with pytest.raises(DecryptionError):
        decryptor.update(b"")
    with pytest.raises(DecryptionError):
        decryptor.finalize()


def test_an_object_ending_on_a_full_segment_fails_with_anything_appended() -> None:
    plaintext = os.urandom(FIRST_PT + PT)  # two full segments, the second flagged last
    ciphertext = encrypt(plaintext)
    assert len(ciphertext) == 2 * SEGMENT_SIZE
    for extra in (b"\x00", bytes(16), bytes(17), ciphertext[SEGMENT_SIZE:]):
        released, error = decrypt_collecting(ciphertext + extra)
        assert type(error) is DecryptionError
        assert released == plaintext[:FIRST_PT]


# ---- whole objects of known size, read sequentially (downloads, exports) ----------------------------------


class PieceReader:
    """A file-like ``read(n)`` that answers at most ``piece`` bytes per call, as a socket may."""

    def __init__(self, data: bytes, piece: int | None = None) -> None:
        self.file, self.piece, self.calls = io.BytesIO(data), piece, 0

    def read(self, size: int) -> bytes:
        self.calls += 1
        return self.file.read(size if self.piece is None else min(size, self.piece))


def decrypt_object_collecting(ciphertext: bytes, *, size: int, piece: int | None = None, key: bytes = KEY,
                              ad: bytes = DOC) -> tuple[bytes, Exception | None]:
    released = bytearray()
    try:
        for segment in decrypt_object(key, ad, read=PieceReader(ciphertext, piece).read, ciphertext_size=size):
            released += segment
    except Exception as exc:  # noqa: BLE001  (the test inspects whatever was raised)
        return bytes(released), exc
    return bytes(released), None


@pytest.mark.parametrize("piece", [None, 65_536, 1000])
@pytest.mark.parametrize("size", INTEROP_SIZES)
def test_whole_objects_read_sequentially_decrypt_ours_and_tinks(size: int, piece: int | None) -> None:
    plaintext = random.Random(size).randbytes(size)
    for ciphertext in (encrypt(plaintext), tink_encrypt(plaintext)):
        reader = PieceReader(ciphertext, piece)
        segments = list(decrypt_object(KEY, DOC, read=reader.read, ciphertext_size=len(ciphertext)))
        assert b"".join(segments) == plaintext
        if piece is None:  # one read per segment, and one more to see that the object ends there
            assert reader.calls == len(segments) + 1


@pytest.mark.parametrize("piece", [None, 65_536])
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_whole_object_damage_fails_and_releases_only_authentic_segments(damage: str, piece: int | None) -> None:
    make, params, first_bad = DAMAGES[damage]
    # Knowing the size, a segment that ends exactly where the copy was cut is authenticated as the
    # non-final segment it is; the missing one after it fails.
    first_bad = {"truncated at a segment boundary": 3, "truncated after the first segment": 1}.get(damage, first_bad)
    # The size recorded when the object was written is the original one: the store's copy was damaged.
    released, error = decrypt_object_collecting(make(), size=len(damage_ct()), piece=piece, **params)
    assert type(error) is DecryptionError
    assert DAMAGE_PT.startswith(released)
    assert len(released) == segment_plaintext_offset(first_bad)


def test_whole_object_fails_when_the_recorded_size_is_wrong() -> None:
    ciphertext = damage_ct()
    for size in (len(ciphertext) - 1, len(ciphertext) + 1, len(ciphertext) - SEGMENT_SIZE,
                 len(ciphertext) + SEGMENT_SIZE):
        released, error = decrypt_object_collecting(ciphertext, size=size)
        assert type(error) is DecryptionError
        assert DAMAGE_PT.startswith(released) and len(released) < len(DAMAGE_PT)


def test_whole_object_impossible_size_fails_at_call_time() -> None:
    with pytest.raises(DecryptionError):
        decrypt_object(KEY, DOC, read=io.BytesIO(b"").read, ciphertext_size=HEADER_SIZE + TAG - 1)
    with pytest.raises(ValueError):
        decrypt_object(bytes(16), DOC, read=io.BytesIO(b"").read, ciphertext_size=HEADER_SIZE + TAG)


# ---- ranged reads --------------------------------------------------------------------------------

RANGE_PT = random.Random(11).randbytes(3 * (1 << 20) + 7)  # 4 segments, the last one partial


@functools.cache
def range_ct() -> bytes:
    return encrypt(RANGE_PT)


def read_range(start: int, end: int, data: bytes | None = None) -> tuple[bytes, RecordingReader]:
    data = range_ct() if data is None else data
    reader = RecordingReader(data)
    out = b"".join(decrypt_range(KEY, DOC, read=reader, ciphertext_size=len(data), start=start, end=end))
    return out, reader


def segment_of(position: int) -> int:
    return 0 if position < FIRST_PT else 1 + (position - FIRST_PT) // PT


def expected_reads(start: int, end: int, total: int) -> list[tuple[int, int]]:
    """One read per segment the range touches (the final one too if it reaches the end), header once."""
    size = plaintext_size(total)
    last = segment_of(max(size - 1, 0)) if end == size else segment_of(end - 1)
    first = segment_of(start)
    reads: list[tuple[int, int]] = []
    for index in range(first, last + 1):
        offset, length = segment_ciphertext_span(index, total)
        if index == 0:
            reads.append((0, HEADER_SIZE + length))  # header and segment 0 in one read
        else:
            if not reads:
                reads.append((0, HEADER_SIZE))  # the header, once
            reads.append((offset, length))
    return reads


def test_random_ranges_equal_the_plaintext_slice_and_read_only_needed_segments() -> None:
    rng = random.Random(3)
    size = len(RANGE_PT)
    boundaries = [segment_plaintext_offset(i) for i in range(5)] + [size]
    points = [p + d for p in boundaries for d in (-1, 0, 1) if 0 <= p + d <= size]
    ranges = [(rng.randrange(size + 1), rng.randrange(size + 1)) for _ in range(40)]
    ranges += [(rng.choice(points), rng.choice(points)) for _ in range(40)]
    ranges += [(0, size), (0, 1), (size - 1, size), (FIRST_PT - 1, FIRST_PT + 1), (FIRST_PT, FIRST_PT + PT)]
    for a, b in ranges:
        start, end = min(a, b), max(a, b)
        out, reader = read_range(start, end)
        assert out == RANGE_PT[start:end], (start, end)
        assert reader.calls == ([] if start == end else expected_reads(start, end, len(range_ct()))), (start, end)


def test_a_range_inside_one_segment_reads_the_header_and_that_segment_only() -> None:
    start = segment_plaintext_offset(2) + 100
    out, reader = read_range(start, start + 50)
    assert out == RANGE_PT[start : start + 50]
    assert reader.calls == [(0, HEADER_SIZE), (2 * SEGMENT_SIZE, SEGMENT_SIZE)]
    assert sum(length for _, length in reader.calls) == HEADER_SIZE + SEGMENT_SIZE


def test_ranges_are_lazy_and_one_segment_at_a_time() -> None:
    reader = RecordingReader(range_ct())
    pieces = decrypt_range(KEY, DOC, read=reader, ciphertext_size=len(range_ct()), start=10, end=len(RANGE_PT))
    assert reader.calls == []
    assert next(pieces) == RANGE_PT[10:FIRST_PT]
    assert reader.calls == [(0, SEGMENT_SIZE)]
    assert next(pieces) == RANGE_PT[FIRST_PT : FIRST_PT + PT]
    assert reader.calls[-1] == (SEGMENT_SIZE, SEGMENT_SIZE)


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 4), (0, len(RANGE_PT) + 1), (len(RANGE_PT) + 1, len(RANGE_PT) + 2)])
def test_invalid_ranges_are_value_errors_at_call_time(start: int, end: int) -> None:
    reader = RecordingReader(range_ct())
    with pytest.raises(ValueError):
        decrypt_range(KEY, DOC, read=reader, ciphertext_size=len(range_ct()), start=start, end=end)
    assert reader.calls == []


def test_empty_range_reads_nothing() -> None:
    out, reader = read_range(100, 100)
    assert out == b"" and reader.calls == []


def test_range_on_a_truncated_objects_last_segment_fails() -> None:
    truncated = range_ct()[: 3 * SEGMENT_SIZE]  # the final segment is gone
    last_start = segment_plaintext_offset(2)
    size = plaintext_size(len(truncated))
    with pytest.raises(DecryptionError):
        read_range(last_start + 10, size, data=truncated)
    with pytest.raises(DecryptionError):
        read_range(last_start, last_start + 1, data=truncated)
    # Segments before the damage are still authentic, and served (that is random access).
    assert read_range(5, 500, data=truncated)[0] == RANGE_PT[5:500]


def test_range_fails_on_any_mismatch() -> None:
    ct = range_ct()
    end = len(RANGE_PT)
    with pytest.raises(DecryptionError):  # wrong key
        b"".join(decrypt_range(OTHER_KEY, DOC, read=RecordingReader(ct), ciphertext_size=len(ct), start=0, end=10))
    with pytest.raises(DecryptionError):  # wrong document
        b"".join(decrypt_range(KEY, b"other", read=RecordingReader(ct), ciphertext_size=len(ct), start=0, end=10))
    with pytest.raises(DecryptionError):  # a flipped bit in a needed segment
        read_range(FIRST_PT + 5, FIRST_PT + 6, data=flip(ct, SEGMENT_SIZE + 77))
    with pytest.raises(DecryptionError):  # a flipped bit in the header
        read_range(FIRST_PT + 5, FIRST_PT + 6, data=flip(ct, 3))
    with pytest.raises(DecryptionError):  # trailing bytes: the final segment is no longer the last
        read_range(end - 5, end, data=ct + bytes(17))
    with pytest.raises(DecryptionError):  # swapped segments
        read_range(FIRST_PT + 5, FIRST_PT + 6, data=swap_segments(ct, 1, 2))
    with pytest.raises(DecryptionError):  # an impossible size, at call time
        decrypt_range(KEY, DOC, read=RecordingReader(ct), ciphertext_size=SEGMENT_SIZE + 3, start=0, end=0)
    with pytest.raises(DecryptionError):  # the storage returned too few bytes
        b"".join(decrypt_range(KEY, DOC, read=lambda offset, length: ct[offset : offset + length - 1],
                               ciphertext_size=len(ct), start=0, end=10))


def test_no_plaintext_of_a_damaged_segment_leaves_a_range() -> None:
    damaged = flip(range_ct(), 2 * SEGMENT_SIZE + 9)  # segment 2
    released: list[bytes] = []
    with pytest.raises(DecryptionError):
        for piece in decrypt_range(KEY, DOC, read=RecordingReader(damaged), ciphertext_size=len(damaged),
                                   start=0, end=len(RANGE_PT)):
            released.append(piece)
    assert b"".join(released) == RANGE_PT[: segment_plaintext_offset(2)]
