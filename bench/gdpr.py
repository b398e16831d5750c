"""Citizen Vault's GDPR export and erasure on SeaweedFS (S3), on this machine.

In one run, with the real server (`vault serve --workers 1`), PostgreSQL and SeaweedFS on loopback:

1. export: a citizen with 1 GiB in 500 documents (random bytes starting with ``%PDF-1.7``, uploaded
   through POST /api/v1/documents; untimed) downloads the self-service archive
   (POST /account/data/export, the citizen's session and the csrf_token form field), streamed and
   discarded, against S3 GET alone of the same 500 stored objects (boto3, one GetObject after the
   other, streamed in 1 MiB chunks like the service), GET and export alternating in each round;
   target: export MB/s / GET MB/s >= 0.7. The server's RSS (its process and children) is sampled
   every 50 ms: peak during the exports minus idle <= 200 MB. The first export is untimed and
   checked byte for byte (every entry parsed from the stream, every document's CRC-32 and size
   against what was uploaded); the timed ones are checked by their central directory.
2. erasure: a citizen with 1,000 documents of 20 kB, erased by `vault gdpr erase --json` (a
   subprocess, the time includes the process start; the start-up cost is measured separately by
   running the same command again, which then only returns the first certificate); target under
   10 s. A second citizen with 1,000 documents is erased in this process through GdprService.erase
   built like the CLI builds it, with every S3 call counted and timed. Afterwards the bucket must
   hold no version of either citizen's objects. For scale, boto3 alone does the same S3 work on
   objects put for it: per key (a listing and a DeleteObjects per document), and batched.

The antivirus is off (VAULT_ANTIVIRUS=off): it only matters for seeding, which is not measured.

Usage: .venv/bin/python bench/gdpr.py [--rounds N] [--skip-export] [--skip-erase] [--keep]
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import zipfile
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import boto3
import httpx
import psycopg
import urllib3
from botocore.config import Config
from common import (
    STOPPABLE,
    Cpu,
    RssSampler,
    Server,
    run_cli,
    service_pgid,
    stop_everything,
    tool_version,
    vault_env,
)

from tests.services import free_port, start_postgres, start_seaweedfs

MB = 1_000_000  # every "MB" printed is 10^6 bytes
MiB = 1 << 20
GiB = 1 << 30
PDF_HEAD = b"%PDF-1.7\n"
SEED = 20240917
EXPORT_DOCS = 500
EXPORT_TOTAL = GiB  # plaintext bytes across the 500 documents (2,147,483 or 2,147,484 bytes each)
ERASE_DOCS = 1000
ERASE_DOC_SIZE = 20_000
RATIO_TARGET = 0.7
MEMORY_BUDGET = 200 * MB
ERASE_TARGET = 10.0  # seconds
SEED_CONCURRENCY = 4
SAMPLE_INTERVAL = 0.05
READ_CHUNK = MiB  # what the baseline and the export's client read per call
TAIL_KEEP = 4 * MiB  # bytes of the archive's end kept by the timed exports (central directory)
BUCKET = "citizen-vault-gdpr-bench"
PASSWORD = "un chat vert mange des prunes au banc"
CITIZENS = {  # role -> email
    "export": "bench-gdpr-export@example.org",
    "erase-cli": "bench-gdpr-erase-cli@example.org",
    "erase-inprocess": "bench-gdpr-erase-inprocess@example.org",
}
REQUEST_TIMEOUT = httpx.Timeout(600.0, connect=10.0)



# ---- processes -----------------------------------------------------------------------------------------


# ---- data ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One document to upload: its name, size and where its bytes come from in the random pool."""

    name: str
    size: int
    offset: int


class Pool:
    """A pool of seeded random bytes; a document is ``%PDF-1.7\\n`` then a slice of it."""

    def __init__(self, size: int) -> None:
        self.data = random.Random(SEED).randbytes(size)

    def plan(self, prefix: str, sizes: list[int]) -> list[Planned]:
        rng = random.Random(f"{SEED}-{prefix}")
        return [Planned(f"{prefix}-{i:04d}.pdf", size, rng.randrange(0, len(self.data) - size))
                for i, size in enumerate(sizes)]

    def body(self, doc: Planned) -> bytes:
        return PDF_HEAD + self.data[doc.offset:doc.offset + doc.size - len(PDF_HEAD)]


def export_sizes() -> list[int]:
    base, extra = divmod(EXPORT_TOTAL, EXPORT_DOCS)
    return [base + (1 if i < extra else 0) for i in range(EXPORT_DOCS)]


# ---- HTTP: a citizen's browser session -----------------------------------------------------------------------


