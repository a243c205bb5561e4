#!/usr/bin/env python3
"""Compares the verdicts and counts of `meshplane test -o json` and `datacontract test
--output-format json` on the same contract, check by check.

Usage: compare.py MESHPLANE_JSON DATACONTRACT_JSON
Prints one line per check and a summary; exits 1 when a verdict differs without a
documented reason (see DEVIATIONS)."""
import json
import sys

# meshplane check kind -> datacontract-cli 1.2.8 check type
KINDS = {
    "present": "field_is_present", "type": "field_type", "required": "field_required",
    "unique": "field_unique", "pattern": "field_regex", "minLength": "field_min_length",
    "maxLength": "field_max_length", "minimum": "field_minimum", "maximum": "field_maximum",
    "nullValues": "field_null_values", "missingValues": "field_missing_values",
    "invalidValues": "field_invalid_values", "duplicateValues": "field_duplicate_values",
    "latency": "servicelevel_freshness", "retention": "servicelevel_retention",
}
OBJECT_KINDS = {"rowCount": "row_count", "duplicateValues": "model_duplicate_values", "sql": "model_quality_sql"}
VERDICT = {"pass": "passed", "fail": "failed", "warn": "warning", "error": "error", "skipped": "skipped"}
# Checks datacontract-cli does not evaluate, and why the verdicts may differ.
DEVIATIONS = {
    "field_type": "datacontract-cli 1.2.8 answers 'Checking types in parquet files is not supported yet' (a warning); meshplane compares the Parquet schema",
}


def main():
    ours = json.load(open(sys.argv[1]))
    theirs = json.load(open(sys.argv[2]))
    by_type = {}
    for c in theirs["checks"]:
        by_type.setdefault((c.get("field"), c["type"]), []).append(c)
    agree = differ = unmatched = deviations = 0
    for r in ours["results"]:
        parts = r["key"].split("#")[0].split(".")
        if len(parts) == 3:
            field, kind = r.get("property"), KINDS.get(parts[2])
        elif len(parts) == 2:
            field, kind = None, OBJECT_KINDS.get(parts[1])
        else:
            field, kind = None, None
        candidates = by_type.get((field, kind), [])
        if not candidates:
            print(f"  only meshplane  {r['key']:<40} {r['outcome']}")
            unmatched += 1
            continue
        c = candidates.pop(0)
        mine, peer = VERDICT[r["outcome"]], c.get("result")
        value = (c.get("diagnostics") or {}).get("value")
        same_value = value is None or r.get("count", r.get("value")) == value or r.get("value") == value
        if mine == peer and same_value:
            agree += 1
            print(f"  same            {r['key']:<40} {mine:<8} {r.get('value')}")
        elif kind in DEVIATIONS:
            deviations += 1
            print(f"  deviation       {r['key']:<40} {mine} vs {peer}: {DEVIATIONS[kind]}")
        else:
            differ += 1
            print(f"  DIFFERENT       {r['key']:<40} {mine} ({r.get('value')}) vs {peer} ({value})")
    left = [c for cs in by_type.values() for c in cs]
    for c in left:
        print(f"  only dcli       {c['key']:<40} {c.get('result')}: {c.get('reason')}")
    print(f"verdicts: {agree} equal, {deviations} documented deviations, {differ} different, "
          f"{unmatched} only in meshplane, {len(left)} only in datacontract-cli")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
