"""Streaming encryption of documents: vault.crypto.streaming against Tink's Python streaming AEAD.

Both implement the same format (AES256_GCM_HKDF_1MB, byte-compatible; the test suite proves it),
so this measures only speed and memory, in one run, on the same bytes, on this machine:

1. throughput: encrypt then decrypt SIZE MiB of random bytes, fed and read in 1 MiB chunks, with
   our module and with Tink (``tink`` from PyPI, a test dependency), best of REPEAT rounds;
   each side's output is checked against the other's plaintext (outside the timings);
2. memory: the peak RSS growth of a fresh process streaming an encrypted SIZE MiB file through
   our decryptor (and, separately, our encryptor) in 1 MiB chunks, and the tracemalloc peak of
   the same loop: it must stay near a couple of segments whatever SIZE is.

Usage: .venv/bin/python bench/crypto.py [--size-mib 256] [--repeat 5] [--chunk-kib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from vault.crypto.streaming import (
    SEGMENT_SIZE,
    StreamDecryptor,
    StreamEncryptor,
    ciphertext_size,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
)

MIB = 1 << 20
KEY = bytes(range(32))  # a benchmark key: the memory child process must share it
DOC = b"document:bench-0001"


def tink_streaming_aead(key: bytes):
    """Tink's StreamingAead over a keyset holding ``key`` as an AES256_GCM_HKDF_1MB key."""
    import tink
    from tink import secret_key_access, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2

    streaming_aead.register()
    params = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=SEGMENT_SIZE, derived_key_size=32, hkdf_hash_type=common_pb2.HashType.SHA256)
    key_proto = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(version=0, params=params, key_value=key)
    keyset = tink_pb2.Keyset(primary_key_id=1, key=[tink_pb2.Keyset.Key(
        key_data=tink_pb2.KeyData(type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                                  value=key_proto.SerializeToString(),
                                  key_material_type=tink_pb2.KeyData.SYMMETRIC),
        status=tink_pb2.ENABLED, key_id=1, output_prefix_type=tink_pb2.RAW)])
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


