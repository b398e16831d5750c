"""GDPR: data-subject requests, export, erasure, retention, audit log (issue 5)."""
