#!/usr/bin/env python3
"""Writes N realistic ODCS v3.1.0 contracts (deterministic: same N, same files).

Each contract has 3 to 8 schema objects with 5 to 25 properties, quality rules, SLA
properties, a server, a team and roles: about the size of a real-world contract.
Usage: gen_contracts.py OUT_DIR [N]
"""
import os
import random
import sys

TYPES = [("string", "varchar(64)"), ("integer", "bigint"), ("number", "numeric(12,2)"),
         ("date", "date"), ("boolean", "boolean")]


def contract(i, rng):
    lines = [
        "apiVersion: v3.1.0",
        "kind: DataContract",
        f"id: bench-contract-{i:05d}",
        f"name: Bench contract {i}",
        f"version: 1.{rng.randint(0, 9)}.{rng.randint(0, 20)}",
        "status: active",
        f"domain: domain-{i % 17}",
        "description:",
        f"  purpose: Generated contract number {i} for benchmarks",
        "  usage: Benchmarks only",
        "servers:",
        "  - server: prod",
        "    type: postgres",
        "    host: db.example.com",
        "    port: 5432",
        "    database: warehouse",
        f"    schema: s{i}",
        "schema:",
    ]
    for o in range(rng.randint(3, 8)):
        name = f"object_{o}"
        lines += [f"  - name: {name}", f"    physicalName: t_{i}_{o}", "    physicalType: table",
                  f"    description: Object {o}", "    properties:"]
        props = rng.randint(5, 25)
        for p in range(props):
            logical, physical = rng.choice(TYPES)
            lines += [f"      - name: col_{p}", f"        logicalType: {logical}", f"        physicalType: {physical}",
                      f"        required: {'true' if p == 0 else rng.choice(['true', 'false'])}",
                      f"        description: Column {p} of {name}"]
            if p == 0:
                lines += ["        primaryKey: true", "        unique: true"]
            if logical == "string" and rng.random() < 0.3:
                lines += ["        logicalTypeOptions:", "          maxLength: 64", "          pattern: '^[A-Za-z0-9_-]+$'"]
            if rng.random() < 0.3:
                lines += ["        quality:", "          - metric: nullValues", "            mustBeLessThan: 5",
                          "            unit: percent", "            dimension: completeness"]
        lines += ["    quality:", "      - metric: rowCount", "        mustBeGreaterThan: 0",
                  "      - metric: duplicateValues", "        arguments:", "          properties: [col_0]", "        mustBe: 0"]
    lines += [
        "team:",
        "  name: bench-team",
        "  members:",
        "    - username: alice",
        "      role: owner",
        "roles:",
        "  - role: reader",
        "    access: read",
        "    firstLevelApprovers: alice",
        "slaProperties:",
        "  - property: latency",
        "    value: 4",
        "    unit: h",
        "    element: object_0.col_0",
        "  - property: retention",
        "    value: 1",
        "    unit: y",
        "tags: [bench, generated]",
    ]
    return "\n".join(lines) + "\n"


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    os.makedirs(out, exist_ok=True)
    rng = random.Random(42)
    for i in range(n):
        with open(os.path.join(out, f"contract-{i:05d}.odcs.yaml"), "w") as f:
            f.write(contract(i, rng))


if __name__ == "__main__":
    main()