class Browser:
    """A logged-in citizen: session and csrf cookies; one httpx client per seeding thread."""

    def __init__(self, base: str, email: str) -> None:
        self.base, self.email = base, email
        self.client = httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT, follow_redirects=False)
        self._pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10.0, read=600.0), retries=False)
        self.csrf = ""
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def login(self) -> None:
        page = self.client.get("/login")
        page.raise_for_status()
        token = None
        for tag in re.findall(r"<input\b[^>]*>", page.text):
            attrs = dict(re.findall(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"', tag))
            if attrs.get("name") == "csrf_token":
                token = html.unescape(attrs.get("value", ""))
        if not token:
            raise RuntimeError("no csrf_token field on /login")
        answer = self.client.post("/login", data={"email": self.email, "password": PASSWORD, "csrf_token": token})
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"login of {self.email} failed: HTTP {answer.status_code}")
        self.csrf = self.client.cookies.get("csrf") or ""
        if not self.csrf:
            raise RuntimeError("no csrf cookie after login")

    def _thread_client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(base_url=self.base, timeout=REQUEST_TIMEOUT, follow_redirects=False,
                                  cookies=self.client.cookies)
            self._local.client = client
            self._clients.append(client)
        return client

    def upload(self, body: bytes, name: str) -> dict[str, Any]:
        answer = self._thread_client().post("/api/v1/documents", content=body, headers={
            "Content-Type": "application/pdf", "X-CSRF-Token": self.csrf,
            "Content-Disposition": f'attachment; filename="{name}"'})
        if answer.status_code != 201:
            raise RuntimeError(f"upload of {name}: HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def export(self, sink: Callable[[bytes], None]) -> int:
        """POST /account/data/export, the archive streamed into ``sink``; returns the byte count.

        Read with urllib3 in READ_CHUNK reads: the client code under boto3's GET baseline, so both sides
        spend the same client CPU per byte (httpx spends about 1.4 times as much)."""
        n = 0
        cookies = "; ".join(f"{name}={value}" for name, value in self.client.cookies.items())
        answer = self._pool.request(
            "POST", f"{self.base}/account/data/export", body=urllib.parse.urlencode({"csrf_token": self.csrf}),
            headers={"Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"},
            preload_content=False, decode_content=False)
        try:
            if answer.status != 200:
                raise RuntimeError(f"export: HTTP {answer.status}: {answer.read()[:300]!r}")
            if answer.headers.get("content-type", "").split(";")[0] != "application/zip":
                raise RuntimeError(f"export: Content-Type {answer.headers.get('content-type')!r}")
            for piece in answer.stream(READ_CHUNK, decode_content=False):
                sink(piece)
                n += len(piece)
        finally:
            answer.release_conn()
        return n

    def close(self) -> None:
        self.client.close()
        for client in self._clients:
            client.close()


@dataclass
class Uploaded:
    id: str
    name: str
    size: int
    crc: int


def seed(browser: Browser, pool: Pool, planned: list[Planned], label: str) -> tuple[list[Uploaded], float]:
    """Upload the documents, SEED_CONCURRENCY at a time; returns them (with the CRC-32 of what was sent)."""
    done: list[Uploaded] = []
    lock = threading.Lock()
    started = time.perf_counter()
    last_print = [started]

    def one(doc: Planned) -> None:
        body = pool.body(doc)
        answer = browser.upload(body, doc.name)
        if answer["size"] != doc.size or answer["media_type"] != "application/pdf":
            raise RuntimeError(f"the server stored something else for {doc.name}: {answer}")
        item = Uploaded(answer["id"], answer["filename"], doc.size, zlib.crc32(body))
        with lock:
            done.append(item)
            now = time.perf_counter()
            if now - last_print[0] > 10:
                last_print[0] = now
                print(f"    {label}: {len(done)}/{len(planned)} documents", flush=True)

    # The first upload alone: it creates the citizen key, and concurrent first uploads race on that
    # insert (citizen_key_pkey unique violation, HTTP 500; DocumentService.citizen_key).
    one(planned[0])
    executor = ThreadPoolExecutor(max_workers=SEED_CONCURRENCY, thread_name_prefix="seed")
    try:
        futures = [executor.submit(one, doc) for doc in planned[1:]]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in finished:
            future.result()  # the first failure, if any
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown(wait=True)
    return done, time.perf_counter() - started


# ---- S3 --------------------------------------------------------------------------------------------------------


def s3_client(s3: Any) -> Any:
    """A client configured as the service's S3BlobStore configures its own."""
    return boto3.client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region, aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                      connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                      s3={"addressing_style": "path"}, max_pool_connections=32))


def list_keys(client: Any) -> dict[str, int]:
    """Every current object: key -> size."""
    out: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            out[item["Key"]] = item["Size"]
    return out


def list_versions(client: Any) -> list[tuple[str, str, bool]]:
    """Every version and delete marker in the bucket: (key, version id, is a delete marker)."""
    out: list[tuple[str, str, bool]] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        out += [(v["Key"], v["VersionId"], False) for v in page.get("Versions", [])]
        out += [(v["Key"], v["VersionId"], True) for v in page.get("DeleteMarkers", [])]
    return out


def s3_get_all_presigned(client: Any, http: urllib3.PoolManager, keys: list[str]) -> int:
    """The service's own read path (S3BlobStore.open_blob): a presigned GetObject per object, sent by
    urllib3, read in 1 MiB chunks and discarded. A reference line, not the target's baseline."""
    n = 0
    for key in keys:
        url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=60)
        answer = http.request("GET", url, preload_content=False, decode_content=False)
        try:
            if answer.status != 200:
                raise RuntimeError(f"presigned GET: HTTP {answer.status}")
            for piece in answer.stream(READ_CHUNK, decode_content=False):
                n += len(piece)
        finally:
            answer.release_conn()
    return n


def s3_get_all(client: Any, keys: list[str]) -> int:
    """One GetObject after the other, each streamed in 1 MiB chunks and discarded (as the service reads)."""
    n = 0
    for key in keys:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        try:
            for piece in body.iter_chunks(READ_CHUNK):
                n += len(piece)
        finally:
            body.close()
    return n


# ---- the archive -------------------------------------------------------------------------------------------


class TailFile(io.RawIOBase):
    """A read-only, seekable view of a file of ``total`` bytes of which only the last ones are known:
    enough for zipfile to read the end records and the central directory (it reads nothing else
    unless a member is opened)."""

    def __init__(self, total: int, tail: bytes) -> None:
        self.total, self.tail, self.start, self.pos = total, tail, total - len(tail), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.total + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if self.pos < self.start:
            raise OSError(f"read at {self.pos}, before the kept tail (from {self.start})")
        end = self.total if n is None or n < 0 else min(self.total, self.pos + n)
        out = self.tail[self.pos - self.start:end - self.start]
        self.pos = end
        return out


@dataclass
class ArchiveCheck:
    entries: int
    documents: int
    document_bytes: int
    other_bytes: int  # uncompressed bytes of the JSON and text entries