class _CountingSink(io.RawIOBase):
    """Where Tink writes its ciphertext: counted and dropped, as our side's output is."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)


class _KeepingSink(io.BytesIO):
    """Tink closes its destination when its stream closes: keep the bytes (untimed checks only)."""

    value = b""

    def close(self) -> None:
        if not self.closed:
            self.value = self.getvalue()
        super().close()


def chunks_of(data: memoryview, size: int) -> Iterator[memoryview]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# ---- throughput --------------------------------------------------------------------------------
# The timed loops do the same on both sides: plaintext handed over in CHUNK-sized writes, ciphertext
# read from an in-memory file in CHUNK-sized reads, output counted and dropped (as a pipeline to
# S3 or to an HTTP response would hand it on), so what differs is the implementation alone.


def ours_encrypt(plaintext: memoryview, chunk: int) -> int:
    return sum(len(piece) for piece in encrypt_stream(KEY, DOC, chunks_of(plaintext, chunk)))


def ours_decrypt(ciphertext: bytes, chunk: int) -> int:
    source = io.BytesIO(ciphertext)
    return sum(len(piece) for piece in decrypt_stream(KEY, DOC, iter(lambda: source.read(chunk), b"")))


def tink_encrypt(primitive, plaintext: memoryview, chunk: int) -> int:
    sink = _CountingSink()
    with primitive.new_encrypting_stream(sink, DOC) as stream:
        for piece in chunks_of(plaintext, chunk):
            stream.write(piece)
    return sink.count


def tink_decrypt(primitive, ciphertext: bytes, chunk: int) -> int:
    total = 0
    with primitive.new_decrypting_stream(io.BytesIO(ciphertext), DOC) as stream:
        while piece := stream.read(chunk):
            total += len(piece)
    return total


def check_interop(primitive, plaintext: memoryview, chunk: int) -> bytes:
    """Untimed: Tink decrypts ours and we decrypt Tink's, on the benchmark's bytes. Returns ours."""
    expected = hashlib.sha256(plaintext).digest()
    ours = b"".join(encrypt_stream(KEY, DOC, chunks_of(plaintext, chunk)))
    sink = _KeepingSink()
    with primitive.new_encrypting_stream(sink, DOC) as stream:
        stream.write(plaintext)
    theirs = sink.value
    assert len(ours) == len(theirs) == ciphertext_size(len(plaintext))
    digest = hashlib.sha256()
    with primitive.new_decrypting_stream(io.BytesIO(ours), DOC) as stream:
        while piece := stream.read(chunk):
            digest.update(piece)
    assert digest.digest() == expected, "Tink did not decrypt our object"
    digest = hashlib.sha256()
    for piece in decrypt_stream(KEY, DOC, chunks_of(memoryview(theirs), chunk)):
        digest.update(piece)
    assert digest.digest() == expected, "we did not decrypt Tink's object"
    return ours


def throughput(size: int, repeat: int, chunk: int) -> bytes:
    plaintext = memoryview(os.urandom(size))
    primitive = tink_streaming_aead(KEY)
    ciphertext = check_interop(primitive, plaintext, chunk)
    mb = size / 1e6
    print(f"throughput: {size // MIB} MiB, {chunk // 1024} KiB chunks, best of {repeat} "
          f"(MB/s = 10^6 plaintext bytes per second; interop checked both ways on these bytes)")
    expected_ct = ciphertext_size(size)
    runs = {
        "ours encrypt": (lambda: ours_encrypt(plaintext, chunk), expected_ct),
        "tink encrypt": (lambda: tink_encrypt(primitive, plaintext, chunk), expected_ct),
        "ours decrypt": (lambda: ours_decrypt(ciphertext, chunk), size),
        "tink decrypt": (lambda: tink_decrypt(primitive, ciphertext, chunk), size),
    }
    timings = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):  # rounds interleave both sides, so a noisy neighbour hits both alike
        for name, (run, result) in runs.items():
            started = time.perf_counter()
            assert run() == result, name
            timings[name] = min(timings[name], time.perf_counter() - started)
    print(f"  {'':10} {'ours':>10} {'tink':>10} {'ours/tink':>10}")
    for op in ("encrypt", "decrypt"):
        ours, theirs = timings[f"ours {op}"], timings[f"tink {op}"]
        print(f"  {op:10} {mb / ours:5.0f} MB/s {mb / theirs:5.0f} MB/s {theirs / ours:9.2f}x")
    return ciphertext


# ---- memory (in a fresh process, so the peak RSS is the streaming loop's own) ----------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def memory_child(mode: str, path: Path, size: int, chunk: int) -> None:
    """Stream ``path`` (ciphertext) through the decryptor, or ``size`` bytes through the encryptor.

    Prints the growth of the peak RSS over the RSS just before the loop, then the tracemalloc
    peak of the same loop run again (Python-level allocations: buffers, chunks, outputs).
    """
    block = os.urandom(chunk)

    def run() -> int:
        total = 0
        if mode == "decrypt":
            decryptor = StreamDecryptor(KEY, DOC)
            with open(path, "rb", buffering=0) as source:
                while data := source.read(chunk):
                    total += len(decryptor.update(data))
            total += len(decryptor.finalize())
        else:
            encryptor = StreamEncryptor(KEY, DOC)
            for _ in range(size // chunk):
                total += len(encryptor.update(block))
            total += len(encryptor.finalize())
        return total

    if _reset_peak_rss():
        baseline = _status_kib("VmRSS")
        how = "peak RSS - RSS before"
    else:  # no clear_refs: ru_maxrss growth, a lower bound if the process peaked earlier
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        how = "ru_maxrss growth"
    started = time.perf_counter()
    total = run()
    elapsed = time.perf_counter() - started
    peak_rss = _status_kib("VmHWM") if how.startswith("peak") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    run()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    length = path.stat().st_size if mode == "decrypt" else size // chunk * chunk
    expected = plaintext_size(length) if mode == "decrypt" else ciphertext_size(length)
    assert total == expected, (total, expected)
    plain = expected if mode == "decrypt" else length
    print(f"  {mode} {plain / MIB:6.1f} MiB in {chunk // 1024} KiB chunks: {how} = "
          f"{(peak_rss - baseline) / 1024:.1f} MiB (RSS before {baseline / 1024:.0f} MiB), "
          f"tracemalloc peak {traced_peak / MIB:.1f} MiB; {plain / 1e6 / elapsed:.0f} MB/s untraced")


def memory(ciphertext: bytes, size: int, chunk: int) -> None:
    print(f"memory: a fresh process per line, streaming through our module (segment = {SEGMENT_SIZE // MIB} MiB)")
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as folder:
        big, small = Path(folder) / "object.bin", Path(folder) / "small.bin"
        big.write_bytes(ciphertext)
        small.write_bytes(b"".join(encrypt_stream(KEY, DOC, [os.urandom(size // 16)])))
        for mode, path in (("decrypt", small), ("decrypt", big), ("encrypt", big)):
            subprocess.run([sys.executable, __file__, "--child", mode, str(path), "--size-mib", str(size // MIB),
                            "--chunk-kib", str(chunk // 1024)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size, chunk = args.size_mib * MIB, args.chunk_kib * 1024
    if args.child:
        memory_child(args.child[0], Path(args.child[1]), size, chunk)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    ciphertext = throughput(size, args.repeat, chunk)
    memory(ciphertext, size, chunk)


if __name__ == "__main__":
    main()
