"""The document vault over HTTP with real clamd, SeaweedFS (S3) and the databases: upload, list,
download, the encryption at rest, antivirus, limits, apps with tokens, faults — nothing half-kept."""

from __future__ import annotations

import io
import os
import re
import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from tests.factories import MARKER, citizen_browser, make_document, make_oidc_app, pdf, upload
from tests.oidc.oidc_support import authorize, exchange
from tests.services import free_port
from tests.support import Browser
from vault.app import create_app
from vault.crypto import DecryptionError
from vault.storage.models import Document

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def objects(s3_client, bucket: str) -> list[dict]:
    """Every version of the documents' objects (the audit log's checkpoints, under audit/, aside)."""
    try:
        answer = s3_client.list_object_versions(Bucket=bucket)
    except s3_client.exceptions.NoSuchBucket:
        return []
    return [v for v in answer.get("Versions", []) + answer.get("DeleteMarkers", []) if "/" not in v["Key"]]


def pending_multipart(s3_client, bucket: str) -> list:
    try:
        return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except s3_client.exceptions.NoSuchBucket:
        return []


def nothing_kept(engine, s3_client, bucket: str) -> None:
    with Session(engine) as db:
        assert db.exec(select(Document)).all() == []
    assert objects(s3_client, bucket) == []
    assert pending_multipart(s3_client, bucket) == []


# ---- the round trip --------------------------------------------------------------------------------------


def test_upload_list_download_identical_and_encrypted_at_rest(citizen: Browser, engine, s3_client, bucket) -> None:
    content = pdf(3 * 1024 * 1024 + 123)  # several 1 MiB segments
    created = upload(citizen, content, title="Avis 2025", valid_until="31/12/2026")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["media_type"] == "application/pdf" and body["size"] == len(content)
    assert body["title"] == "Avis 2025" and body["valid_until"] == "2026-12-31" and body["scan_result"] == "clean"
    import hashlib

    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert created.headers["location"] == f"/api/v1/documents/{body['id']}"

    listed = citizen.get("/api/v1/documents").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]
    assert citizen.get("/api/v1/documents?type=identity").json()["total"] == 0

    download = citizen.get(f"/api/v1/documents/{body['id']}/content")
    assert download.status_code == 200 and download.content == content
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith('attachment; filename="Avis 2025.pdf"')  # its title
    assert download.headers["x-content-type-options"] == "nosniff"

    stored = objects(s3_client, bucket)
    assert len(stored) == 1
    blob = s3_client.get_object(Bucket=bucket, Key=stored[0]["Key"])["Body"].read()
    assert MARKER not in blob and content[:4096] not in blob
    assert len(blob) > len(content)  # header + one tag per segment
    with Session(engine) as db:
        assert stored[0]["Key"] == db.exec(select(Document.blob_key)).one()  # a random key, not the name


def test_ranged_download(citizen: Browser) -> None:
    content = pdf(2 * 1024 * 1024 + 5000)
    doc = make_document(citizen, content)
    url = f"/api/v1/documents/{doc['id']}/content"
    for header, expected in (("bytes=0-99", content[:100]), ("bytes=-100", content[-100:]),
                             ("bytes=1048000-1049999", content[1048000:1050000]), ("bytes=2097000-", content[2097000:])):
        part = citizen.get(url, headers={"Range": header})
        assert part.status_code == 206 and part.content == expected, header
    assert part.headers["content-range"] == f"bytes 2097000-{len(content) - 1}/{len(content)}"
    assert citizen.get(url, headers={"Range": f"bytes={len(content)}-"}).status_code == 416
    assert citizen.get(url, headers={"Range": "bytes=-0"}).status_code == 416
    head = citizen.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(content))
    assert head.headers["etag"] == f'"{doc["sha256"]}"' and head.headers["content-type"] == "application/pdf"
    head_range = citizen.head(url, headers={"Range": "bytes=0-99"})
    assert head_range.status_code == 206 and head_range.headers["content-length"] == "100"
    # Invalid ranges are ignored (RFC 9110): the whole document, never a guess at what was meant.
    for header in ("bytes=5-2", "bytes=--5", "bytes=1_0-2_0", "bytes=+1-2", "bytes=1-2,5-6", "octets=0-1", "bytes=-"):
        whole = citizen.get(url, headers={"Range": header})
        assert whole.status_code == 200 and whole.content == content, header


