"""Data-subject rights (GDPR): the register of requests, export, erasure and its certificate,
legal holds, retention, the audit log and staff accounts. The top domain (docs/architecture.md):
it reaches the other domains' rows only through their services, in named stages."""
