"""The migrations and the models describe the same schema: a model changed without its migration
(or the other way round) fails here, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select

import vault.services  # noqa: F401  (registers every domain's tables, as each entry point does)
from vault.db import make_engine
from vault.migrations import include_object, upgrade
from vault.storage.models import Document


def test_models_match_the_migrated_schema(engine) -> None:
    """`alembic revision --autogenerate` on a database at head would find nothing to write."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    return request.getfixturevalue("postgres").create_database(f"vault_migration_{uuid.uuid4().hex[:8]}")


def test_names_stored_before_the_extension_rule_take_their_types_extension(fresh_database: str) -> None:
    """Rows stored when a name kept any extension: after `vault db upgrade` a PDF named ``x.html``
    is ``x.pdf`` (in listings, downloads and the export alike); names already right are untouched."""
    upgrade(fresh_database, "0024")
    engine = make_engine(fresh_database)
    named = {"facture.html": ("application/pdf", "facture.pdf"), "photo.jpeg": ("image/jpeg", "photo.jpeg"),
             "scan.pdf.exe": ("application/pdf", "scan.pdf"), "avis": ("application/pdf", "avis.pdf"),
             "carte.PNG": ("image/png", "carte.PNG"), "image.heif": ("image/heic", "image.heif"),
             "v1.2 final": ("image/webp", "v1.2 final.webp")}
    ids = {}
    with Session(engine) as db:  # kept under legal hold after an erasure: rows without an owner
        for name, (media_type, _) in named.items():
            document = Document(type="other", title="t", filename=name, media_type=media_type, size=1, sha256="x",
                                blob_key=uuid.uuid4().hex, ciphertext_size=1, wrapped_key=b"k", scan_result="clean",
                                legal_hold="test")
            db.add(document)
            ids[name] = document.id
        db.commit()
    upgrade(fresh_database)
    with Session(engine) as db:
        found = {document.id: document.filename for document in db.exec(select(Document))}
    engine.dispose()
    assert {name: found[ids[name]] for name in named} == {name: want for name, (_, want) in named.items()}
