"""argon2id takes its memory cost (64 MiB by default) for each computation: a burst of logins must
not multiply it without bound. At most VAULT_ARGON2_CONCURRENCY computations run at once; a login
that waits longer than VAULT_ARGON2_WAIT_SECONDS for its turn answers 503 with Retry-After."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlmodel import Session, select

from tests.factories import make_citizen
from tests.support import Browser
from vault.app import create_app
from vault.auth.models import LoginThrottle

# Costly enough (tens of milliseconds each) that logins started together overlap.
SLOW_ARGON2 = {"argon2_time_cost": 3, "argon2_memory_kib": 32 * 1024}


def concurrent_logins(app, emails: list[str]) -> list[httpx.Response]:
    # Each browser opens the login form first; then every POST goes out at the same moment.
    browsers = [Browser(app) for _ in emails]
    tokens = [browser.form_token("/login") for browser in browsers]

    def log_in(n: int) -> httpx.Response:
        return browsers[n].post("/login", data={"email": emails[n], "password": "une phrase de passe solide",
                                                "csrf_token": tokens[n]})

    try:
        with ThreadPoolExecutor(max_workers=len(emails)) as pool:
            return list(pool.map(log_in, range(len(emails))))
    finally:
        for browser in browsers:
            browser.close()


def test_concurrent_logins_never_run_more_argon2_than_the_bound(settings, engine) -> None:
    app = create_app(settings.model_copy(update={**SLOW_ARGON2, "argon2_concurrency": 2,
                                                 "argon2_wait_seconds": 60}), engine=engine)
    emails = [make_citizen(app, password="une phrase de passe solide").email for _ in range(8)]
    slots = app.state.services.accounts.hasher.slots
    slots.peak = 0
    answers = concurrent_logins(app, emails)
    assert [a.status_code for a in answers] == [303] * 8  # every one waited its turn, none refused
    assert slots.peak == 2  # the bound was reached, never passed
    assert slots.running == 0


def test_logins_beyond_the_wait_answer_503_with_retry_after(settings, engine) -> None:
    app = create_app(settings.model_copy(update={**SLOW_ARGON2, "argon2_concurrency": 1,
                                                 "argon2_wait_seconds": 0.01}), engine=engine)
    emails = [make_citizen(app, password="une phrase de passe solide").email for _ in range(8)]
    started = time.monotonic()
    answers = concurrent_logins(app, emails)
    assert time.monotonic() - started < 30  # no hang
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {303, 503} and 303 in statuses and 503 in statuses, statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["Retry-After"] == "1"
            assert "Trop de connexions au même moment" in answer.text
            assert "Réessayez dans quelques secondes" in answer.text
    assert app.state.services.accounts.hasher.slots.peak == 1


def test_a_burst_beyond_the_waiting_room_is_refused_at_once(settings, engine) -> None:
    """One computation at a time, two waiting at most: while the turn is taken, of ten logins the
    two first to come wait and the eight others answer 503 with Retry-After at once, instead of
    holding a worker thread and a database connection each while they wait (which would starve the
    token endpoint and /readyz). Refused, they counted no failed try; once the turn is free, the two
    waiting ones log in."""
    app = create_app(settings.model_copy(update={**SLOW_ARGON2, "argon2_concurrency": 1, "argon2_max_waiting": 2,
                                                 "argon2_wait_seconds": 60}), engine=engine)
    emails = [make_citizen(app, password="une phrase de passe solide").email for _ in range(10)]
    with Browser(app) as first:  # the throttle's service secret exists, as `vault db upgrade` makes it
        assert first.login(emails[0], "une phrase de passe solide").status_code == 303
    slots = app.state.services.accounts.hasher.slots
    slots.peak = slots.peak_waiting = 0
    browsers = [Browser(app) for _ in emails]
    tokens = [browser.form_token("/login") for browser in browsers]
    try:
        with ThreadPoolExecutor(max_workers=len(emails)) as pool:
            with slots.slot():  # the one turn, taken
                answers = [pool.submit(browsers[n].post, "/login", data={
                    "email": emails[n], "password": "une phrase de passe solide", "csrf_token": tokens[n]})
                    for n in range(len(emails))]
                deadline = time.monotonic() + 30
                while sum(a.done() for a in answers) < 8 or slots.waiting < 2:
                    assert time.monotonic() < deadline, (slots.waiting, [a.done() for a in answers])
                    time.sleep(0.05)
                refused = [a.result() for a in answers if a.done()]
                assert len(refused) == 8 and {r.status_code for r in refused} == {503}
                for answer in refused:
                    assert int(answer.headers["Retry-After"]) >= 1 and "Réessayez dans quelques secondes" in answer.text
            statuses = sorted(a.result().status_code for a in answers)  # the turn freed
    finally:
        for browser in browsers:
            browser.close()
    assert statuses == [303, 303] + [503] * 8, statuses  # the turn freed, the two waiting ones went in
    assert slots.peak_waiting == 2 and slots.running == slots.waiting == 0
    with Session(engine) as db:  # a refused login was not tried, a right one taken back: no counter left
        assert [row.failures for row in db.exec(select(LoginThrottle)) if row.failures] == []