def test_list_pagination_bounds(citizen: Browser) -> None:
    assert upload(citizen, pdf()).status_code == 201
    for query in ("offset=-1", "offset=9223372036854775808", "limit=0", "limit=201", "limit=abc"):
        answer = citizen.get(f"/api/v1/documents?{query}")
        assert answer.status_code == 422, query
    beyond = citizen.get("/api/v1/documents?offset=2147483647").json()
    assert beyond["items"] == [] and beyond["total"] == 1


def test_change_and_delete(citizen: Browser, engine, s3_client, bucket) -> None:
    doc = make_document(citizen)
    csrf = {"X-CSRF-Token": citizen.cookies["csrf"]}
    changed = citizen.patch(f"/api/v1/documents/{doc['id']}", json={"title": "Nouveau titre", "type": "income"},
                            headers=csrf)
    assert changed.status_code == 200 and changed.json()["title"] == "Nouveau titre"
    bad = citizen.patch(f"/api/v1/documents/{doc['id']}", json={"type": "passport"}, headers=csrf)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_input"
    # An empty type or a title of control characters is refused, not silently replaced.
    for change, field in (({"type": ""}, "type"), ({"title": "\x00\x01"}, "title"), ({"title": "   "}, "title")):
        refused = citizen.patch(f"/api/v1/documents/{doc['id']}", json=change, headers=csrf)
        assert refused.status_code == 422 and set(refused.json()["fields"]) == {field}, change
    # null means "no change"; "" removes the validity date.
    dated = citizen.patch(f"/api/v1/documents/{doc['id']}", json={"title": None, "valid_until": "2030-01-31"},
                          headers=csrf).json()
    assert dated["title"] == "Nouveau titre" and dated["type"] == "income" and dated["valid_until"] == "2030-01-31"
    undated = citizen.patch(f"/api/v1/documents/{doc['id']}", json={"valid_until": ""}, headers=csrf).json()
    assert undated["valid_until"] is None and undated["title"] == "Nouveau titre"
    assert citizen.delete(f"/api/v1/documents/{doc['id']}").status_code == 403  # no CSRF header
    assert citizen.delete(f"/api/v1/documents/{doc['id']}", headers=csrf).status_code == 204
    assert citizen.get(f"/api/v1/documents/{doc['id']}").status_code == 404
    nothing_kept(engine, s3_client, bucket)  # every version gone


# ---- refusals: nothing is kept -------------------------------------------------------------------------------


def test_eicar_is_refused_and_named(citizen: Browser, engine, s3_client, bucket) -> None:
    answer = upload(citizen, b"%PDF-1.4\n" + EICAR + b"\n%%EOF" + os.urandom(9 * 1024 * 1024)[:0])
    assert answer.status_code == 422 and answer.json()["error"] == "infected"
    assert "Eicar-Test-Signature" in answer.json()["detail"]
    nothing_kept(engine, s3_client, bucket)


def test_eicar_in_a_large_file_is_refused(citizen: Browser, engine, s3_client, bucket) -> None:
    content = pdf(6 * 1024 * 1024) + EICAR  # spans several multipart parts
    answer = upload(citizen, content)
    assert answer.status_code == 422 and answer.json()["error"] == "infected"
    nothing_kept(engine, s3_client, bucket)


@pytest.mark.parametrize(("content", "status", "error"), [
    (b"MZ\x90\x00" + os.urandom(4000), 415, "unsupported_type"),  # a renamed executable
    (b"", 422, "empty_file"),
    (b"%PDF", 415, "unsupported_type"),  # too short to be anything
    (b"<html><script>alert(1)</script></html>", 415, "unsupported_type"),
])
def test_bad_files_are_refused(citizen: Browser, engine, s3_client, bucket, content: bytes, status: int,
                               error: str) -> None:
    answer = upload(citizen, content, filename="releve.pdf")
    assert answer.status_code == status and answer.json()["error"] == error
    nothing_kept(engine, s3_client, bucket)


