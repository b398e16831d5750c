"""Key providers: where the key-encryption keys (KEKs) live.

``local``: a keyring file of versioned 256-bit keys (development and small sites). The file is
created on first run in development only; production must name an existing file.
``aws-kms``: a KMS key (boto3); the KEK never leaves the KMS.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import zlib
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
    """A JSON keyring file: ``{"active": N, "keys": [{"version": N, "key": base64, "created": iso}]}``.

    The file holds key material in clear: keep it ``0600``, outside backups of the database, and
    back it up separately (losing it makes every wrapped secret unreadable).
    """

    def __init__(self, path: Path, keys: dict[int, bytes], active: int) -> None:
        if active not in keys:
            raise KeyProviderError(f"keyring {path}: active version {active} has no key")
        self.path = path
        self._keys = keys
        self._active = active

    # ---- loading -----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> LocalKeyring:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            keys = {int(item["version"]): base64.b64decode(item["key"], validate=True) for item in raw["keys"]}
            active = int(raw["active"])
        except FileNotFoundError:
            raise KeyProviderError(f"keyring {path} does not exist") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyProviderError(f"keyring {path} is unreadable or malformed ({type(exc).__name__})") from None
        for version, key in keys.items():
            if len(key) != KEY_BYTES:
                raise KeyProviderError(f"keyring {path}: key version {version} is not 256 bits")
        return cls(path, keys, active)

    @classmethod
    def create(cls, path: Path) -> LocalKeyring:
        """Write a new keyring with one random key (mode 0600, in a folder made 0700). Refuses to
        overwrite an existing file."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        keyring = cls(path, {1: os.urandom(KEY_BYTES)}, 1)
        keyring._write(exclusive=True)
        logger.warning("generated a new development keyring", extra={"path": str(path)})
        return keyring

    def _write(self, *, exclusive: bool = False) -> None:
        document = {
            "active": self._active,
            "keys": [
                {"version": v, "key": base64.b64encode(k).decode(), "created": datetime.now(UTC).isoformat()}
                for v, k in sorted(self._keys.items())
            ],
        }
        data = json.dumps(document, indent=2).encode()
        if exclusive:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return
        # Replace atomically: a crash mid-write must never leave a truncated keyring.
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # ---- KeyProvider ---------------------------------------------------------------------------

    @property
    def active_version(self) -> int:
        return self._active

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def add_version(self) -> int:
        """KEK rotation: a new random key becomes active; older versions stay to unwrap old data
        until everything is re-wrapped (``vault keys rotate-kek`` does both)."""
        version = max(self._keys) + 1
        self._keys[version] = os.urandom(KEY_BYTES)
        self._active = version
        self._write()
        logger.info("new KEK version", extra={"version": version})
        return version

    def wrap(self, plaintext: bytes, *, context: bytes) -> bytes:
        version = self._active
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[version]).encrypt(nonce, plaintext, _associated_data(version, context))
        return _HEADER.pack(_MAGIC, version) + nonce + sealed

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        if len(wrapped) < _HEADER.size + _NONCE_BYTES + 16:
            raise DecryptionError()
        magic, version = _HEADER.unpack_from(wrapped)
        key = self._keys.get(version)
        if magic != _MAGIC or key is None:
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
            return LocalKeyring.create(path)
        except FileExistsError:  # another worker created it between our check and our write
            pass
    return LocalKeyring.load(path)