def check_central_directory(total: int, tail: bytes, expected: dict[str, Uploaded]) -> tuple[ArchiveCheck, list]:
    """Read the archive's central directory from its last bytes; check it lists every uploaded
    document (size, CRC-32) and nothing else under documents/, and that the entries fill the file."""
    with zipfile.ZipFile(TailFile(total, tail)) as archive:
        infos = archive.infolist()
        start_dir = archive.start_dir
    names = {i.filename for i in infos}
    for wanted in ("LISEZ-MOI.txt", "compte.json", "documents.json", "applications.json", "sessions.json",
                   "journal-des-acces.json", "demandes.json"):
        if wanted not in names:
            raise RuntimeError(f"archive: no {wanted}")
    documents = [i for i in infos if i.filename.startswith("documents/")]
    seen = set()
    for info in documents:
        doc_id = info.filename[len("documents/"):][:36]
        want = expected.get(doc_id)
        if want is None or info.filename != f"documents/{doc_id}-{want.name}":
            raise RuntimeError(f"archive: unexpected entry {info.filename}")
        if info.file_size != want.size or info.compress_size != want.size or want.crc != info.CRC:
            raise RuntimeError(f"archive: {info.filename} has size {info.file_size}, CRC {info.CRC:08x};"
                               f" uploaded {want.size} bytes, CRC {want.crc:08x}")
        seen.add(doc_id)
    if seen != set(expected):
        raise RuntimeError(f"archive: {len(expected) - len(seen)} documents missing")
    # Entries back to back (local header, data, 24-byte ZIP64 data descriptor), then the directory.
    last = max(infos, key=lambda i: i.header_offset)
    local_extra = 20  # the ZIP64 extra field zipfile writes in local headers when force_zip64
    end_of_last = last.header_offset + 30 + len(last.filename.encode()) + local_extra + last.compress_size + 24
    if end_of_last != start_dir:
        raise RuntimeError(f"archive: the last entry ends at {end_of_last}, the central directory starts at {start_dir}")
    return ArchiveCheck(len(infos), len(documents), sum(i.file_size for i in documents),
                        sum(i.file_size for i in infos if not i.filename.startswith("documents/"))), infos


class StreamParser:
    """Parses the archive as it arrives (local headers, data, data descriptors) and checks every
    entry: documents by size and CRC-32 against what was uploaded, deflated entries by inflating
    them; then hands the central directory to check_central_directory."""

    def __init__(self, expected: dict[str, Uploaded]) -> None:
        self.expected = expected
        self.buffer = bytearray()
        self.offset = 0  # archive offset of self.buffer[0]
        self.local: dict[str, tuple[int, int, int]] = {}  # name -> (header offset, size, crc)
        self.done = False  # the entries are read; what follows is the central directory
        self.gen = self._parse()
        next(self.gen)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.done:
            try:
                self.gen.send(None)
            except StopIteration:
                self.done = True

    def _need(self, n: int):
        while len(self.buffer) < n:
            yield

    def _take(self, n: int) -> bytes:
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        self.offset += n
        return out

    def _parse(self):
        yield
        while True:
            yield from self._need(4)
            if bytes(self.buffer[:4]) != b"PK\x03\x04":
                return  # the central directory: finish() takes it from here
            header_offset = self.offset
            yield from self._need(30)
            (_sig, _ver, _os, flags, method, _t, _d, _crc, _cs, _us, name_len,
             extra_len) = zipfile.struct.unpack(zipfile.structFileHeader, self._take(30))
            yield from self._need(name_len + extra_len)
            name = self._take(name_len).decode("utf-8" if flags & 0x800 else "cp437")
            self._take(extra_len)
            if not flags & 0x08:
                raise RuntimeError(f"archive: {name} has no data descriptor")
            crc, size = 0, 0
            if method == zipfile.ZIP_STORED:
                want = self.expected.get(name[len("documents/"):][:36]) if name.startswith("documents/") else None
                if want is None:
                    raise RuntimeError(f"archive: unexpected stored entry {name}")
                left = want.size
                while left:
                    yield from self._need(1)
                    piece = self._take(min(left, len(self.buffer)))
                    crc = zlib.crc32(piece, crc)
                    left -= len(piece)
                size = want.size
                if crc != want.crc:
                    raise RuntimeError(f"archive: {name}: CRC {crc:08x}, uploaded {want.crc:08x}")
            elif method == zipfile.ZIP_DEFLATED:
                inflater = zlib.decompressobj(-15)
                while not inflater.eof:
                    yield from self._need(1)
                    piece = bytes(self.buffer)
                    out = inflater.decompress(piece)
                    crc, size = zlib.crc32(out, crc), size + len(out)
                    self._take(len(piece) - len(inflater.unused_data))
            else:
                raise RuntimeError(f"archive: {name}: compression method {method}")
            yield from self._need(24)
            sig, dd_crc, _csize, dd_size = zipfile.struct.unpack("<LLQQ", self._take(24))
            if sig != 0x08074B50 or dd_crc != crc or dd_size != size:
                raise RuntimeError(f"archive: {name}: data descriptor {sig:08x}/{dd_crc:08x}/{dd_size}, "
                                   f"read CRC {crc:08x}, {size} bytes")
            self.local[name] = (header_offset, size, crc)

    def finish(self, total: int) -> ArchiveCheck:
        if not self.done:
            raise RuntimeError("archive: the stream ended inside an entry")
        check, infos = check_central_directory(total, bytes(self.buffer), self.expected)
        central = {i.filename: (i.header_offset, i.file_size, i.CRC) for i in infos}
        if central != self.local:
            raise RuntimeError("archive: the central directory differs from the entries read")
        return check