def test_too_large_is_refused_while_reading(citizen: Browser, engine, s3_client, bucket) -> None:
    answer = upload(citizen, pdf(9 * 1024 * 1024))  # the limit is 8 MB here
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    nothing_kept(engine, s3_client, bucket)


def test_quota(citizen: Browser, engine) -> None:
    for _ in range(5):
        assert upload(citizen, pdf()).status_code == 201
    full = upload(citizen, pdf())
    assert full.status_code == 413 and full.json()["error"] == "quota_exceeded"
    with Session(engine) as db:
        assert len(db.exec(select(Document)).all()) == 5


def test_two_uploads_finishing_together_cannot_both_pass_the_quota(vault_app, citizen: Browser, engine,
                                                                   s3_client, bucket) -> None:
    import threading
    import time

    from vault.auth.models import Citizen
    from vault.storage.exceptions import QuotaExceeded
    from vault.storage.service import Actor, validate_meta

    for _ in range(4):  # room for one more document (quota: 5)
        assert upload(citizen, pdf()).status_code == 201
    service = vault_app.state.services.documents
    with Session(engine) as db:
        owner = db.exec(select(Citizen.id)).one()
    actor = Actor(kind="citizen", citizen_id=owner, actor_id=str(owner), name="docs")
    finished = []
    for _ in range(2):  # both started while there was room, both stored
        with Session(engine) as db:
            pending = service.begin_upload(db, owner)
            db.commit()
        pending.pipeline.feed(pdf())
        finished.append((pending, pending.pipeline.finish()))
    meta = validate_meta({"type": "other"}, filename="a.pdf")

    first = Session(engine)
    service.complete_upload(first, actor=actor, pending=finished[0][0], stored=finished[0][1], meta=meta)
    outcome: list[str] = []

    def second() -> None:
        with Session(engine) as db:
            try:
                service.complete_upload(db, actor=actor, pending=finished[1][0], stored=finished[1][1], meta=meta)
                db.commit()
                outcome.append("kept")
            except QuotaExceeded:
                outcome.append("quota_exceeded")

    racer = threading.Thread(target=second)
    racer.start()
    time.sleep(0.5)
    assert racer.is_alive()  # it waits for the first one to be committed...
    first.commit()
    first.close()
    racer.join(30)
    assert outcome == ["quota_exceeded"]  # ...then sees it, and the vault is full
    service.delete_blob_later(finished[1][0].blob_key)  # what the route does on that error
    with Session(engine) as db:
        assert len(db.exec(select(Document)).all()) == 5
    assert len(objects(s3_client, bucket)) == 5


def test_a_row_that_cannot_be_written_leaves_no_object(vault_app, citizen: Browser, engine, s3_client,
                                                       bucket, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    service = vault_app.state.services.documents

    def database_gone(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("the database went away"))

    monkeypatch.setattr(service, "complete_upload", database_gone)
    answer = upload(citizen, pdf())
    assert answer.status_code == 503
    monkeypatch.undo()
    nothing_kept(engine, s3_client, bucket)


def test_truncated_multipart_body(citizen: Browser, engine, s3_client, bucket) -> None:
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode() + pdf(200_000)  # no closing boundary
    answer = citizen.post("/api/v1/documents", content=body,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                   "X-CSRF-Token": citizen.cookies["csrf"]})
    assert answer.status_code == 422 and "interrompu" in answer.json()["detail"]
    nothing_kept(engine, s3_client, bucket)


@pytest.mark.parametrize(("sent", "stored"), [
    ("../../etc/passwd.pdf", "passwd.pdf"),
    ("C:\\Users\\marie\\avis.pdf", "avis.pdf"),
    ("fac\x00tu\x1bre\x7f.pdf", "facture.pdf"),
    ("свидетельство о рождении.pdf", "свидетельство о рождении.pdf"),
    ("a" * 500 + ".pdf", "a" * 251 + ".pdf"),  # 255 characters, the extension kept
    ("../..", "document.pdf"),  # nothing usable: a name from the sniffed type
    ("\x01\x02", "document.pdf"),
])
def test_odd_filenames(citizen: Browser, sent: str, stored: str) -> None:
    # Built by hand: HTTP clients escape control characters, an attacker does not.
    body = (b'--B\r\nContent-Disposition: form-data; name="type"\r\n\r\nother\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="' + sent.replace("\r\n", "").encode()
            + b'"\r\nContent-Type: application/pdf\r\n\r\n' + pdf() + b"\r\n--B--\r\n")
    created = citizen.post("/api/v1/documents", content=body, headers={
        "Content-Type": "multipart/form-data; boundary=B", "X-CSRF-Token": citizen.cookies["csrf"]})
    assert created.status_code == 201, created.text
    assert created.json()["filename"] == stored
    download = citizen.get(f"/api/v1/documents/{created.json()['id']}/content")
    header = download.headers["content-disposition"]
    assert header.isascii() and "\r" not in header and "\n" not in header and "/" not in header.split(";")[1]


