"""Background jobs: outgoing mail, the daily retention, erasures left to a job, validity alerts.

The work itself is plain functions of the services (``vault.jobs.work``), each safe to run twice
and in two workers at once, because a job cut short by a crash runs again: what is done is staged in
the database (the mail outbox's claims, ``FOR UPDATE SKIP LOCKED``; the erasure's tombstone, locked
while a worker finishes it; the validity alerts' records; retention's notices) and never in the job.

Who runs them (``VAULT_JOBS``):

- ``worker`` on PostgreSQL: procrastinate's queue (``vault.jobs.queue``). Web processes defer a job
  after a commit that needs one (mail queued, an erasure staged); ``vault worker`` runs the jobs and
  defers the periodic ones (each once per tick, whatever the number of workers); a worker killed
  mid-job stops sending heartbeats and its job goes back to the queue for another one.
- ``app`` (development, ``make run``; any database): threads of the web process run the same
  functions on the same schedule (``vault.jobs.local``), no queue. ``vault worker`` on SQLite does
  the same in its own process.
"""
