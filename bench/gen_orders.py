#!/usr/bin/env python3
"""Deterministic orders-like data with known defects, for `bench/test.sh` and the tests.

Usage: gen_orders.py OUT_DIR ROWS [--formats parquet,csv,json] [--shuffled]

Writes OUT_DIR/orders.<format> with ROWS rows, in order of order_id, or with --shuffled in
a fixed random order (OUT_DIR/orders-shuffled.<format>). The same ROWS always gives the same bytes
(fixed seed, fixed clock: the newest order is 2026-11-01T00:00:00Z). Defects, by design:
  order_id        unique except 1 in 10,000 rows, which repeats an earlier id
  customer_id     null in 1 in 200 rows
  customer_email  null in 1 in 100 rows; 1 in 500 not an address ("n/a" or no "@")
  status          one of five values; 1 in 2,000 rows "unknown"
  amount          decimal(12,2); 1 in 10,000 negative
  currency        EUR, USD, GBP, CHF; 1 in 5,000 "EURO"
  quantity        1..100; 1 in 1,000 is 0
  country         ISO code; null in 1 in 100
  created_at      timestamp (UTC) over the two years up to 2026-11-01
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

NEWEST = np.datetime64("2026-11-01T00:00:00", "us")
TWO_YEARS_US = 2 * 365 * 86_400 * 1_000_000


def every(n, rows, offset=0):
    return (np.arange(rows) % n) == offset


def build(rows):
    rng = np.random.default_rng(20261126)
    idx = np.arange(rows)
    ids = idx.copy()
    dup = every(10_000, rows, 9_999)
    ids[dup] = ids[dup] - 1
    order_id = pc.binary_join_element_wise("ORD-", pc.utf8_zero_fill(pa.array(ids).cast(pa.string()), 9), "")
    customer = rng.integers(1, max(2, rows // 10), rows)
    customer_id = pa.array(customer, mask=every(200, rows, 7))
    email = pc.binary_join_element_wise("user", pa.array(customer).cast(pa.string()), "@example.com", "")
    bad_email = every(500, rows, 3)
    email = pc.if_else(pa.array(bad_email), pa.array(np.where(every(1000, rows, 3), "n/a", "user-at-example.com")), email)
    email = pc.if_else(pa.array(every(100, rows, 11)), pa.nulls(rows, pa.string()), email)
    statuses = np.array(["pending", "paid", "shipped", "delivered", "cancelled"])
    status = statuses[rng.integers(0, 5, rows)]
    status[every(2_000, rows, 5)] = "unknown"
    cents = rng.integers(1, 1_000_000, rows)
    cents[every(10_000, rows, 17)] *= -1
    # decimal(12,2) from its unscaled cents: 16-byte little-endian two's complement
    words = np.empty((rows, 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    amount = pa.Array.from_buffers(pa.decimal128(12, 2), rows, [None, pa.py_buffer(words.tobytes())])
    currencies = np.array(["EUR", "USD", "GBP", "CHF"], dtype="<U4")
    currency = currencies[rng.integers(0, 4, rows)]
    currency[every(5_000, rows, 13)] = "EURO"
    quantity = rng.integers(1, 101, rows).astype(np.int32)
    quantity[every(1_000, rows, 21)] = 0
    countries = np.array(["DE", "FR", "NL", "US", "GB", "CH", "IT", "ES"])
    country = pa.array(countries[rng.integers(0, 8, rows)], mask=every(100, rows, 31))
    age = (rng.random(rows) * TWO_YEARS_US).astype(np.int64)
    age[rows - 1] = 0
    created = (NEWEST - age.astype("timedelta64[us]")).astype("datetime64[us]")
    created_at = pa.array(created, pa.timestamp("us", tz="UTC"))
    return pa.table({
        "order_id": order_id,
        "customer_id": customer_id,
        "customer_email": email,
        "status": pa.array(status),
        "amount": amount,
        "currency": pa.array(currency),
        "quantity": pa.array(quantity),
        "country": country,
        "created_at": created_at,
    })


def main():
    out, rows = sys.argv[1], int(sys.argv[2])
    formats = ["parquet"]
    if "--formats" in sys.argv:
        formats = sys.argv[sys.argv.index("--formats") + 1].split(",")
    shuffled = "--shuffled" in sys.argv
    import os
    os.makedirs(out, exist_ok=True)
    table = build(rows)
    if shuffled:
        table = table.take(pa.array(np.random.default_rng(7).permutation(rows)))
    for f in formats:
        path = os.path.join(out, f"orders{'-shuffled' if shuffled else ''}.{f}")
        if f == "parquet":
            pq.write_table(table, path, row_group_size=1_000_000, compression="snappy")
        elif f == "csv":
            pcsv.write_csv(table, path)
        elif f == "json":
            with open(path, "w") as fh:
                for rec in table.to_pylist():
                    fh.write(json_line(rec) + "\n")
        print(path)


def json_line(rec):
    import json
    def conv(v):
        if hasattr(v, "isoformat"):
            return v.isoformat().replace("+00:00", "Z")
        if v.__class__.__name__ == "Decimal":
            return float(v)
        return v
    return json.dumps({k: conv(v) for k, v in rec.items()})


if __name__ == "__main__":
    main()
