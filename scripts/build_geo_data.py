#!/usr/bin/env python3
"""Build vault/geo/data/ (communes and countries, by INSEE code) from their published sources.

    npm pack @etalab/decoupage-administratif@6.0.0 && tar xzf etalab-decoupage-administratif-6.0.0.tgz
    python3 scripts/build_geo_data.py --decoupage package --countries v_pays_territoire.csv

``--decoupage``: the unpacked npm package ``@etalab/decoupage-administratif`` (its ``data/``
folder: INSEE's Code officiel géographique with La Poste's postal codes). ``--countries``: INSEE's
COG list of countries and territories as CSV (the columns ``COG``, ``LIBCOG`` and ``CODEISO2`` are read; several
rows of one code keep the last). Standard library only; the output depends on the inputs alone
(sorted rows, gzip without a timestamp), so running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "vault" / "geo" / "data"
KINDS = {"commune-actuelle": "C", "arrondissement-municipal": "A", "commune-deleguee": "D", "commune-associee": "S"}


def build_communes(package: Path) -> dict[str, object]:
    data = package / "data"
    meta = json.loads((package / "package.json").read_text(encoding="utf-8"))
    departements = {d["code"]: d["nom"] for d in json.loads((data / "departements.json").read_text(encoding="utf-8"))}
    rows: list[list[str]] = []
    former: dict[str, str] = {}
    for c in json.loads((data / "communes.json").read_text(encoding="utf-8")):
        kind = KINDS[c["type"]]
        parent = c.get("commune") or c.get("chefLieu") or ""
        if parent == c["code"]:
            parent = ""
        rows.append([c["code"], c["nom"], c["departement"], kind, parent, " ".join(sorted(c.get("codesPostaux", [])))])
        for old in c.get("anciensCodes", []):
            former.setdefault(old, c["code"])
    rows.sort(key=lambda r: (r[0], "CADS".index(r[3]), r[1]))
    return {
        "source": f"{meta['name']}@{meta['version']}",
        "columns": ["code", "nom", "departement", "type", "rattachement", "codes_postaux"],
        "types": {"C": "commune", "A": "arrondissement municipal", "D": "commune déléguée", "S": "commune associée"},
        "departements": dict(sorted(departements.items())),
        "communes": rows,
        "anciens_codes": dict(sorted(former.items())),
    }


def build_countries(source: Path) -> list[tuple[str, str, str]]:
    """(INSEE code, French name, ISO 3166-1 alpha-2 code or "") per country, from INSEE's columns
    COG, LIBCOG and CODEISO2 (empty for a former country)."""
    names: dict[str, tuple[str, str]] = {}
    with source.open(encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            names[row["COG"].strip()] = (" ".join(row["LIBCOG"].split()), (row.get("CODEISO2") or "").strip())
    return sorted((code, name, iso) for code, (name, iso) in names.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoupage", type=Path, required=True, help="the unpacked npm package (its folder)")
    parser.add_argument("--countries", type=Path, required=True, help="INSEE's COG countries CSV (COG, LIBCOG, CODEISO2)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(build_communes(args.decoupage), ensure_ascii=False, separators=(",", ":")).encode()
    with (OUT / "communes.json.gz").open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as gz:
        gz.write(payload)
    with (OUT / "countries.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["code", "nom", "iso2"])
        writer.writerows(build_countries(args.countries))


if __name__ == "__main__":
    main()
