"""Documents an app asks for, and the citizen's choice (RFC 9396, Rich Authorization Requests).

An app asks with ``authorization_details``::

    [{"type": "citizen_documents", "document_types": ["proof_of_address"], "actions": ["read"],
      "purpose": "Inscription à la cantine", "max_documents": 1}]

or with the scope ``documents:read`` alone, which means "the citizen chooses among all types". The
consent page lists the citizen's documents of the requested types, none ticked; the chosen ones
are written into the details (``"documents": [ids]``, RFC 9396 §7) that the code, then the tokens
carry, and the document API serves an app's token only those (and what the app deposited).

The document vault sits a floor above the provider: it is reached through ``DocumentCatalog``,
which the composition root supplies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlmodel import Session

TYPE = "citizen_documents"
MAX_PURPOSE = 200
MAX_REQUESTS = 10
MAX_DOCUMENTS = 50


class InvalidAuthorizationDetails(OAuth2Error):
    """RFC 9396 §5: the app's ``authorization_details`` cannot be honoured as sent."""

    error = "invalid_authorization_details"

    def __init__(self, description: str | None = None, **kwargs: Any) -> None:
        # The description may quote what the app sent; RFC 6749 §5.2 allows only printable ASCII
        # without '"' and '\\' in it (authlib raises ValueError otherwise): the rest becomes '?'.
        if description:
            description = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in description)
        super().__init__(description, **kwargs)


@dataclass(frozen=True)
class DocumentRequest:
    """One ``citizen_documents`` object of the request."""

    document_types: tuple[str, ...]
    purpose: str | None = None
    max_documents: int | None = None

    def detail(self, documents: Sequence[uuid.UUID]) -> dict[str, Any]:
        """The object as granted: the request's fields and the ids the citizen chose."""
        granted: dict[str, Any] = {"type": TYPE, "document_types": list(self.document_types), "actions": ["read"]}
        if self.purpose:
            granted["purpose"] = self.purpose
        if self.max_documents is not None:
            granted["max_documents"] = self.max_documents
        granted["documents"] = [str(d) for d in documents]
        return granted


@dataclass(frozen=True)
class DocumentChoice:
    """One of the citizen's documents, as the consent page shows it."""

    id: uuid.UUID
    type: str
    title: str
    created_at: datetime
    valid_until: date | None


class DocumentCatalog(Protocol):
    """What the provider needs of the document vault (``vault.storage`` implements it)."""

    @property
    def document_types(self) -> Mapping[str, str]: ...  # type → its French label

    def consent_choices(self, db: Session, *, citizen_id: uuid.UUID, types: Sequence[str]) -> list[DocumentChoice]: ...

    def choices_by_id(self, db: Session, *, citizen_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[DocumentChoice]: ...

    def deposited_by(self, db: Session, *, citizen_id: uuid.UUID, client_id: str) -> list[DocumentChoice]: ...


def parse(raw: str | None, *, known_types: Mapping[str, str]) -> list[DocumentRequest]:
    """The document requests of an ``authorization_details`` parameter (none when absent).
    Raises InvalidAuthorizationDetails, saying what is wrong, for anything malformed."""
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidAuthorizationDetails("'authorization_details' is not JSON.") from None
    if not isinstance(value, list) or not value:
        raise InvalidAuthorizationDetails("'authorization_details' must be a non-empty JSON array.")
    if len(value) > MAX_REQUESTS:
        raise InvalidAuthorizationDetails(f"At most {MAX_REQUESTS} authorization details.")
    return [_one(item, known_types) for item in value]


def _one(item: object, known_types: Mapping[str, str]) -> DocumentRequest:
    if not isinstance(item, dict) or item.get("type") != TYPE:
        raise InvalidAuthorizationDetails(f"Each authorization detail must be an object of type '{TYPE}'.")
    types = item.get("document_types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise InvalidAuthorizationDetails("'document_types' must be a non-empty array of document types.")
    if unknown := sorted(set(types) - set(known_types)):
        raise InvalidAuthorizationDetails(f"Unknown document type(s): {', '.join(unknown)[:200]}.")
    if item.get("actions", ["read"]) != ["read"]:
        raise InvalidAuthorizationDetails("The only action is 'read'.")
    purpose = item.get("purpose")
    if purpose is not None and (not isinstance(purpose, str) or len(purpose) > MAX_PURPOSE
                                or any(ord(ch) < 32 for ch in purpose)):
        raise InvalidAuthorizationDetails(f"'purpose' must be plain text of at most {MAX_PURPOSE} characters.")
    limit = item.get("max_documents")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_DOCUMENTS):
        raise InvalidAuthorizationDetails(f"'max_documents' must be a whole number from 1 to {MAX_DOCUMENTS}.")
    if unexpected := sorted(set(item) - {"type", "document_types", "actions", "purpose", "max_documents"}):
        raise InvalidAuthorizationDetails(f"Unknown field(s): {', '.join(unexpected)[:200]}.")
    return DocumentRequest(document_types=tuple(dict.fromkeys(types)), purpose=(purpose or "").strip() or None,
                           max_documents=limit)


def without_document(details: Sequence[Mapping[str, Any]], document_id: uuid.UUID) -> list[dict[str, Any]]:
    """The same details with one document withdrawn."""
    return [{**d, "documents": [i for i in d.get("documents", []) if i != str(document_id)]}
            if d.get("type") == TYPE else dict(d) for d in details]


def granted_documents(details: Sequence[Mapping[str, Any]] | None) -> frozenset[uuid.UUID]:
    """The document ids a token's authorization details grant (none for a token without)."""
    ids: set[uuid.UUID] = set()
    for detail in details or ():
        if detail.get("type") == TYPE:
            ids.update(uuid.UUID(d) for d in detail.get("documents", ()))
    return frozenset(ids)
