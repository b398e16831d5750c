"""KEK rotation over the database: every secret the key provider wrapped, re-wrapped in batches.

Each domain names the columns it stores wrapped by the KEK (``WrappedColumn``); the composition
root hands the list to ``KekRotation``. A wrapped value carries its KEK version in bytes 3 to 6
(``W1``/``K1`` header), so the database itself answers "what is still under version N" without a
column of its own. A batch is committed before the next one starts and each row is replaced only
if it still holds the value that was read (compare-and-set): a rotation interrupted at any point
loses nothing, leaves every row readable, and finishes when run again; a replica writing the same
row meanwhile (a new TOTP seed...) wins.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from vault.crypto.exceptions import DecryptionError, KeyProviderError
from vault.crypto.providers import KeyProvider, LocalKeyring
from vault.settings import KEYRING_RELOAD_MAX_SECONDS

logger = logging.getLogger(__name__)


def settle_delay(keys: KeyProvider) -> timedelta:
    """A replica looks at the keyring file at least every ``VAULT_KEYRING_RELOAD_SECONDS`` before it
    wraps, and refuses to wrap while the changed file cannot be read: past twice the longest
    interval any replica may run with (the setting's upper bound, whatever this process's own
    value) and a second after an activation, no replica wraps under an older version any more (a
    write begun before is caught by the last sweep of ``rewrap``): it may be retired."""
    if not isinstance(keys, LocalKeyring):
        return timedelta(seconds=1)
    return timedelta(seconds=2 * KEYRING_RELOAD_MAX_SECONDS + 1)


@dataclass(frozen=True)
class WrappedColumn:
    """A column holding values wrapped by the KEK. ``context`` gives the associated data from the
    row's primary key; ``on_rewrap`` gives other columns to set with the new value (a copy of the
    KEK version, a timestamp)."""

    label: str
    key: InstrumentedAttribute[Any]
    column: InstrumentedAttribute[Any]
    context: Callable[[Any], bytes]
    on_rewrap: Callable[[int], dict[str, Any]] | None = None


@dataclass
class Progress:
    """Where a ``rewrap`` stands after a committed batch (or at its end)."""

    rewrapped: dict[str, int] = field(default_factory=dict)  # per label
    remaining: dict[str, int] = field(default_factory=dict)  # per label, not under the active version
    failed: dict[str, list[str]] = field(default_factory=dict)  # per label: rows that did not unwrap

    @property
    def total_rewrapped(self) -> int:
        return sum(self.rewrapped.values())

    @property
    def total_remaining(self) -> int:
        return sum(self.remaining.values())


def _version_bytes(version: int) -> bytes:
    return struct.pack(">I", version)


def _version_of(header: bytes) -> int:
    return int.from_bytes(header, "big") if len(header) == 4 else 0


class KekRotation:
    """Census, re-wrap and retirement of KEK versions over every ``WrappedColumn``."""

    def __init__(self, *, keys: KeyProvider, engine: Engine, columns: list[WrappedColumn]) -> None:
        self.keys = keys
        self.engine = engine
        self.columns = columns

    @staticmethod
    def _header(wrapped: WrappedColumn) -> Any:
        return func.substr(wrapped.column, 3, 4)

    def census(self) -> dict[str, dict[int, int]]:
        """How many values each column holds under each KEK version."""
        found: dict[str, dict[int, int]] = {}
        with Session(self.engine) as db:
            for wrapped in self.columns:
                header = self._header(wrapped)
                rows = db.execute(select(header, func.count()).where(wrapped.column.is_not(None))
                                  .group_by(header)).all()
                counts = found.setdefault(wrapped.label, {})
                for raw, count in rows:
                    version = _version_of(bytes(raw))
                    counts[version] = counts.get(version, 0) + int(count)
        return found

    def in_use(self, version: int) -> int:
        """Values still wrapped under ``version``."""
        return sum(counts.get(version, 0) for counts in self.census().values())

    def _remaining(self, db: Session, wrapped: WrappedColumn, active: int) -> int:
        return int(db.execute(select(func.count()).select_from(wrapped.key.class_)
                              .where(wrapped.column.is_not(None),
                                     self._header(wrapped) != _version_bytes(active))).scalar_one())

    def rewrap(self, *, batch_size: int = 500, after_batch: Callable[[Progress], None] | None = None) -> Progress:
        """Re-wrap every value not under the active version, ``batch_size`` rows per committed
        batch. ``after_batch`` is told the progress after each commit. Values that do not unwrap
        (their version is gone from the keyring, or they were tampered with) are skipped and
        listed in ``failed``: nothing is written for them."""
        progress = Progress()
        with Session(self.engine) as db:
            active = self.keys.active_version
            progress.remaining = {w.label: self._remaining(db, w, active) for w in self.columns}
        for wrapped in self.columns:
            progress.rewrapped[wrapped.label] = 0
            failed: list[Any] = []
            while True:
                active = self.keys.active_version
                with Session(self.engine) as db:
                    query = (select(wrapped.key, wrapped.column)
                             .where(wrapped.column.is_not(None), self._header(wrapped) != _version_bytes(active))
                             .order_by(wrapped.key).limit(batch_size))
                    if failed:
                        query = query.where(wrapped.key.not_in(failed))
                    rows = db.execute(query).all()
                    if not rows:
                        progress.remaining[wrapped.label] = len(failed)
                        break
                    done = 0
                    for key, value in rows:
                        context = wrapped.context(key)
                        try:
                            plain = self.keys.unwrap(bytes(value), context=context)
                        except DecryptionError:
                            failed.append(key)
                            logger.error("KEK rewrap: a value does not unwrap",
                                         extra={"column": wrapped.label, "row": str(key)})
                            continue
                        new = self.keys.wrap(plain, context=context)
                        values: dict[str, Any] = {wrapped.column.key: new}
                        if wrapped.on_rewrap is not None:
                            values |= wrapped.on_rewrap(_version_of(new[2:6]))
                        # Compare-and-set: a row changed since it was read is left to its writer.
                        result = db.execute(update(wrapped.key.class_)
                                            .where(wrapped.key == key, wrapped.column == value).values(values))
                        done += int(getattr(result, "rowcount", 0) or 0)
                    db.commit()
                    progress.rewrapped[wrapped.label] += done
                    progress.remaining[wrapped.label] = self._remaining(db, wrapped, active)
                if failed:
                    progress.failed[wrapped.label] = [str(k) for k in failed]
                if after_batch is not None:
                    after_batch(progress)
        logger.info("KEK rewrap", extra={"rewrapped": progress.total_rewrapped,
                                         "remaining": progress.total_remaining})
        return progress

    def settled_at(self) -> datetime | None:
        """From when every replica wraps under the active version (None: the keyring does not say
        when it was activated, or the provider is not a keyring)."""
        if isinstance(self.keys, LocalKeyring) and (activated := self.keys.activated_at) is not None:
            return activated + settle_delay(self.keys)
        return None

    def check_retirable(self, version: int) -> None:
        """Raise ``KeyProviderError`` saying why ``version`` cannot be retired yet."""
        if version == self.keys.active_version:
            raise KeyProviderError(f"KEK version {version} is the active version: activate another first")
        settled = self.settled_at()
        if settled is not None and datetime.now(UTC) < settled:
            raise KeyProviderError(f"the active KEK version was activated less than "
                                   f"{settle_delay(self.keys).total_seconds():g} s "
                                   f"ago (replicas may still wrap under an older one): run `vault keys kek rewrap` "
                                   f"again after {settled.isoformat(timespec='seconds')}, then retire")
        if count := self.in_use(version):
            raise KeyProviderError(f"{count} values are still wrapped under KEK version {version}: "
                                   f"run `vault keys kek rewrap` first")
