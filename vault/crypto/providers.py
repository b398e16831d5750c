"""Key providers: where the key-encryption keys (KEKs) live.

``local``: a keyring file of versioned 256-bit keys (development and small sites). The file is
created on first run in development only; production must name an existing file.
``aws-kms``: a KMS key (boto3); the KEK never leaves the KMS.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.crypto.exceptions import DecryptionError, KeyProviderError
from vault.settings import Settings

logger = logging.getLogger(__name__)

# Wrapped blob layout: magic (2) | KEK version (uint32, big endian) | nonce (12) | ciphertext+tag.
_MAGIC = b"W1"
_HEADER = struct.Struct(">2sI")
_NONCE_BYTES = 12
KEY_BYTES = 32


class KeyProvider(Protocol):
    """Holds the KEKs. ``wrap``/``unwrap`` are AES-256-GCM with associated data."""

    @property
    def active_version(self) -> int: ...

    def wrap(self, plaintext: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes: ...


def _associated_data(version: int, context: bytes) -> bytes:
    # The KEK version is part of the associated data: a blob relabelled with another version fails.
    return _MAGIC + struct.pack(">I", version) + context


class LocalKeyring:
    """A JSON keyring file: ``{"active": N, "activated_at": iso, "keys": [{"version": N, "key": base64,
    "created": iso}]}``.

    The file holds key material in clear: keep it ``0600``, outside backups of the database, and
    back it up separately (losing it makes every wrapped secret unreadable).

    Replicas share the file: each process looks at it again (its inode, size and modification
    time) at most every ``reload_seconds`` and whenever it meets a version it does not hold, so a
    KEK added or activated by ``vault keys kek`` reaches every replica without a restart. Every
    change is written atomically (a temporary file in the same folder, fsync, rename, the old
    file's owner kept) under a lock, from the file as read under that lock (a file that cannot be
    read is never overwritten), and only once the step it belongs to succeeded.

    A file that changed but cannot be read (or stat) any more is a failure that sticks until a
    reload succeeds: ``wrap`` refuses (``KeyProviderError``: /readyz and every request that wraps
    answer 503) rather than go on wrapping under a version that may be retired meanwhile;
    ``unwrap`` goes on with the keys held.
    """

    def __init__(self, path: Path, keys: dict[int, bytes], active: int, *,
                 created: dict[int, str] | None = None, activated_at: str | None = None) -> None:
        if active not in keys:
            raise KeyProviderError(f"keyring {path}: active version {active} has no key")
        self.path = path
        self._keys = keys
        self._active = active
        self._created = created or {}
        self._activated_at = activated_at
        self._lock = threading.Lock()
        self.reload_seconds = 2.0  # VAULT_KEYRING_RELOAD_SECONDS
        self._seen = self._signature()
        self._checked = time.monotonic()
        self._failure: str | None = None  # why the changed file could not be read (sticky)

    # ---- loading -----------------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> tuple[dict[int, bytes], int, dict[int, str], str | None]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            keys = {int(item["version"]): base64.b64decode(item["key"], validate=True) for item in raw["keys"]}
            created = {int(item["version"]): str(item.get("created", "")) for item in raw["keys"]}
            active = int(raw["active"])
            activated_at = raw.get("activated_at")
        except FileNotFoundError:
            raise KeyProviderError(f"keyring {path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyProviderError(f"keyring {path} is unreadable or malformed ({type(exc).__name__})") from None
        for version, key in keys.items():
            if len(key) != KEY_BYTES:
                raise KeyProviderError(f"keyring {path}: key version {version} is not 256 bits")
        if active not in keys:
            raise KeyProviderError(f"keyring {path}: active version {active} has no key")
        return keys, active, created, activated_at if isinstance(activated_at, str) else None

    @classmethod
    def load(cls, path: Path) -> LocalKeyring:
        keys, active, created, activated_at = cls._read(path)
        return cls(path, keys, active, created=created, activated_at=activated_at)

    @classmethod
    def create(cls, path: Path) -> LocalKeyring:
        """Write a new keyring with one random key (mode 0600, in a folder made 0700). Refuses to
        overwrite an existing file."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = datetime.now(UTC).isoformat()
        keyring = cls(path, {1: os.urandom(KEY_BYTES)}, 1, created={1: now}, activated_at=now)
        keyring._write(keyring._document(), exclusive=True)
        keyring._seen = keyring._signature()
        logger.warning("generated a new development keyring", extra={"path": str(path)})
        return keyring

    def _signature(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)

    def reload(self, *, force: bool = False) -> bool:
        """Read the file again if it changed since it was last read (or if ``force``, or while the
        last attempt failed); whether the keys changed. A file that cannot be read keeps the keys
        in memory for ``unwrap`` but makes ``wrap`` refuse until a reload succeeds (logged)."""
        with self._lock:
            self._checked = time.monotonic()
            signature = self._signature()
            if signature is not None and signature == self._seen and not force and self._failure is None:
                return False
            try:
                if signature is None:
                    raise KeyProviderError(f"keyring {self.path} cannot be found or examined (stat failed)")
                keys, active, created, activated_at = self._read(self.path)
            except KeyProviderError as exc:
                if self._failure is None:
                    logger.error("keyring not reloaded: wrapping refused until it is", extra={"error": str(exc)})
                self._failure = str(exc)
                return False
            changed = keys != self._keys or active != self._active
            self._keys, self._active, self._created, self._activated_at = keys, active, created, activated_at
            self._seen = signature
            if self._failure is not None:
                logger.warning("keyring readable again", extra={"path": str(self.path)})
            self._failure = None
        if changed:
            logger.info("keyring reloaded", extra={"active": active, "versions": sorted(keys)})
        return changed

    def _maybe_reload(self) -> None:
        if time.monotonic() - self._checked >= self.reload_seconds:
            self.reload()

    @property
    def failure(self) -> str | None:
        """Why the keyring file, changed since it was last read, cannot be read (None: it can)."""
        self._maybe_reload()
        return self._failure

    # ---- writing -----------------------------------------------------------------------------

    def _document(self) -> dict[str, object]:
        return {
            "active": self._active,
            "activated_at": self._activated_at,
            "keys": [
                {"version": v, "key": base64.b64encode(k).decode(),
                 "created": self._created.get(v) or datetime.now(UTC).isoformat()}
                for v, k in sorted(self._keys.items())
            ],
        }

    def _write(self, document: dict[str, object], *, exclusive: bool = False) -> None:
        data = json.dumps(document, indent=2).encode()
        if exclusive:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return
        # Replace atomically: a crash mid-write must never leave a truncated keyring. The temporary
        # file lives in the same folder (one file system, so the rename is atomic), created 0600.
        # The new file keeps the old one's owner and group: a change made with sudo must not leave
        # a keyring the service's user can no longer read.
        try:
            old = os.stat(self.path)
        except FileNotFoundError:
            old = None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                if old is not None and os.geteuid() == 0:
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a power cut
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Read-modify-write of the file under an exclusive lock (two operators at once cannot add
        the same version), from the file's current content (not this process's memory); the new
        content is written only when the body returns."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # From the file itself, never from this process's memory: a file that cannot be read
            # (another owner, damaged...) stops the change before anything is written.
            signature = self._signature()
            try:
                keys, active, created, activated_at = self._read(self.path)
            except KeyProviderError as exc:
                raise KeyProviderError(f"{exc}: nothing was changed (run the command as the keyring's "
                                       f"owner, or repair the file from its backup)") from None
            with self._lock:
                self._keys, self._active, self._created, self._activated_at = keys, active, created, activated_at
                self._seen, self._failure = signature, None
                before = self._document()
                saved = (dict(self._keys), self._active, dict(self._created), self._activated_at)
                try:
                    yield
                except BaseException:
                    self._keys, self._active, self._created, self._activated_at = saved
                    raise
                after = self._document()
                if after != before:
                    try:
                        self._write(after)
                    except BaseException:
                        self._keys, self._active, self._created, self._activated_at = saved
                        raise
            self._seen = self._signature()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # ---- KeyProvider ---------------------------------------------------------------------------

    @property
    def active_version(self) -> int:
        self._maybe_reload()
        return self._active

    @property
    def versions(self) -> list[int]:
        self._maybe_reload()
        return sorted(self._keys)

    @property
    def activated_at(self) -> datetime | None:
        """When the active version became active (None for keyrings older than this field)."""
        self._maybe_reload()
        try:
            return datetime.fromisoformat(self._activated_at) if self._activated_at else None
        except ValueError:
            return None

    def created_at(self, version: int) -> datetime | None:
        """When ``version`` was added to the keyring (None when the keyring does not say)."""
        self._maybe_reload()
        try:
            return datetime.fromisoformat(self._created[version]) if self._created.get(version) else None
        except ValueError:
            return None

    # ---- rotation steps (``vault keys kek``) -------------------------------------------------

    def add_version(self) -> int:
        """A new random key, added to the keyring but not yet used for wrapping: replicas load it
        (``reload_seconds``) before ``activate`` makes it the one that wraps."""
        with self._changing():
            version = max(self._keys) + 1
            self._keys[version] = os.urandom(KEY_BYTES)
            self._created[version] = datetime.now(UTC).isoformat()
        logger.info("new KEK version added", extra={"version": version})
        return version

    def pending_versions(self) -> list[int]:
        """Versions newer than the active one (added, not yet activated)."""
        return [v for v in self.versions if v > self._active]

    def activate(self, version: int) -> bool:
        """``version`` wraps from now on (every replica within ``reload_seconds``); whether it
        changed anything (activating the active version again is a no-op)."""
        with self._changing():
            if version not in self._keys:
                raise KeyProviderError(f"KEK version {version} is not in the keyring (versions: "
                                       f"{', '.join(map(str, sorted(self._keys)))})")
            if version == self._active:
                return False
            self._active = version
            self._activated_at = datetime.now(UTC).isoformat()
        logger.info("KEK version activated", extra={"version": version})
        return True

    def retire(self, version: int) -> bool:
        """Remove a version's key from the keyring (the caller checked that nothing is wrapped
        under it any more); whether it was there."""
        with self._changing():
            if version == self._active:
                raise KeyProviderError(f"KEK version {version} is the active version: activate another first")
            if version not in self._keys:
                return False
            del self._keys[version]
            self._created.pop(version, None)
        logger.info("KEK version retired", extra={"version": version})
        return True

    def wrap(self, plaintext: bytes, *, context: bytes) -> bytes:
        self._maybe_reload()
        if self._failure is not None:
            raise KeyProviderError(f"{self._failure}: wrapping refused until the keyring can be read again")
        version = self._active
        key = self._keys.get(version)
        if key is None:  # read between the two halves of a reload: read the file again
            self.reload(force=True)
            if self._failure is not None:
                raise KeyProviderError(f"{self._failure}: wrapping refused until the keyring can be read again")
            version = self._active
            key = self._keys[version]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, _associated_data(version, context))
        return _HEADER.pack(_MAGIC, version) + nonce + sealed

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        if len(wrapped) < _HEADER.size + _NONCE_BYTES + 16:
            raise DecryptionError()
        magic, version = _HEADER.unpack_from(wrapped)
        if magic != _MAGIC:
            raise DecryptionError()
        self._maybe_reload()
        key = self._keys.get(version)
        if key is None:  # added by another process since we last looked: read the file again first
            self.reload()
            key = self._keys.get(version)
        if key is None:
            raise DecryptionError()
        nonce = wrapped[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            return AESGCM(key).decrypt(nonce, wrapped[_HEADER.size + _NONCE_BYTES :], _associated_data(version, context))
        except InvalidTag:
            raise DecryptionError() from None


class AwsKmsProvider:
    """The KEK is a KMS key (AWS KMS or any service speaking its API): it never leaves the KMS.
    ``wrap`` is KMS Encrypt with an encryption context (KMS's associated data) naming what is
    wrapped; ``unwrap`` is Decrypt, which finds the key from the ciphertext, so changing
    ``VAULT_KMS_KEY_ID`` and running ``vault keys rotate-kek`` moves everything to the new key.

    Credentials come from boto3's standard chain (instance role, AWS_* variables, profile).
    """

    def __init__(self, *, key_id: str, endpoint_url: str | None, region: str) -> None:
        import boto3
        from botocore.config import Config

        self.key_id = key_id
        self._client = boto3.client("kms", endpoint_url=endpoint_url, region_name=region,
                                    config=Config(connect_timeout=5, read_timeout=10,
                                                  retries={"max_attempts": 3, "mode": "standard"}))
        # A stable "version" per key id: citizen keys wrapped under another key id get re-wrapped.
        self._version = (zlib.crc32(key_id.encode()) & 0x7FFFFFFF) or 1  # fits a signed 32-bit column

    @property
    def active_version(self) -> int:
        return self._version

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"vault": base64.b64encode(context).decode()}

    def wrap(self, plaintext: bytes, *, context: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            blob = self._client.encrypt(KeyId=self.key_id, Plaintext=plaintext,
                                        EncryptionContext=self._context(context))["CiphertextBlob"]
        except (BotoCoreError, ClientError) as exc:
            raise KeyProviderError(f"KMS encrypt failed ({type(exc).__name__})") from None
        return _KMS_MAGIC + struct.pack(">I", self._version) + blob

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if not wrapped.startswith(_KMS_MAGIC) or len(wrapped) < 7:
            raise DecryptionError()
        try:
            return self._client.decrypt(CiphertextBlob=wrapped[6:], EncryptionContext=self._context(context))["Plaintext"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise DecryptionError() from None
            raise KeyProviderError(f"KMS decrypt failed ({exc.response.get('Error', {}).get('Code')})") from None
        except BotoCoreError as exc:
            raise KeyProviderError(f"KMS unreachable ({type(exc).__name__})") from None


_KMS_MAGIC = b"K1"


def load_key_provider(settings: Settings, *, create: bool | None = None) -> KeyProvider:
    """Return the configured provider. The local keyring is generated only in development."""
    if settings.key_provider == "aws-kms":
        return AwsKmsProvider(key_id=settings.kms_key_id or "", endpoint_url=settings.kms_endpoint_url,
                              region=settings.kms_region)
    path = settings.effective_keyring_file
    if create is None:
        create = not settings.is_production
    if not path.exists() and create:
        try:
            keyring = LocalKeyring.create(path)
            keyring.reload_seconds = settings.keyring_reload_seconds
            return keyring
        except FileExistsError:  # another worker created it between our check and our write
            pass
    keyring = LocalKeyring.load(path)
    keyring.reload_seconds = settings.keyring_reload_seconds
    return keyring