class TailKeeper:
    """Keeps the last TAIL_KEEP bytes of a stream (cheap: what the timed exports do)."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.kept = 0

    def __call__(self, data: bytes) -> None:
        self.chunks.append(data)
        self.kept += len(data)
        while self.kept - len(self.chunks[0]) >= TAIL_KEEP:
            self.kept -= len(self.chunks.popleft())

    def tail(self) -> bytes:
        return b"".join(self.chunks)


# ---- the run -------------------------------------------------------------------------------------------


@dataclass
class Setup:
    base: Path
    postgres: Any
    s3: Any
    server: Server
    env: dict[str, str]
    base_url: str
    citizens: dict[str, str]  # role -> citizen id
    s3_client: Any
    cpu: Cpu
    db_name: str


def start_everything(base: Path, roles: list[str]) -> Setup:
    postgres = start_postgres(base / "postgres")
    STOPPABLE.append(postgres)
    s3 = start_seaweedfs(base / "seaweedfs")
    STOPPABLE.append(s3)
    client = s3_client(s3)
    # The bucket as S3BlobStore.ensure_bucket makes it (versioning on), made now so /readyz answers.
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir = base / "vault-data"
    data_dir.mkdir()
    db_name = "vault_gdpr_bench"
    env = vault_env(database_url=postgres.create_database(db_name), issuer=base_url, data_dir=data_dir, s3=s3,
                    bucket=BUCKET, antivirus="off", VAULT_QUOTA_MB="4096", VAULT_QUOTA_DOCUMENTS="2000")
    run_cli(["db", "upgrade"], env)
    citizens = {}
    for role in roles:
        out = run_cli(["citizen", "create", "--email", CITIZENS[role], "--given-name", "Anne", "--family-name",
                       "Bench", "--birthdate", "1980-01-01", "--gender", "female", "--birthplace", "75056",
                       "--birthcountry", "99100", "--password-stdin", "--verified", "--json"], env,
                      stdin=PASSWORD + "\n")
        citizens[role] = json.loads(out)["id"]
    server = Server("citizen-vault", [sys.executable, "-m", "vault.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(port), "--workers", "1"], env=env, log=base / "citizen-vault.log")
    deadline = time.monotonic() + 90
    while True:
        if not server.alive():
            raise RuntimeError(f"the server exited during startup:\n{server.tail()}")
        try:
            if httpx.get(base_url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready after 90 s:\n{server.tail()}")
        time.sleep(0.2)
    cpu = Cpu({"server": server.pid, "seaweedfs": service_pgid(s3), "postgres": service_pgid(postgres)})
    return Setup(base, postgres, s3, server, env, base_url, citizens, client, cpu, db_name)


def db_query(setup: Setup, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(host="127.0.0.1", port=setup.postgres.port, user="postgres", dbname=setup.db_name,
                         connect_timeout=5) as conn:
        return conn.execute(query, params).fetchall()


def blob_keys_of(setup: Setup, citizen_id: str) -> dict[str, int]:
    """blob_key -> ciphertext_size of a citizen's documents, from the database."""
    return dict(db_query(setup, "SELECT blob_key, ciphertext_size FROM document WHERE owner_id = %s", citizen_id))


@dataclass
class Timed:
    seconds: float
    nbytes: int
    cpu: dict[str, float] = field(default_factory=dict)
    peak: int = 0
    samples: int = 0

    @property
    def mbps(self) -> float:
        return self.nbytes / MB / self.seconds


def cpu_text(t: Timed) -> str:
    parts = [f"{name} {t.cpu.get(name, 0.0):.1f}" for name in ("server", "seaweedfs", "postgres", "client")]
    total = sum(t.cpu.values())
    return f"CPU s: {', '.join(parts)} (all {total:.1f} in {t.seconds:.1f} s = {total / t.seconds:.2f} cores)"


@dataclass
class ExportResults:
    seed_seconds: float
    plaintext: int
    ciphertext: int
    idle: int
    verify: Timed
    verify_check: ArchiveCheck
    zip_bytes: int
    gets: list[Timed]
    exports: list[Timed]
    after: int
    presigned: list[Timed]