def test_field_names_in_rfc2231_form(citizen: Browser) -> None:
    # name*=UTF-8''… (RFC 2231/5987, as some HTTP clients write non-ASCII names): the field arrives
    # under its decoded name, and a refused value is named in the error like any other.
    def upload(title: bytes):
        body = (b"--B\r\nContent-Disposition: form-data; name*=UTF-8''title\r\n\r\n" + title + b"\r\n"
                b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
                b"Content-Type: application/pdf\r\n\r\n" + pdf() + b"\r\n--B--\r\n")
        return citizen.post("/api/v1/documents", content=body, headers={
            "Content-Type": "multipart/form-data; boundary=B", "X-CSRF-Token": citizen.cookies["csrf"]})

    created = upload("Quittance d'été".encode())
    assert created.status_code == 201 and created.json()["title"] == "Quittance d'été", created.text
    too_long = upload(b"x" * 1001)
    assert too_long.status_code == 422 and "title" in too_long.text, too_long.text


def test_a_raw_body_without_name_or_title(citizen: Browser) -> None:
    bare = citizen.post("/api/v1/documents", content=pdf(), headers={
        "Content-Type": "application/pdf", "X-Document-Type": "tax_notice", "X-CSRF-Token": citizen.cookies["csrf"]})
    assert bare.status_code == 201, bare.text
    # Named after the sniffed type, titled after the document's type.
    assert bare.json()["filename"] == "document.pdf" and bare.json()["title"] == "Avis d'imposition"
    # Titles: percent-encoded UTF-8 (documented), raw UTF-8 and Latin-1 all arrive as typed.
    for sent in ("%C3%89tat%20civil", "État civil".encode(), "État civil".encode("latin-1")):
        titled = citizen.post("/api/v1/documents", content=pdf(), headers={
            "Content-Type": "application/pdf", "X-Document-Title": sent, "X-CSRF-Token": citizen.cookies["csrf"]})
        assert titled.status_code == 201 and titled.json()["title"] == "État civil", sent


# ---- who may touch a document -------------------------------------------------------------------------------------


def test_another_citizens_document_is_404(vault_app, citizen: Browser) -> None:
    doc = make_document(citizen)
    with citizen_browser(vault_app, email="other-docs@example.org") as other:
        for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            answer = other.request(method, f"/api/v1/documents/{doc['id']}{path}",
                                   headers={"X-CSRF-Token": other.cookies["csrf"]})
            assert answer.status_code == 404
    assert citizen.get(f"/api/v1/documents/{doc['id']}").status_code == 200


def test_anonymous_is_refused(vault_app) -> None:
    with Browser(vault_app) as anonymous:
        assert anonymous.get("/api/v1/documents").status_code == 401


