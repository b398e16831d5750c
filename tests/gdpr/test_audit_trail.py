"""The audit trail against someone who can edit the database: entries chained with a MAC under a
key wrapped by the KEK, the chain's head checkpointed (signed) in the object store and the log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlmodel import Session, col, select

from tests.factories import make_staff, staff_browser
from vault.db import utcnow
from vault.gdpr import audit
from vault.gdpr.models import AuditAnchor, AuditEntry


def write(app: Any, n: int, *, checkpoint: bool = True) -> list[int]:
    """``n`` entries, committed, then (as the periodic task or ``vault audit checkpoint`` does) a
    checkpoint of the head."""
    engine = app.state.services.engine
    with Session(engine) as db:
        for i in range(n):
            audit.record(db, actor="system", action=f"test.{i}", target=f"thing:{i}")
        db.commit()
        if checkpoint:
            app.state.services.audit.checkpoint(db)
        return list(db.exec(select(AuditEntry.id).order_by(col(AuditEntry.id))).all())


def verdict(app: Any) -> audit.Verification:
    with Session(app.state.services.engine) as db:
        return audit.verify(db)


def sql(engine: Any, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_a_clean_trail_verifies_up_to_its_checkpoint(app) -> None:
    ids = write(app, 5)
    result = verdict(app)
    assert result.ok and result.entries == 5
    assert result.checkpoint is not None and result.checkpoint.seq == ids[-1] and result.checkpoint.count == 5


def test_deleting_the_newest_entry_is_detected(app, engine) -> None:
    ids = write(app, 4)
    sql(engine, "DELETE FROM audit_log WHERE id = :id", id=ids[-1])
    result = verdict(app)
    assert not result.ok and "newest entries were removed" in (result.problem or "")


def test_moving_the_head_record_back_after_deleting_the_newest_entry_is_detected(app, engine) -> None:
    ids = write(app, 4)
    with Session(engine) as db:
        previous = db.get(AuditEntry, ids[-2])
        assert previous is not None
        sql(engine, "DELETE FROM audit_log WHERE id = :id", id=ids[-1])
        sql(engine, "UPDATE audit_anchor SET head_id = :id, head_hash = :hash", id=previous.id, hash=previous.hash)
    result = verdict(app)
    assert not result.ok and result.code == "truncated"
    assert f"the trail ends at entry {ids[-2]} but checkpoint says {ids[-1]}" in (result.problem or "")


def test_emptying_both_tables_is_detected(app, engine) -> None:
    ids = write(app, 3)
    sql(engine, "DELETE FROM audit_log")
    sql(engine, "DELETE FROM audit_anchor")
    result = verdict(app)
    assert not result.ok and f"the trail ends at entry 0 but checkpoint says {ids[-1]}" in (result.problem or "")


def test_editing_an_entry_is_detected(app, engine) -> None:
    ids = write(app, 3)
    with Session(engine) as db:
        db.exec(update(AuditEntry).where(col(AuditEntry.id) == ids[1]).values(target="thing:else"))
        db.commit()
    result = verdict(app)
    assert not result.ok and result.first_bad_id == ids[1] and result.code == "edited"


def _rechain_with_plain_hashes(engine: Any, *, from_start: bool) -> None:
    """What someone with the database only can do: recompute every hash as a plain SHA-256 chain
    (the public algorithm) and move the head record to the new end."""
    with Session(engine) as db:
        anchor = db.get(AuditAnchor, 1)
        assert anchor is not None
        prev = anchor.hash
        rows = db.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        for row in rows:  # unique columns: clear first, then rewrite
            row.prev_hash, row.hash = f"x{row.id}", f"y{row.id}"
        db.flush()
        for row in rows:
            row.prev_hash = prev
            row.hash = prev = audit._digest(prev, row.at, row.actor, row.action, row.target, row.details)
        anchor.head_hash = prev
        if from_start:
            anchor.mac_from = anchor.mac_tag = None  # and claim no entry was ever keyed
        db.commit()


@pytest.mark.parametrize("from_start", [False, True])
def test_recomputing_the_hash_chain_after_an_edit_is_detected(app, engine, from_start: bool) -> None:
    ids = write(app, 3)
    with Session(engine) as db:
        db.exec(update(AuditEntry).where(col(AuditEntry.id) == ids[0]).values(actor="staff:someone-else"))
        db.commit()
    _rechain_with_plain_hashes(engine, from_start=from_start)
    result = verdict(app)
    assert not result.ok
    if not from_start:
        assert result.code == "edited" and result.first_bad_id == ids[0]
    else:  # a plain chain that holds together, but the audit key exists: entries were keyed
        assert result.code == "keyed_start" and "where the keyed part starts was removed" in (result.problem or "")


def test_entries_from_before_the_keyed_chain_still_verify(app, engine) -> None:
    # A log written before migration 0021: a plain SHA-256 chain, no ``mac_from``.
    with Session(engine) as db:
        prev = audit.GENESIS
        for i in range(3):
            at = utcnow()
            digest = audit._digest(prev, at, "system", f"old.{i}", "", {"n": i})
            db.add(AuditEntry(at=at, actor="system", action=f"old.{i}", details={"n": i}, prev_hash=prev, hash=digest))
            prev = digest
        db.flush()
        db.add(AuditAnchor(id=1, hash=audit.GENESIS, head_hash=prev,
                           head_id=db.exec(select(AuditEntry.id).order_by(col(AuditEntry.id).desc())).first()))
        db.commit()
    assert verdict(app).ok
    ids = write(app, 2)
    with Session(engine) as db:
        anchor = db.get(AuditAnchor, 1)
        assert anchor is not None and anchor.mac_from == ids[3]  # the keyed part starts at the first new entry
    assert verdict(app).ok
    with Session(engine) as db:  # an old entry edited still shows
        db.exec(update(AuditEntry).where(col(AuditEntry.id) == ids[1]).values(action="old.rewritten"))
        db.commit()
    assert verdict(app).first_bad_id == ids[1]


def test_the_keyed_part_cannot_be_moved_back(app, engine) -> None:
    ids = write(app, 3)
    sql(engine, "UPDATE audit_anchor SET mac_from = :id", id=ids[-1])
    result = verdict(app)
    assert not result.ok and result.code == "keyed_start"


def test_a_rolled_back_entry_leaves_no_checkpoint(app, engine) -> None:
    trail = app.state.services.audit
    trail.every_entries = 1  # every entry due for a checkpoint
    write(app, 2)
    with Session(engine) as db:
        audit.record(db, actor="system", action="test.rolled_back")
        db.rollback()
    with Session(engine) as db:
        audit.record(db, actor="system", action="test.kept")
        db.commit()
    result = verdict(app)
    assert result.ok and result.checkpoint is not None and result.entries == 3


def test_checkpoints_are_written_as_entries_come_and_logged(app, engine, settings, caplog) -> None:
    app.state.services.audit.every_entries = 3
    with caplog.at_level(logging.INFO, logger="vault.gdpr.audit"):
        ids = [write(app, 1, checkpoint=False)[-1] for _ in range(7)]  # seven actions, one entry each
    folder = settings.data_dir / "blobs" / "audit" / "checkpoints"  # where the development store writes
    # The first entry of the process, then every third one: the head never more than 3 entries ahead.
    assert sorted(p.name for p in folder.iterdir()) == [f"{ids[i]:012d}.json" for i in (0, 3, 6)]
    logged = [r for r in caplog.records if r.getMessage() == "audit checkpoint"]
    assert [r.audit_checkpoint["checkpoint"]["seq"] for r in logged] == [ids[0], ids[3], ids[6]]
    assert set(logged[-1].audit_checkpoint["checkpoint"]) == {"seq", "head", "count", "at", "mac_from"}
    # The log line carries no personal data: no actor, action or target of any entry.
    assert "thing:" not in json.dumps([r.audit_checkpoint for r in logged])


def test_a_checkpoint_signed_by_another_key_is_refused(app, settings) -> None:
    ids = write(app, 2)
    path = settings.data_dir / "blobs" / "audit" / "checkpoints" / f"{ids[-1]:012d}.json"
    forged = json.loads(path.read_text())
    forged["checkpoint"]["seq"] = ids[-1] + 50
    (path.parent / f"{ids[-1] + 50:012d}.json").write_text(json.dumps(forged))
    result = verdict(app)
    assert not result.ok and result.code == "checkpoint" and "not signed" in (result.problem or "")


def test_appending_does_not_unwrap_the_audit_key_each_time(app, engine) -> None:
    provider = app.state.services.keystore.keys
    calls = []
    original = provider.unwrap

    def counting(wrapped: bytes, *, context: bytes) -> bytes:
        calls.append(context)
        return original(wrapped, context=context)

    write(app, 1)  # the key opened once, kept in memory
    provider.unwrap = counting
    try:
        write(app, 20, checkpoint=False)
    finally:
        provider.unwrap = original
    assert [c for c in calls if c.startswith(b"server-secret:audit")] == []


def test_the_dpo_page_shows_the_same_verdict(app, engine) -> None:
    staff = make_staff(app, email="dpo@ville.example.fr", name="Camille DPO", role="dpo")
    with staff_browser(app, staff) as browser:
        ids = write(app, 2)
        page = browser.get("/dpo/audit")
        assert page.status_code == 200 and "Journal intact" in page.text
        with Session(engine) as db:
            newest = db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())).first()
            assert newest is not None
            before = db.get(AuditEntry, newest.id - 1)
            assert before is not None
        sql(engine, "DELETE FROM audit_log WHERE id = :id", id=newest.id)
        sql(engine, "UPDATE audit_anchor SET head_id = :id, head_hash = :hash", id=before.id, hash=before.hash)
        page = browser.get("/dpo/audit")
    assert page.status_code == 200 and "Journal ALTÉRÉ" in page.text
    assert f"s'arrête à l'entrée {before.id} alors que le point de contrôle dit {newest.id}" in page.text
    assert ids


# ---- the command line ----------------------------------------------------------------------------------------


def vault_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vault.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_vault_audit_verify_names_what_is_missing(database_url: str, tmp_path: Path, engine) -> None:
    env = {**os.environ, "VAULT_DATABASE_URL": database_url, "VAULT_DATA_DIR": str(tmp_path / "var"),
           "VAULT_ARGON2_MEMORY_KIB": "8192", "VAULT_ARGON2_TIME_COST": "1"}
    for n in range(3):
        done = vault_cli(["staff", "create", "--email", f"a{n}@ville.example.fr", "--role", "admin", "--json"], env)
        assert done.returncode == 0, done.stderr
    done = vault_cli(["audit", "checkpoint", "--json"], env)
    assert done.returncode == 0, done.stderr
    seq = json.loads(done.stdout)["checkpoint"]["seq"]
    assert (tmp_path / "var" / "blobs" / "audit" / "checkpoints" / f"{seq:012d}.json").exists()
    assert vault_cli(["audit", "verify"], env).returncode == 0
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": seq})
        conn.execute(text("UPDATE audit_anchor SET head_id = head_id - 1, "
                          "head_hash = (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1)"))
    broken = vault_cli(["audit", "verify"], env)
    assert broken.returncode == 1
    assert f"the trail ends at entry {seq - 1} but checkpoint says {seq}" in broken.stderr


# ---- the object store as deployed (SeaweedFS) ---------------------------------------------------------------


def test_checkpoints_go_to_the_versioned_bucket(vault_app, engine, s3_client, bucket) -> None:
    ids = write(vault_app, 3)
    key = f"audit/checkpoints/{ids[-1]:012d}.json"
    stored = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["alg"] == "Ed25519" and stored["checkpoint"]["seq"] == ids[-1]
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # Reconciliation (orphan blobs) leaves the checkpoints alone.
    with Session(engine) as db:
        report = vault_app.state.services.documents.reconcile(db, min_age=__import__("datetime").timedelta(0))
    assert key not in report["orphans_removed"]
    s3_client.head_object(Bucket=bucket, Key=key)
    # And the trail cut in the database is found against the bucket's checkpoint.
    sql(engine, "DELETE FROM audit_log")
    sql(engine, "DELETE FROM audit_anchor")
    result = verdict(vault_app)
    assert not result.ok and f"checkpoint says {ids[-1]}" in (result.problem or "")


def test_the_periodic_task_checkpoints_a_head_that_moved(app, settings) -> None:
    trail = app.state.services.audit
    ids = write(app, 1, checkpoint=False)  # the process's first entry: checkpointed at once
    trail.every_entries = 1000  # from now on, only the periodic task writes checkpoints
    trail._last_time = __import__("time").monotonic()
    more = write(app, 2, checkpoint=False)
    assert verdict(app).checkpoint.seq == ids[-1]  # type: ignore[union-attr]
    written = trail.checkpoint_if_moved(app.state.services.engine)
    assert written is not None and written.seq == more[-1]
    assert trail.checkpoint_if_moved(app.state.services.engine) is None  # nothing new: nothing written
    assert verdict(app).checkpoint.seq == more[-1]  # type: ignore[union-attr]


def test_a_checkpoint_deleted_from_the_versioned_bucket_is_found(vault_app, engine, s3_client, bucket) -> None:
    first = write(vault_app, 2)
    newest = write(vault_app, 2)
    # Someone with the database and a delete right on the bucket cuts the trail back to the first
    # checkpoint, and deletes the newer one (the versioned bucket keeps a delete marker).
    s3_client.delete_object(Bucket=bucket, Key=f"audit/checkpoints/{newest[-1]:012d}.json")
    with Session(engine) as db:
        back = db.get(AuditEntry, first[-1])
        assert back is not None
        sql(engine, "DELETE FROM audit_log WHERE id > :id", id=back.id)
        sql(engine, "UPDATE audit_anchor SET head_id = :id, head_hash = :hash", id=back.id, hash=back.hash)
    result = verdict(vault_app)
    assert not result.ok and result.code == "checkpoint"
    assert f"checkpoint audit/checkpoints/{newest[-1]:012d}.json was deleted" in (result.problem or "")


# ---- someone with the database who waits for the service to sign what they wrote ---------------------------


def _cut_back_to(engine: Any, keep: int) -> None:
    """Delete the entries after ``keep`` and move the head record back to it."""
    with Session(engine) as db:
        kept = db.get(AuditEntry, keep)
        assert kept is not None
        sql(engine, "DELETE FROM audit_log WHERE id > :id", id=keep)
        sql(engine, "UPDATE audit_anchor SET head_id = :id, head_hash = :hash", id=kept.id, hash=kept.hash)


def test_a_cut_tail_stays_found_after_the_service_writes_and_checkpoints_again(app, engine, settings,
                                                                                 caplog) -> None:
    trail = app.state.services.audit
    ids = write(app, 5)
    folder = settings.data_dir / "blobs" / "audit" / "checkpoints"
    signed = {p.name: p.read_bytes() for p in folder.iterdir()}
    _cut_back_to(engine, ids[2])  # the two newest entries gone, the head record moved back
    # The service goes on: new entries (on SQLite they take the freed ids), then a checkpoint.
    with caplog.at_level(logging.ERROR, logger="vault.gdpr.audit"):
        write(app, 2, checkpoint=False)
        with Session(engine) as db, pytest.raises(audit.CheckpointRefused):
            trail.checkpoint(db)
    assert "audit trail does not match its last checkpoint" in [r.getMessage() for r in caplog.records]
    # No checkpoint was signed over the cut trail, none overwritten.
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == signed
    result = verdict(app)
    assert not result.ok and result.first_bad_id == ids[-1] and result.code in {"rewritten", "gap"}


def test_every_checkpoint_is_checked_not_only_the_newest(app, engine) -> None:
    trail = app.state.services.audit
    first = write(app, 3)
    write(app, 2)
    with Session(engine) as db:  # an older checkpoint's entry rewritten: the newest one still matches
        kept = db.get(AuditEntry, first[-1])
        assert kept is not None
        db.exec(update(AuditEntry).where(col(AuditEntry.id) == first[-1]).values(hash="f" * 64))
        db.commit()
    with Session(engine) as db:
        checked, trouble = trail.checkpoints(db)
    assert trouble is None and first[-1] in [c.seq for c in checked]
    result = verdict(app)
    assert not result.ok


def test_an_older_checkpoint_whose_entry_is_gone_is_found(app, engine) -> None:
    # On PostgreSQL ids are never reused: the service signs a new head past the cut. The older
    # checkpoint still names the entry that was removed.
    trail = app.state.services.audit
    ids = write(app, 4)
    _cut_back_to(engine, ids[1])
    trail.every_entries = 1  # every new entry due for a checkpoint within its transaction
    write(app, 3, checkpoint=False)
    result = verdict(app)
    assert not result.ok and result.first_bad_id == ids[-1]


def test_the_same_head_checkpointed_twice_writes_it_once(app, engine, settings) -> None:
    ids = write(app, 2)
    path = settings.data_dir / "blobs" / "audit" / "checkpoints" / f"{ids[-1]:012d}.json"
    before = path.read_bytes()
    with Session(engine) as db:
        again = app.state.services.audit.checkpoint(db)
    assert again is not None and again.seq == ids[-1] and path.read_bytes() == before
    assert verdict(app).ok


def test_a_trail_rechained_without_its_keyed_part_stays_found_after_the_next_entry(app, engine) -> None:
    ids = write(app, 3)
    with Session(engine) as db:
        db.exec(update(AuditEntry).where(col(AuditEntry.id) == ids[0]).values(actor="staff:someone-else"))
        db.commit()
    _rechain_with_plain_hashes(engine, from_start=True)
    write(app, 1, checkpoint=False)  # the service goes on: it must not start a new keyed part
    with Session(engine) as db:
        anchor = db.get(AuditAnchor, 1)
        assert anchor is not None and anchor.mac_from is None
        with pytest.raises(audit.CheckpointRefused):
            app.state.services.audit.checkpoint(db)
    result = verdict(app)
    assert not result.ok and result.code == "keyed_start"


def _forget(app: Any, engine: Any, name: str) -> None:
    """Delete a server secret, and restart (the process kept it in memory)."""
    sql(engine, "DELETE FROM server_secret WHERE name = :name", name=name)
    app.state.services.keystore._secret_cache.pop(name, None)


def test_a_deleted_checkpoint_key_is_reported_not_recreated(app, engine) -> None:
    write(app, 3)
    _forget(app, engine, audit.CHECKPOINT_KEY)
    with Session(engine) as db, pytest.raises(audit.CheckpointRefused):
        app.state.services.audit.checkpoint(db)
    with Session(engine) as db:
        assert db.exec(text("SELECT count(*) FROM server_secret WHERE name = :n"),  # type: ignore[call-overload]
                       params={"n": audit.CHECKPOINT_KEY}).one()[0] == 0
    result = verdict(app)
    assert not result.ok and result.code == "checkpoint" and "checkpoint key is missing" in (result.problem or "")


def test_a_deleted_audit_key_is_never_replaced(app, engine) -> None:
    # With the key gone, someone rechains the trail as plain hashes and removes its keyed part:
    # the service would key the next entries under a new key and sign them. It refuses to.
    write(app, 3)
    _rechain_with_plain_hashes(engine, from_start=True)
    _forget(app, engine, audit.MAC_KEY)
    with Session(engine) as db, pytest.raises(LookupError):
        audit.record(db, actor="system", action="test.after")
    result = verdict(app)
    assert not result.ok and result.code in {"keyed_start", "rewritten"}


def test_an_overwritten_checkpoint_is_found_in_the_versioned_bucket(vault_app, s3_client, bucket) -> None:
    ids = write(vault_app, 2)
    key = f"audit/checkpoints/{ids[-1]:012d}.json"
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)  # a second version, outside the service
    result = verdict(vault_app)
    assert not result.ok and result.code == "checkpoint" and f"{key} was overwritten" in (result.problem or "")


def test_checkpoints_of_entries_retention_removed_do_not_break_the_trail(app, engine) -> None:
    import time
    from datetime import timedelta

    write(app, 2)
    time.sleep(1)
    write(app, 2)
    with Session(engine) as db:
        assert audit.purge_older_than(db, timedelta(seconds=0.5)) == 2  # the two oldest, then its own entry
        db.commit()
        app.state.services.audit.checkpoint(db)  # fewer entries than before: retention says why
    write(app, 2)
    result = verdict(app)
    assert result.ok and result.entries == 5