def export_part(setup: Setup, pool: Pool, rounds: int, sampler: RssSampler) -> ExportResults:
    browser = Browser(setup.base_url, CITIZENS["export"])
    try:
        browser.login()
        citizen = setup.citizens["export"]
        print(f"  seeding {EXPORT_DOCS} documents, {EXPORT_TOTAL:,} bytes, {SEED_CONCURRENCY} at a time (untimed) ...",
              flush=True)
        uploaded, seed_seconds = seed(browser, pool, pool.plan("export", export_sizes()), "export")
        expected = {u.id: u for u in uploaded}
        plaintext = sum(u.size for u in uploaded)
        print(f"    {len(uploaded)} documents in {seed_seconds:.1f} s ({plaintext / MB / seed_seconds:.0f} MB/s)",
              flush=True)
        # The objects to GET: the bucket's listing (nothing else is in it yet), checked against the rows.
        listed = list_keys(setup.s3_client)
        rows = blob_keys_of(setup, citizen)
        if listed != rows:
            raise RuntimeError(f"the bucket lists {len(listed)} objects, the database {len(rows)} documents"
                               " (or their sizes differ)")
        keys = sorted(listed)
        ciphertext = sum(listed.values())
        time.sleep(2.0)
        idle = sampler.idle(3.0)
        print(f"  server idle RSS {idle / MB:.1f} MB; untimed export, parsed and checked entry by entry ...",
              flush=True)

        parser = StreamParser(expected)
        sampler.start_window()
        before, started = setup.cpu.now(), time.perf_counter()
        zip_bytes = browser.export(parser.feed)
        verify = Timed(time.perf_counter() - started, plaintext, Cpu.delta(before, setup.cpu.now()))
        verify.peak, verify.samples = sampler.window()
        check = parser.finish(zip_bytes)
        print(f"    {zip_bytes:,} bytes, {check.entries} entries, {check.documents} documents"
              f" ({check.document_bytes:,} bytes) all as uploaded; {verify.seconds:.1f} s, peak RSS"
              f" {verify.peak / MB:.1f} MB", flush=True)

        gets: list[Timed] = []
        exports: list[Timed] = []
        presigned: list[Timed] = []
        http = urllib3.PoolManager(retries=False)
        for rnd in range(1, rounds + 1):
            time.sleep(1.0)
            before, started = setup.cpu.now(), time.perf_counter()
            got = s3_get_all(setup.s3_client, keys)
            gets.append(Timed(time.perf_counter() - started, got, Cpu.delta(before, setup.cpu.now())))
            if got != ciphertext:
                raise RuntimeError(f"S3 GET: {got} bytes, listed {ciphertext}")
            time.sleep(1.0)
            before, started = setup.cpu.now(), time.perf_counter()
            got = s3_get_all_presigned(setup.s3_client, http, keys)
            presigned.append(Timed(time.perf_counter() - started, got, Cpu.delta(before, setup.cpu.now())))
            if got != ciphertext:
                raise RuntimeError(f"presigned S3 GET: {got} bytes, listed {ciphertext}")
            time.sleep(1.0)
            keeper = TailKeeper()
            sampler.start_window()
            before, started = setup.cpu.now(), time.perf_counter()
            n = browser.export(keeper)
            t = Timed(time.perf_counter() - started, plaintext, Cpu.delta(before, setup.cpu.now()))
            t.peak, t.samples = sampler.window()
            exports.append(t)
            # (not the first export's size: each export adds a request to demandes.json)
            check_central_directory(n, keeper.tail(), expected)
            print(f"  round {rnd}/{rounds}: S3 GET {gets[-1].mbps:.1f} MB/s ({gets[-1].seconds:.1f} s),"
                  f" presigned {presigned[-1].mbps:.1f} MB/s, export"
                  f" {t.mbps:.1f} MB/s ({t.seconds:.1f} s), peak RSS {t.peak / MB:.1f} MB", flush=True)
        time.sleep(2.0)
        after = sampler.idle(2.0)
        return ExportResults(seed_seconds, plaintext, ciphertext, idle, verify, check, zip_bytes, gets, exports, after,
                             presigned)
    finally:
        browser.close()


@dataclass
class EraseResults:
    seed_seconds: float
    cli_seconds: float
    cli_again_seconds: float
    certificate: dict[str, Any]
    cli_keys: int
    cli_left: int
    inproc_seconds: float
    inproc_delete_seconds: float
    inproc_calls: Counter
    inproc_call_seconds: dict[str, float]
    inproc_certificate: dict[str, Any]
    inproc_keys: int
    inproc_left: int
    batched: dict[str, float]


def jws_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def left_over(client: Any, keys: set[str]) -> int:
    """Versions and delete markers of ``keys`` still in the bucket (one listing of every version)."""
    return sum(1 for key, _v, _m in list_versions(client) if key in keys)


def erase_in_process(setup: Setup, citizen_id: str) -> tuple[float, float, Counter, dict[str, float], str]:
    """GdprService.erase from the composition root, as `vault gdpr erase` gets it, with every S3 call
    of the blob store counted and timed (the store's _call wrapped on this instance)."""
    from sqlmodel import Session

    from vault.gdpr.service import Staff
    from vault.services import build_services
    from vault.settings import load_settings

    saved = {k: v for k, v in os.environ.items() if k.startswith("VAULT_")}
    try:
        for k in saved:
            del os.environ[k]
        os.environ.update({k: v for k, v in setup.env.items() if k.startswith("VAULT_")})
        settings = load_settings()
    finally:
        for k in [k for k in os.environ if k.startswith("VAULT_")]:
            del os.environ[k]
        os.environ.update(saved)
    services = build_services(settings)
    store, gdpr, engine = services.blob_store, services.gdpr, services.engine

    calls: Counter = Counter()
    call_seconds: dict[str, float] = defaultdict(float)
    delete_seconds = [0.0]
    real_call = store._call

    def counted_call(method: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_call(method, **kwargs)
        finally:
            calls[method] += 1
            call_seconds[method] += time.perf_counter() - started

    def timed(real: Callable[..., int]) -> Callable[..., int]:
        def wrapper(*args: Any) -> int:
            started = time.perf_counter()
            depth[0] += 1
            try:
                return real(*args)
            finally:
                depth[0] -= 1
                if depth[0] == 0:  # delete_many may call delete: count the outer call only
                    delete_seconds[0] += time.perf_counter() - started
        return wrapper

    depth = [0]
    store._call = counted_call
    # The blob deletion, whichever entry point erase() uses (delete per key, or delete_many).
    for name in ("delete", "delete_many"):
        if hasattr(store, name):
            setattr(store, name, timed(getattr(store, name)))
    try:
        with Session(engine) as db:
            started = time.perf_counter()
            certificate = gdpr.erase(db, citizen_id=uuid.UUID(citizen_id), reason="bench",
                                     by=Staff("system:bench", "bench/gdpr.py"))
            seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    return seconds, delete_seconds[0], calls, dict(call_seconds), certificate


def batched_reference(setup: Setup, pool: Pool) -> dict[str, float]:
    """The erasure's S3 work done by boto3 alone, on objects put for it (untimed; 20 kB, random keys
    without a common prefix, like the service's before they had a per-citizen prefix), two ways:

    - per key (what S3BlobStore.delete does for one key): ListObjectVersions, then DeleteObjects of
      that key's versions, key after key, on 1,000 objects;
    - batched, on 1,000 other objects: ListObjectVersions per key (the version ids are needed and the
      keys share no prefix) one after the other, then again from 16 threads, then one DeleteObjects
      for all the versions (S3's limit is 1,000 per call)."""
    client = setup.s3_client
    per_key = [secrets.token_hex(16) for _ in range(ERASE_DOCS)]
    batched = [secrets.token_hex(16) for _ in range(ERASE_DOCS)]
    body = pool.data[:ERASE_DOC_SIZE]

    def put(key: str) -> None:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)

    def versions(key: str) -> list[dict[str, str]]:
        page = client.list_object_versions(Bucket=BUCKET, Prefix=key)
        if page.get("IsTruncated"):
            raise RuntimeError(f"{key}: more versions than one page")
        return [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]

    def delete(targets: list[dict[str, str]]) -> None:
        for i in range(0, len(targets), 1000):
            answer = client.delete_objects(Bucket=BUCKET, Delete={"Objects": targets[i:i + 1000], "Quiet": True})
            if answer.get("Errors"):
                raise RuntimeError(f"delete_objects: {answer['Errors'][:3]}")

    with ThreadPoolExecutor(max_workers=SEED_CONCURRENCY) as executor:
        list(executor.map(put, per_key + batched))
    time.sleep(1.0)
    out: dict[str, float] = {}
    started = time.perf_counter()
    for key in per_key:
        delete(versions(key))
    out["per_key"] = time.perf_counter() - started
    started = time.perf_counter()
    targets = [v for key in batched for v in versions(key)]
    out["list_sequential"] = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as executor:
        again = [v for found in executor.map(versions, batched) for v in found]
    out["list_16_threads"] = time.perf_counter() - started
    if sorted(map(str, again)) != sorted(map(str, targets)):
        raise RuntimeError("the concurrent listing found other versions")
    started = time.perf_counter()
    delete(targets)
    out["delete_batched"] = time.perf_counter() - started
    out["versions"] = len(targets)
    started = time.perf_counter()
    listed = list_versions(client)
    out["list_bucket"] = time.perf_counter() - started
    out["bucket_versions"] = len(listed)
    gone = set(per_key) | set(batched)
    out["left"] = sum(1 for key, _v, _m in listed if key in gone)
    return out