def test_app_token_deposits_and_reads_with_scopes(citizen: Browser, engine) -> None:
    app = make_oidc_app(engine, scope="openid profile documents:read documents:write", name="Portail des démarches")
    flow = authorize(citizen, app, scope="openid documents:write documents:read")
    token = exchange(citizen, flow).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    deposited = citizen.post("/api/v1/documents", content=pdf(), headers={
        **bearer, "Content-Type": "application/pdf", "X-Document-Type": "proof_of_address",
        "X-Document-Title": "Attestation%20de%20domicile", "Content-Disposition": 'attachment; filename="attestation.pdf"'})
    assert deposited.status_code == 201, deposited.text
    assert deposited.json()["source_name"] == "Portail des démarches"
    assert citizen.get("/api/v1/documents", headers=bearer).json()["total"] == 1
    # The citizen sees it, and sees who did what.
    mine = citizen.get("/api/v1/documents").json()["items"][0]
    assert mine["title"] == "Attestation de domicile" and mine["source"] == app.client_id
    log = citizen.get("/api/v1/me/access-log").json()
    assert [(e["action"], e["actor_name"]) for e in log] == [("list", "Portail des démarches"),
                                                              ("deposit", "Portail des démarches")]
    assert "Portail des démarches" in citizen.get("/account/access-log").text
    assert "Déposé par Portail des démarches le" in citizen.get("/documents").text  # provenance, in the pages too
    assert "Déposé par Portail des démarches le" in citizen.get(f"/documents/{mine['id']}").text


def test_token_without_the_scope_is_403(citizen: Browser, engine) -> None:
    app = make_oidc_app(engine, scope="openid profile documents:read")
    token = exchange(citizen, authorize(citizen, app, scope="openid documents:read")).json()["access_token"]
    answer = citizen.post("/api/v1/documents", content=pdf(), headers={"Authorization": f"Bearer {token}",
                                                                       "Content-Type": "application/pdf"})
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    assert 'scope="documents:deposit"' in answer.headers["www-authenticate"]
    plain = exchange(citizen, authorize(citizen, app, scope="openid profile")).json()["access_token"]
    assert citizen.get("/api/v1/documents", headers={"Authorization": f"Bearer {plain}"}).status_code == 403


def _deposit(citizen: Browser, bearer: dict[str, str], title: str) -> dict:
    answer = citizen.post("/api/v1/documents", content=pdf(), headers={
        **bearer, "Content-Type": "application/pdf", "X-Document-Type": "proof_of_address", "X-Document-Title": title})
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.mark.parametrize("deposit_scope", ["documents:deposit", "documents:write"])
def test_an_app_that_deposits_sees_and_changes_only_what_it_deposited(citizen: Browser, engine,
                                                                      deposit_scope: str) -> None:
    """documents:deposit (and its former name documents:write) adds documents; the app reads,
    renames and deletes its own deposits and never sees the citizen's own documents."""
    own = make_document(citizen, title="Mon avis d'imposition")
    app = make_oidc_app(engine, scope=f"openid {deposit_scope}", name="Cantine")
    asked = authorize(citizen, app, scope=f"openid {deposit_scope}", consent=None)
    assert asked.steps == ["consent"]
    assert "jamais ceux que vous avez ajoutés" in asked.response.text  # the consent page says what it means
    token = exchange(citizen, authorize(citizen, app, scope=f"openid {deposit_scope}")).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    deposited = _deposit(citizen, bearer, "Facture de cantine")
    listed = citizen.get("/api/v1/documents", headers=bearer).json()
    assert [d["id"] for d in listed["items"]] == [deposited["id"]] and listed["total"] == 1
    for method in ("GET", "PATCH", "DELETE"):
        answer = citizen.request(method, f"/api/v1/documents/{own['id']}", headers=bearer, json={"title": "x"})
        assert answer.status_code == 404, (method, answer.text)
    assert citizen.get(f"/api/v1/documents/{own['id']}/content", headers=bearer).status_code == 404
    assert citizen.patch(f"/api/v1/documents/{deposited['id']}", headers=bearer,
                         json={"title": "Facture de mars"}).json()["title"] == "Facture de mars"
    assert citizen.get(f"/api/v1/documents/{deposited['id']}/content", headers=bearer).status_code == 200
    assert citizen.delete(f"/api/v1/documents/{deposited['id']}", headers=bearer).status_code == 204
    assert [d["title"] for d in citizen.get("/api/v1/documents").json()["items"]] == ["Mon avis d'imposition"]


def test_an_app_that_reads_and_deposits_cannot_change_the_citizens_documents(citizen: Browser, engine) -> None:
    """Reading the vault does not make an app its manager: renaming or deleting a document it did
    not deposit is refused (403) and the document stays as it was."""
    own = make_document(citizen, title="Justificatif de domicile")
    other_app = make_oidc_app(engine, scope="openid documents:deposit", name="Bibliothèque")
    other_bearer = {"Authorization": "Bearer " + exchange(citizen, authorize(
        citizen, other_app, scope="openid documents:deposit")).json()["access_token"]}
    others = _deposit(citizen, other_bearer, "Carte de lecteur")
    app = make_oidc_app(engine, scope="openid documents:read documents:deposit", name="Portail")
    bearer = {"Authorization": "Bearer " + exchange(citizen, authorize(
        citizen, app, scope="openid documents:read documents:deposit",
        documents=(own["id"], others["id"]))).json()["access_token"]}
    for document in (own, others):
        assert citizen.get(f"/api/v1/documents/{document['id']}", headers=bearer).status_code == 200
        renamed = citizen.patch(f"/api/v1/documents/{document['id']}", headers=bearer, json={"title": "Effacé"})
        assert renamed.status_code == 403 and renamed.json()["error"] == "forbidden"
        assert citizen.delete(f"/api/v1/documents/{document['id']}", headers=bearer).status_code == 403
    titles = sorted(d["title"] for d in citizen.get("/api/v1/documents").json()["items"])
    assert titles == ["Carte de lecteur", "Justificatif de domicile"]


# ---- faults ---------------------------------------------------------------------------------------------------


def test_clamd_down_fails_closed(vault_settings, engine, s3_client, bucket) -> None:
    app = create_app(vault_settings.model_copy(update={"clamd_address": f"tcp://127.0.0.1:{free_port()}"}),
                     engine=engine)
    with citizen_browser(app, email="noclamd@example.org") as browser:
        answer = upload(browser, pdf())
    assert answer.status_code == 503 and answer.json()["error"] == "unavailable"
    nothing_kept(engine, s3_client, bucket)


def test_object_store_down_fails_closed(vault_settings, engine) -> None:
    app = create_app(vault_settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}),
                     engine=engine)
    with citizen_browser(app, email="nos3@example.org") as browser:
        answer = upload(browser, pdf())
    assert answer.status_code == 503
    with Session(engine) as db:
        assert db.exec(select(Document)).all() == []


