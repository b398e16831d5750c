"""The migrations and the models describe the same schema: a model changed without its migration
(or the other way round) fails here, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import vault.services  # noqa: F401  (registers every domain's tables, as each entry point does)
from vault.migrations import include_object


def test_models_match_the_migrated_schema(engine) -> None:
    """`alembic revision --autogenerate` on a database at head would find nothing to write."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_object})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []
