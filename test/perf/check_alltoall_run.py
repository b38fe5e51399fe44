#!/usr/bin/env python3
"""Checks one run of lshmoe_alltoall_perf: its table (every column, the raw
half exact, the wire ratio near LSHMOE_RATIO, rel_err within the bound), its
footer, its JSON (against perf/alltoall_perf.schema.json, the same rows as the
table), and that perf/plot_alltoall.py draws it.

usage: check_alltoall_run.py TABLE.txt RESULT.json SCHEMA.json PLOT.py OUT.png
                             --ratio R [--max-rel-err E]
"""
import argparse
import json
import subprocess
import sys

import jsonschema

COLUMNS = ["size", "count", "type", "time", "algbw", "busbw", "#wrong", "time", "algbw",
           "busbw", "#wrong", "ratio", "rel_err", "speedup"]


def fail(msg):
    sys.exit(f"check_alltoall_run: {msg}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("table")
    p.add_argument("json")
    p.add_argument("schema")
    p.add_argument("plot")
    p.add_argument("png")
    p.add_argument("--ratio", type=float, required=True)
    p.add_argument("--max-rel-err", type=float, default=0.05)
    a = p.parse_args()
    text = open(a.table).read()
    lines = text.splitlines()
    header = [l for l in lines if l.startswith("#") and "size" in l and "speedup" in l]
    if len(header) != 1 or header[0].lstrip("# ").split() != COLUMNS:
        fail(f"the column header is not {COLUMNS}: {header}")
    rows = [l.split() for l in lines if l.strip() and not l.startswith("#")]
    if not rows:
        fail("no table rows")
    for r in rows:
        if len(r) != len(COLUMNS):
            fail(f"a row without every column: {r}")
        size, count, ratio, rel_err = int(r[0]), int(r[1]), float(r[11]), float(r[12])
        if r[6] != "0":
            fail(f"size {size}: the raw half has {r[6]} wrong elements")
        if r[10] != "0":
            fail(f"size {size}: the lshmoe half has {r[10]} rows beyond the bound")
        if abs(ratio - a.ratio) > 0.05:
            fail(f"size {size}: wire ratio {ratio}, LSHMOE_RATIO {a.ratio}")
        if not 0.0 < rel_err < a.max_rel_err:
            fail(f"size {size}: rel_err {rel_err} outside (0, {a.max_rel_err})")
        if count * 2 != size and count * 4 != size:
            fail(f"size {size}: count {count} is not size / element size")
    for needle in ("# Out of bounds values : 0 OK", "# Avg bus bandwidth    :", "(raw)",
                   "(lshmoe)", "# Avg speedup", "# Avg wire ratio"):
        if needle not in text:
            fail(f"the footer lacks {needle!r}")
    doc = json.load(open(a.json))
    schema = json.load(open(a.schema))
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as e:
        fail(f"the JSON does not match its schema: {e.message}")
    if [r["size"] for r in doc["results"]] != [int(r[0]) for r in rows]:
        fail("the JSON's rows are not the table's")
    subprocess.run([sys.executable, a.plot, a.json, "-o", a.png], check=True)
    with open(a.png, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            fail(f"{a.png} is not a PNG")
    print(f"check_alltoall_run: {len(rows)} rows ok")


if __name__ == "__main__":
    main()
