"""The job queue's tables (procrastinate) on PostgreSQL: jobs, their events, the workers and their
heartbeats, the periodic deferrals. Nothing on SQLite (development runs the jobs in-process).

The SQL is procrastinate's own ``schema.sql``, read from the installed package (the version pinned in
constraints.txt, 3.10.0), so that the tables are exactly the ones its worker expects; the app never
creates them itself.

A later procrastinate release: procrastinate versions its schema with SQL files shipped in the package
(``procrastinate/sql/migrations/<version>_<nn>_<name>.sql``; since 3.0 the ``*_pre_*`` ones go before
the new code is deployed, the ``*_post_*`` ones after every worker runs it). Upgrading adds one alembic
migration per step that executes, in order, the files newer than the version applied here (read from
the package like below, or copied into the migration), with ``vault db upgrade`` before the new image
for the ``pre`` files and a second migration for the ``post`` files once every process runs it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 16:00:00
"""
from collections.abc import Sequence
from importlib import resources

from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What procrastinate 3.10.0's schema.sql creates (the downgrade drops them all).
TABLES = ("procrastinate_events", "procrastinate_periodic_defers", "procrastinate_jobs", "procrastinate_workers")
TYPES = ("procrastinate_job_to_defer_v1", "procrastinate_job_event_type", "procrastinate_job_status")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    # Through the driver, without parameters: psycopg then neither binds ``%`` nor ``:name``, and runs
    # the whole script (several statements) in alembic's transaction.
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(schema)
    finally:
        cursor.close()


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    # Its functions (the triggers went with the tables), then its types.
    op.execute("""
        DO $$
        DECLARE f record;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
            LOOP
                EXECUTE 'DROP FUNCTION IF EXISTS ' || f.signature || ' CASCADE';
            END LOOP;
        END $$;
    """)
    for type_name in TYPES:
        op.execute(f"DROP TYPE IF EXISTS {type_name} CASCADE")