def _tamper(s3_client, bucket: str, change) -> None:
    key = objects(s3_client, bucket)[0]["Key"]
    blob = bytearray(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    s3_client.put_object(Bucket=bucket, Key=key, Body=bytes(change(blob)))


def test_tampered_object_fails_before_any_byte(citizen: Browser, s3_client, bucket) -> None:
    doc = make_document(citizen, pdf(100_000))

    def flip(blob: bytearray) -> bytearray:
        blob[500] ^= 1
        return blob

    _tamper(s3_client, bucket, flip)
    answer = citizen.get(f"/api/v1/documents/{doc['id']}/content")
    assert answer.status_code == 500 and answer.json()["error"] == "damaged" and "endommagé" in answer.json()["detail"]


def test_a_document_whose_object_vanished_says_so(citizen: Browser, s3_client, bucket) -> None:
    doc = make_document(citizen, pdf(100_000))
    for version in objects(s3_client, bucket):
        s3_client.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    answer = citizen.get(f"/api/v1/documents/{doc['id']}/content")
    assert answer.status_code == 500 and answer.json()["error"] == "content_missing"
    assert "introuvable" in answer.json()["detail"]
    page = citizen.get(f"/documents/{doc['id']}/download")
    assert page.status_code == 500 and "introuvable" in page.text
    other = pdf(50_000, marker=b"encore")  # the store's connections still serve the next reads
    again = make_document(citizen, other)
    assert citizen.get(f"/api/v1/documents/{again['id']}/content").content == other


def test_truncated_object_aborts_the_download(citizen: Browser, s3_client, bucket) -> None:
    doc = make_document(citizen, pdf(3 * 1024 * 1024))
    _tamper(s3_client, bucket, lambda blob: blob[: 2 * 1024 * 1024])  # the last segment is gone
    with pytest.raises(DecryptionError):  # the server aborts mid-stream: never a complete-looking file
        citizen.get(f"/api/v1/documents/{doc['id']}/content")


# ---- operations ---------------------------------------------------------------------------------------------------


def test_kek_rotation_keeps_documents_readable(vault_app, citizen: Browser, engine) -> None:
    from vault.storage.models import CitizenKey

    content = pdf()
    doc = make_document(citizen, content)
    keys = vault_app.state.services.keys
    before = keys.active_version
    keys.activate(keys.add_version())
    assert vault_app.state.services.kek.rewrap().rewrapped["citizen keys"] == 1
    with Session(engine) as db:
        assert db.exec(select(CitizenKey.kek_version)).one() == before + 1
    assert citizen.get(f"/api/v1/documents/{doc['id']}/content").content == content


def test_reconcile_removes_orphans(vault_app, citizen: Browser, engine, s3_client, bucket) -> None:
    doc = make_document(citizen)
    s3_client.put_object(Bucket=bucket, Key="0rphan" + uuid.uuid4().hex, Body=b"left by a crash")
    service = vault_app.state.services.documents
    with Session(engine) as db:
        young = service.reconcile(db)
        assert young["orphans_removed"] == [] and len(young["orphans_kept_recent"]) == 1
        report = service.reconcile(db, min_age=timedelta(0))
    assert len(report["orphans_removed"]) == 1 and report["documents_without_blob"] == []
    assert len(objects(s3_client, bucket)) == 1
    assert citizen.get(f"/api/v1/documents/{doc['id']}/content").status_code == 200


# ---- pages: "Mes justificatifs" (no JavaScript needed) -----------------------------------------------------------


def page_upload(browser: Browser, content: bytes, filename: str = "facture.pdf", **fields: str):
    token = browser.form_token("/documents")
    return browser.post("/documents", data={"csrf_token": token, "type": "proof_of_address", **fields},
                        files={"file": (filename, io.BytesIO(content), "application/pdf")})


def test_documents_page_shows_a_refused_field_beside_that_field(citizen: Browser) -> None:
    """A bad validity date is said under "Valable jusqu'au", not under the file, and nothing is kept."""
    refused = page_upload(citizen, pdf(), title="Facture", valid_until="99/99/2020")
    assert refused.status_code == 422
    assert re.search(r'has-error">\s*<label for="valid_until"', refused.text)
    assert 'id="file-error"' not in refused.text
    assert citizen.get("/api/v1/documents").json()["total"] == 0


def test_documents_page_add_list_download_rename_delete(citizen: Browser, engine, s3_client, bucket) -> None:
    from datetime import date

    assert "Votre coffre-fort est vide" in citizen.get("/documents").text
    soon = (date.today() + timedelta(days=10)).strftime("%d/%m/%Y")
    added = page_upload(citizen, pdf(), title="Facture EDF janvier", valid_until=soon)
    assert added.status_code == 303 and added.headers["location"] == "/documents?notice=added"
    page = citizen.get("/documents").text
    assert "Justificatif de domicile" in page and "Facture EDF janvier" in page
    assert "expire dans 10 jour(s)" in page or "expire dans 9 jour(s)" in page  # 9: midnight passed meanwhile
    with Session(engine) as db:
        doc_id = db.exec(select(Document.id)).one()
    download = citizen.get(f"/documents/{doc_id}/download")
    assert download.status_code == 200 and download.content.startswith(b"%PDF")

    renamed = citizen.submit(f"/documents/{doc_id}", {"title": "EDF", "type": "income", "valid_until": ""})
    assert renamed.status_code == 303
    assert "Justificatif de revenus" in citizen.get("/documents").text
    confirm = citizen.get(f"/documents/{doc_id}?delete=1")
    assert "Voulez-vous vraiment supprimer" in confirm.text
    deleted = citizen.submit(f"/documents/{doc_id}?delete=1", {}, action=f"/documents/{doc_id}/delete")
    assert deleted.headers["location"] == "/documents?notice=deleted"
    assert "Le document a été supprimé." in citizen.get(deleted.headers["location"]).text
    nothing_kept(engine, s3_client, bucket)


def test_documents_page_explains_refusals(citizen: Browser, engine, s3_client, bucket) -> None:
    infected = page_upload(citizen, b"%PDF-1.4\n" + EICAR)
    assert infected.status_code == 422 and "contient un virus (Eicar-Test-Signature" in infected.text
    wrong_type = page_upload(citizen, b"MZ" + os.urandom(100), filename="photo.jpg")
    assert wrong_type.status_code == 415 and "Envoyez un PDF ou une photo" in wrong_type.text
    bad_date = page_upload(citizen, pdf(), valid_until="31/02/2026")
    assert bad_date.status_code == 422 and "date de validité" in bad_date.text
    no_csrf = citizen.post("/documents", data={"type": "other"}, files={"file": ("a.pdf", io.BytesIO(pdf()), "application/pdf")})
    assert no_csrf.status_code == 403
    nothing_kept(engine, s3_client, bucket)


def test_documents_page_needs_login(vault_app) -> None:
    with Browser(vault_app) as anonymous:
        assert anonymous.get("/documents").headers["location"] == "/login?next=/documents"


def test_stored_objects_are_tinks_format_both_ways(vault_app, citizen: Browser, engine, s3_client, bucket) -> None:
    from tests.crypto.test_streaming import tink_decrypt, tink_encrypt

    content = pdf(1_500_000)  # two segments
    doc = make_document(citizen, content)
    with Session(engine) as db:
        row = db.get(Document, uuid.UUID(doc["id"]))
        key = vault_app.state.services.documents.document_key(db, row)
    stored = objects(s3_client, bucket)[0]["Key"]
    blob = s3_client.get_object(Bucket=bucket, Key=stored)["Body"].read()
    assert tink_decrypt(blob, key=key, ad=uuid.UUID(doc["id"]).bytes) == content  # Tink reads ours
    s3_client.put_object(Bucket=bucket, Key=stored, Body=tink_encrypt(content, key=key, ad=uuid.UUID(doc["id"]).bytes))
    assert citizen.get(f"/api/v1/documents/{doc['id']}/content").content == content  # we read Tink's


def test_a_renamed_document_downloads_under_its_new_title(citizen: Browser) -> None:
    doc = make_document(citizen, filename="scan_0042.pdf", title="Avis d'imposition 2025")
    first = citizen.get(f"/api/v1/documents/{doc['id']}/content").headers["content-disposition"]
    assert "filename*=UTF-8''Avis%20d%27imposition%202025.pdf" in first
    citizen.patch(f"/api/v1/documents/{doc['id']}", json={"title": "Avis 2025 (corrigé)"},
                  headers={"X-CSRF-Token": citizen.cookies["csrf"]})
    renamed = citizen.get(f"/api/v1/documents/{doc['id']}/download".replace("/api/v1", "")).headers["content-disposition"]
    assert "Avis%202025%20%28corrig%C3%A9%29.pdf" in renamed and "scan_0042" not in renamed


def test_deleting_a_document_with_the_session_needs_a_recent_proof(app, engine) -> None:
    """A session that has not proved it is the citizen's for 5 minutes (a stolen cookie, say)
    deletes nothing, on the page or on the API: the citizen confirms first, then deletes."""
    from urllib.parse import quote

    from tests.factories import stale_proof
    from tests.support import PASSWORD

    with citizen_browser(app) as citizen:
        doc_id = make_document(citizen)["id"]
        stale_proof(engine)
        ask = f"/documents/{doc_id}?delete=1"
        confirm = f"/account/confirm?next={quote(ask)}"
        api = citizen.delete(f"/api/v1/documents/{doc_id}", headers={"X-CSRF-Token": citizen.cookies["csrf"]})
        assert api.status_code == 403, api.text
        assert api.json()["error"] == "step_up_required" and api.json()["location"] == confirm
        page = citizen.submit(ask, {}, action=f"/documents/{doc_id}/delete")
        assert page.status_code == 303 and page.headers["location"] == confirm
        assert citizen.get(f"/api/v1/documents/{doc_id}").status_code == 200  # still there
        confirmed = citizen.submit(confirm, {"password": PASSWORD, "next": ask})
        assert confirmed.status_code == 303 and confirmed.headers["location"] == ask
        deleted = citizen.submit(ask, {}, action=f"/documents/{doc_id}/delete")
        assert deleted.status_code == 303 and deleted.headers["location"] == "/documents?notice=deleted"
        assert citizen.get(f"/api/v1/documents/{doc_id}").status_code == 404
