#!/usr/bin/env python3
"""Regenerate vault/auth/data/common-passwords.txt from the zxcvbn PyPI package.

The list is the "passwords" frequency list that zxcvbn 4.x ships in
zxcvbn/frequency_lists.py (30,000 entries, ranked most common first).
We keep its order, lowercase each entry, drop blanks and duplicates, and
write the first COUNT entries, one per line, UTF-8, no header.

Needs only the standard library and the zxcvbn package, installed outside
the project's own venv, e.g.:

    python3 -m venv /tmp/pwvenv
    /tmp/pwvenv/bin/pip install 'zxcvbn==4.5.0'
    /tmp/pwvenv/bin/python scripts/make_common_passwords.py
"""

import argparse
import hashlib
import sys
from importlib.metadata import version
from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS

DEFAULT_COUNT = 10_000
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent
    / "vault" / "auth" / "data" / "common-passwords.txt"
)


def ranked_passwords(count: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for entry in FREQUENCY_LISTS["passwords"]:
        pw = entry.strip().lower()
        if not pw or pw in seen:
            continue
        seen.add(pw)
        out.append(pw)
        if len(out) == count:
            return out
    sys.exit(f"error: zxcvbn list has only {len(out)} usable entries, need {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    zxcvbn_version = version("zxcvbn")
    if not zxcvbn_version.startswith("4."):
        sys.exit(f"error: expected zxcvbn 4.x, found {zxcvbn_version}")

    passwords = ranked_passwords(args.count)
    data = "".join(pw + "\n" for pw in passwords).encode("utf-8")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(
        f"wrote {len(passwords)} passwords from zxcvbn {zxcvbn_version} "
        f"to {args.output} (sha256 {hashlib.sha256(data).hexdigest()})"
    )


if __name__ == "__main__":
    main()