def erase_part(setup: Setup, pool: Pool, do_inprocess: bool) -> EraseResults:
    roles = ["erase-cli"] + (["erase-inprocess"] if do_inprocess else [])
    seed_seconds = 0.0
    for role in roles:
        browser = Browser(setup.base_url, CITIZENS[role])
        try:
            browser.login()
            print(f"  seeding {ERASE_DOCS} documents of {ERASE_DOC_SIZE:,} bytes for '{role}' (untimed) ...",
                  flush=True)
            uploaded, seconds = seed(browser, pool, pool.plan(role, [ERASE_DOC_SIZE] * ERASE_DOCS), role)
            seed_seconds += seconds
            print(f"    {len(uploaded)} documents in {seconds:.1f} s ({len(uploaded) / seconds:.0f} per s)", flush=True)
        finally:
            browser.close()
    keys = {role: set(blob_keys_of(setup, setup.citizens[role])) for role in roles}
    listed = list_keys(setup.s3_client)
    for role in roles:
        if len(keys[role]) != ERASE_DOCS or not keys[role] <= set(listed):
            raise RuntimeError(f"{role}: {len(keys[role])} documents in the database, not all in the bucket")
    time.sleep(2.0)

    print("  erasing 'erase-cli' with `vault gdpr erase --json` (timed, process start included) ...", flush=True)
    args = ["gdpr", "erase", "--citizen", setup.citizens["erase-cli"], "--reason", "bench", "--json"]
    started = time.perf_counter()
    out = run_cli(args, setup.env)
    cli_seconds = time.perf_counter() - started
    certificate = jws_claims(json.loads(out)["certificate"])
    print(f"    {cli_seconds:.2f} s", flush=True)
    started = time.perf_counter()
    again = run_cli(args, setup.env)
    cli_again_seconds = time.perf_counter() - started
    if json.loads(again)["certificate"] != json.loads(out)["certificate"]:
        raise RuntimeError("the second `gdpr erase` returned another certificate")
    cli_left = left_over(setup.s3_client, keys["erase-cli"])

    inproc: tuple = (0.0, 0.0, Counter(), {}, "")
    inproc_left = 0
    if do_inprocess:
        print("  erasing 'erase-inprocess' through GdprService.erase in this process, S3 calls counted ...",
              flush=True)
        inproc = erase_in_process(setup, setup.citizens["erase-inprocess"])
        print(f"    {inproc[0]:.2f} s", flush=True)
        inproc_left = left_over(setup.s3_client, keys["erase-inprocess"])
    print("  reference: the same S3 work with batched deletes, boto3 alone ...", flush=True)
    batched = batched_reference(setup, pool)
    return EraseResults(seed_seconds, cli_seconds, cli_again_seconds, certificate, len(keys["erase-cli"]), cli_left,
                        inproc[0], inproc[1], inproc[2], inproc[3], jws_claims(inproc[4]) if inproc[4] else {},
                        len(keys.get("erase-inprocess", ())), inproc_left, batched)


