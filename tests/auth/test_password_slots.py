"""argon2id takes its memory cost (64 MiB by default) for each computation: a burst of logins must
not multiply it without bound. At most VAULT_ARGON2_CONCURRENCY computations run at once; a login
that waits longer than VAULT_ARGON2_WAIT_SECONDS for its turn answers 503 with Retry-After."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.factories import make_citizen
from tests.support import Browser
from vault.app import create_app

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
