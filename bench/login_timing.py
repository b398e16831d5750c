"""Login answers take the same time whether the account exists or not (no enumeration by timing).

Runs N failed logins for an existing account and N for unknown emails, interleaved, against the
app in-process on a fresh SQLite database with the production argon2id cost, and prints the
medians and their ratio (1.00 = indistinguishable). Usage: python bench/login_timing.py [N]
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from vault.app import create_app
from vault.migrations import upgrade
from vault.settings import Settings


def main(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    settings = Settings(data_dir=folder, login_free_failures_per_account=10**6, login_free_failures_per_address=10**6)
    upgrade(settings.effective_database_url)
    app = create_app(settings)
    with Session(app.state.engine) as db:
        app.state.services.accounts.create_citizen(db=db, verified=True, form={
            "email": "known@example.org", "password": "a long enough passphrase", "given_name": "Anne",
            "family_name": "Bench", "birthdate": "1980-01-01", "gender": "female", "birthplace": "75056",
            "birthcountry": "99100"})
        db.commit()
    client = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)

    def attempt(email: str) -> float:
        started = time.perf_counter()
        answer = client.post("/login", data={"email": email, "password": "wrong guess again", "csrf_token": token},
                             follow_redirects=False)
        elapsed = time.perf_counter() - started
        assert answer.status_code == 401, answer.status_code
        return elapsed

    attempt("known@example.org")  # warm-up
    known, unknown = [], []
    for n in range(rounds):
        known.append(attempt("known@example.org"))
        unknown.append(attempt(f"nobody{n}@example.org"))
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"login failures, {rounds} each, argon2id t={settings.argon2_time_cost} m={settings.argon2_memory_kib} KiB")
    print(f"  existing account, wrong password: median {k * 1000:.1f} ms")
    print(f"  unknown email:                    median {u * 1000:.1f} ms")
    print(f"  ratio unknown/existing: {u / k:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