# ---- report ---------------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def environment(setup: Setup) -> list[str]:
    import botocore
    import uvicorn

    weed = Path(sys.executable).parent / "weed"
    loops = []
    for module in ("uvloop", "httptools"):
        try:
            loops.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = "?"
    try:
        pg = db_query(setup, "SHOW server_version")[0][0]
    except Exception:
        pass
    return [
        f"machine: {os.cpu_count()} cores ({cpu_model}), {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / GiB:.0f}"
        f" GiB RAM, {platform.system()} {platform.release()}; the server, SeaweedFS, PostgreSQL and this client"
        " share these cores",
        f"python {platform.python_version()}; uvicorn {uvicorn.__version__} ({', '.join(loops) or 'pure Python'});"
        f" boto3 {boto3.__version__} / botocore {botocore.__version__}; httpx {httpx.__version__}",
        f"SeaweedFS {tool_version([str(weed), 'version']) if weed.exists() else '?'} (weed server -s3, one node,"
        f" tests/services.py; versioned bucket); PostgreSQL {pg} (tests/services.py: fsync off)",
        "server: `vault serve --workers 1`, VAULT_STORAGE_BACKEND=s3, VAULT_ANTIVIRUS=off (seeding speed only;"
        " export and erasure never call the antivirus), VAULT_QUOTA_MB=4096, VAULT_QUOTA_DOCUMENTS=2000,"
        " development profile, loopback only",
    ]


def report(setup: Setup, load_before: float, export: ExportResults | None, erase: EraseResults | None) -> None:
    print()
    print("Citizen Vault GDPR export and erasure (MB = 10^6 bytes, MB/s = 10^6 bytes/s)")
    for line in environment(setup):
        print("  " + line)
    print(f"  load average (1 min) before the run: {load_before:.2f}, now: {os.getloadavg()[0]:.2f}"
          " (anything else running takes CPU from the servers)")
    if export is not None:
        e = export
        print()
        print(f"export: {EXPORT_DOCS} documents, {e.plaintext:,} bytes of plaintext ({e.ciphertext:,} bytes stored:"
              f" ciphertext, +{(e.ciphertext - e.plaintext) / e.plaintext * 100:.3f}%); archive {e.zip_bytes:,} bytes")
        print("  S3 GET alone: each of the 500 stored objects (keys from the bucket listing, checked against the"
              " database), one GetObject after the other, streamed in 1 MiB chunks and discarded; MB/s over the"
              " ciphertext bytes fetched")
        print("  export: POST /account/data/export (citizen session + csrf_token), the ZIP streamed and discarded"
              " (its last 4 MiB kept: central directory checked against the uploads); MB/s over the plaintext"
              " document bytes exported (the archive adds"
              f" {(e.zip_bytes - e.plaintext):,} bytes of headers, JSON and directory)")
        print(f"  seeding (untimed): {e.seed_seconds:.1f} s through POST /api/v1/documents, {SEED_CONCURRENCY} at a time")
        print(f"  untimed first export, parsed from the stream: {e.verify_check.entries} entries, every document's"
              f" size and CRC-32 as uploaded, JSON entries inflated ({e.verify_check.other_bytes:,} bytes);"
              f" {e.verify.mbps:.1f} MB/s while parsing")
        print(f"  {len(e.gets)} rounds, GET then export in each (MB/s, seconds):")
        for i, (g, x) in enumerate(zip(e.gets, e.exports, strict=True), start=1):
            print(f"    round {i}: S3 GET {g.mbps:6.1f} ({g.seconds:5.1f} s)   export {x.mbps:6.1f} ({x.seconds:5.1f} s)"
                  f"   ratio {x.mbps / g.mbps:.2f}")
        best_get, best_exp = max(e.gets, key=lambda t: t.mbps), max(e.exports, key=lambda t: t.mbps)
        med_get = statistics.median(t.mbps for t in e.gets)
        med_exp = statistics.median(t.mbps for t in e.exports)
        ratio = best_exp.mbps / best_get.mbps
        pair_ratios = [x.mbps / g.mbps for g, x in zip(e.gets, e.exports, strict=True)]
        print(f"    where the CPU went (best runs): S3 GET {cpu_text(best_get)}")
        print(f"    {'':<32}export {cpu_text(best_exp)}")
        print(f"  export / S3 GET (best of each) = {best_exp.mbps:.1f} / {best_get.mbps:.1f} = {ratio:.3f}"
              f"   target >= {RATIO_TARGET}: {verdict(ratio >= RATIO_TARGET)}")
        print(f"  (medians {med_exp:.1f} / {med_get:.1f} = {med_exp / med_get:.2f}; per round"
              f" {', '.join(f'{r:.2f}' for r in pair_ratios)}; in time: GET {best_get.seconds:.1f} s for"
              f" {e.ciphertext / MB:.0f} MB vs export {best_exp.seconds:.1f} s for {e.plaintext / MB:.0f} MB)")
        best_pre = max(e.presigned, key=lambda t: t.mbps)
        print(f"  (reference, not the target's baseline) S3 GET the way the service reads, a presigned GetObject per"
              f" object sent by urllib3: best {best_pre.mbps:.1f} MB/s [" +
              " ".join(f"{t.mbps:.0f}" for t in e.presigned) + f"]; {cpu_text(best_pre)};"
              f" export / that = {best_exp.mbps / best_pre.mbps:.2f}")
        peak = max([e.verify.peak] + [t.peak for t in e.exports])
        print(f"  server memory: VmRSS of the server process and its children, every {SAMPLE_INTERVAL * 1000:.0f} ms"
              f" ({sum(t.samples for t in e.exports) + e.verify.samples} samples during the exports)")
        print(f"    idle {e.idle / MB:.1f} MB (median over 3 s, after seeding, before the first export);"
              f" peak per export: {e.verify.peak / MB:.1f} (untimed) " +
              " ".join(f"{t.peak / MB:.1f}" for t in e.exports) + " MB")
        print(f"    peak {peak / MB:.1f} MB - idle {e.idle / MB:.1f} MB = {(peak - e.idle) / MB:+.1f} MB"
              f"   target <= {MEMORY_BUDGET / MB:.0f}: {verdict(peak - e.idle <= MEMORY_BUDGET)}")
        print(f"    idle after the exports: {e.after / MB:.1f} MB ({(e.after - e.idle) / MB:+.1f} MB)")
    if erase is not None:
        r = erase
        print()
        print(f"erasure: a citizen with {ERASE_DOCS} documents of {ERASE_DOC_SIZE:,} bytes (one object version each),"
              " seeded through the API (untimed"
              f", {r.seed_seconds:.1f} s for all the erasure citizens)")
        cert = r.certificate.get("destroyed", {})
        print(f"  `vault gdpr erase --json`: {r.cli_seconds:.2f} s wall, process start included"
              f"   target < {ERASE_TARGET:.0f} s: {verdict(r.cli_seconds < ERASE_TARGET)}")
        print(f"    the same command again (start-up, settings, DB, returns the first certificate; no S3 deletes):"
              f" {r.cli_again_seconds:.2f} s, so about {r.cli_seconds - r.cli_again_seconds:.2f} s were the erasure")
        print(f"    certificate: {cert.get('documents')} documents, {cert.get('object_versions')} object versions"
              f" destroyed, citizen key destroyed: {cert.get('citizen_key')}; left in the bucket afterwards"
              f" (ListObjectVersions of the whole bucket): {r.cli_left} versions or delete markers of its"
              f" {r.cli_keys} keys   {verdict(r.cli_left == 0 and cert.get('object_versions') == r.cli_keys)}")
        if r.inproc_seconds:
            total_calls = sum(r.inproc_calls.values())
            s3_time = sum(r.inproc_call_seconds.values())
            icert = r.inproc_certificate.get("destroyed", {})
            print(f"  GdprService.erase in this process (another citizen, {r.inproc_keys} documents):"
                  f" {r.inproc_seconds:.2f} s   target < {ERASE_TARGET:.0f} s: {verdict(r.inproc_seconds < ERASE_TARGET)}")
            print(f"    of which the blob store's deletion (S3BlobStore.delete_many or delete):"
                  f" {r.inproc_delete_seconds:.2f} s for {r.inproc_keys} keys"
                  f" ({r.inproc_delete_seconds / max(r.inproc_keys, 1) * 1000:.1f} ms per document); the rest"
                  f" (database, crypto-shredding, certificate): {r.inproc_seconds - r.inproc_delete_seconds:.2f} s")
            print(f"    S3 calls: {total_calls} ({total_calls / max(r.inproc_keys, 1):.1f} per document), "
                  + ", ".join(f"{m} x{n} ({r.inproc_call_seconds[m]:.2f} s, "
                              f"{r.inproc_call_seconds[m] / n * 1000:.1f} ms each)"
                              for m, n in r.inproc_calls.most_common())
                  + f"; {s3_time:.2f} s in S3 calls, summed over threads (more than the wall time when"
                  " they overlap)")
            print(f"    certificate: {icert.get('documents')} documents, {icert.get('object_versions')} object versions;"
                  f" left in the bucket: {r.inproc_left}   {verdict(r.inproc_left == 0)}")
        b = r.batched
        print(f"  for scale, boto3 alone (this client) on objects of {ERASE_DOC_SIZE:,} bytes put for it, random keys"
              " without a common prefix (the service's keys have a per-citizen prefix since 2026-11-30):")
        print(f"    per key, {ERASE_DOCS} keys: ListObjectVersions then DeleteObjects, key after key (2 calls per"
              f" document): {b['per_key']:.2f} s ({b['per_key'] / ERASE_DOCS * 1000:.1f} ms per document)")
        print(f"    batched, {ERASE_DOCS} other keys: ListObjectVersions per key one after the other"
              f" {b['list_sequential']:.2f} s, or from 16 threads {b['list_16_threads']:.2f} s; then one DeleteObjects"
              f" for all {b['versions']:.0f} versions {b['delete_batched']:.2f} s; left afterwards: {b['left']:.0f}")
        print(f"    (ListObjectVersions of the whole bucket, {b['bucket_versions']:.0f} versions: {b['list_bucket']:.2f} s)")
    errors = [line for line in setup.server.log.read_text(errors="replace").splitlines()
              if '"level": "error"' in line or '"level":"error"' in line or "Traceback" in line]
    if errors:
        print(f"\n! {len(errors)} error lines in the server's log ({setup.server.log}):")
        for line in errors[:5]:
            print(f"    {line[:300]}")


