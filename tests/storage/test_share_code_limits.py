"""Guessing share-link codes from one client address is limited over every link (each link also
locks itself after its own wrong codes): past the limit the answer stays the same and no code is
checked, the right one included, until the growing lock ends. Another client is not affected."""

from __future__ import annotations

import logging

import pytest
from sqlmodel import Session, select

from tests.factories import citizen_browser, make_document
from tests.storage.test_share_links import enter_code, share
from tests.support import Browser
from vault.app import create_app
from vault.storage.models import ShareLink


@pytest.fixture
def limited_app(vault_settings, engine):
    return create_app(vault_settings.model_copy(update={"share_code_free_failures_per_address": 3,
                                                        "trusted_proxies": "10.0.0.0/24"}), engine=engine)


def test_one_client_guessing_codes_over_many_links_is_stopped(limited_app, engine, caplog) -> None:
    with citizen_browser(limited_app, email="sharer@example.org") as citizen:
        path, code = share(citizen, make_document(citizen)["id"])
    with Browser(limited_app) as guesser, caplog.at_level(logging.INFO):
        for n in range(3):  # codes for links that do not exist, as a sweep would
            assert enter_code(guesser, f"/s/unknown-link-{n:02d}-aaaaaaaaaaaaaaaa", "ABCD-EF23").status_code == 400
        refused = enter_code(guesser, path, code)
        assert refused.status_code == 400 and "Ce code ne correspond pas à ce lien" in refused.text
        assert "set-cookie" not in refused.headers or "share" not in refused.headers["set-cookie"].split("=")[0]
    with Session(engine) as db:
        link = db.exec(select(ShareLink)).one()
        assert link.first_opened_at is None and link.failed_codes == 0  # nothing was checked
    over = [r for r in caplog.records if r.getMessage() == "request over the limit"]
    assert [(getattr(r, "action", None), getattr(r, "limit", None)) for r in over] == [("share", "address")]
    assert all("testclient" not in str(r.__dict__.get("limit")) for r in over)

    with Browser(limited_app, client=("10.0.0.7", 50000)) as other:  # another client, behind the trusted proxy
        other.headers["X-Forwarded-For"] = "198.51.100.4"
        opened = enter_code(other, path, code)
        assert opened.status_code == 303 and opened.headers["location"] == path
