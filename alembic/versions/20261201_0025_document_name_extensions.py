"""Stored file names take their sniffed type's extension: ``x.html`` holding a PDF becomes ``x.pdf``.

Uploads do this since the names were checked against the sniffed type; this renames the rows stored
before, so that no listing, download or export names a PDF as a web page. The rule is the service's
(``vault.storage.service.clean_filename``), copied here as it stands today: a migration never
changes with the code. Data only; the downgrade leaves the names as they are (the old ones are gone).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 02:00:00
"""
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0025'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
              "image/heic": ".heic"}
ALSO_NAMED = {"application/pdf": (".pdf",), "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"), "image/png": (".png",),
              "image/webp": (".webp",), "image/heic": (".heic", ".heif")}
BATCH = 1000

document = sa.table("document", sa.column("id", sa.Uuid()), sa.column("filename", sa.String()),
                    sa.column("media_type", sa.String()))


def renamed(name: str, media_type: str) -> str:
    extension = EXTENSIONS.get(media_type, "")
    known = ALSO_NAMED.get(media_type, (extension,))
    if not extension or not name or name.lower().endswith(known):
        return name
    stem, dot, old = name.rpartition(".")
    if dot and stem and re.fullmatch(r"[A-Za-z0-9]{1,10}", old):  # another type's extension: replaced
        name = stem.rstrip(" .") or "document"
        if name.lower().endswith(known):  # "x.pdf.html": "x.pdf"
            return name
    return name[: 255 - len(extension)] + extension


def upgrade() -> None:
    connection = op.get_bind()
    last = None
    while True:  # in batches, by id: a large table is never read into memory at once
        query = sa.select(document.c.id, document.c.filename, document.c.media_type).order_by(document.c.id)
        if last is not None:
            query = query.where(document.c.id > last)
        rows = connection.execute(query.limit(BATCH)).all()
        if not rows:
            return
        for id_, filename, media_type in rows:
            if (new := renamed(filename, media_type)) != filename:
                connection.execute(sa.update(document).where(document.c.id == id_).values(filename=new))
        last = rows[-1][0]


def downgrade() -> None:
    pass