# ---- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of S3 GET + export (default 3)")
    parser.add_argument("--skip-export", action="store_true", help="skip the 1 GiB export part")
    parser.add_argument("--skip-erase", action="store_true", help="skip the erasure part")
    parser.add_argument("--skip-inprocess", action="store_true",
                        help="erase only through the CLI (no second 1,000-document citizen)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) afterwards")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")

    def terminate(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    base = Path(tempfile.mkdtemp(prefix="vault-gdpr-bench-"))
    base.chmod(0o755)  # PostgreSQL may run as another account (when this runs as root)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    sampler: RssSampler | None = None
    try:
        pool = Pool(64 * MiB)
        roles = ([] if args.skip_export else ["export"]) + ([] if args.skip_erase else ["erase-cli"]) + (
            [] if args.skip_erase or args.skip_inprocess else ["erase-inprocess"])
        print(f"starting PostgreSQL, SeaweedFS and the server (logs in {base}) ...", flush=True)
        setup = start_everything(base, roles)
        export = erase = None
        if not args.skip_export:
            print("export:", flush=True)
            sampler = RssSampler(setup.server.pid)
            sampler.start()
            export = export_part(setup, pool, args.rounds, sampler)
            sampler.stopping.set()
            sampler.join()
        if not args.skip_erase:
            print("erasure:", flush=True)
            erase = erase_part(setup, pool, not args.skip_inprocess)
        report(setup, load_before, export, erase)
        print(f"\n(total run time {time.monotonic() - started:.0f} s)")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if sampler is not None:
            sampler.stopping.set()
        stop_everything()
        if args.keep:
            print(f"logs kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
