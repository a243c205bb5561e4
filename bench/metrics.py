#!/usr/bin/env python3
"""Benchmark of /metrics (issue #23): the cost of a scrape with 10,000 products.

Starts `meshplane serve` on a fresh SQLite store, applies N products in 20 domains, each with
an output port whose contract (one per product) it provides, waits until all are Ready, then
scrapes the API port's /metrics (with the admin token) SCRAPES times each right after a
change (a product's new version: the per-resource series are read again) and with nothing
changed (they are answered as read), one after the other, and prints the time per scrape
(p50, p99, max), the exposition's size and its number of samples.

Usage: metrics.py MESHPLANE_BINARY [PRODUCTS] [SCRAPES]"""
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from registry import HEADERS, count_ready, post, start_server


def documents(i):
    domain = f"d{i % 20:02d}"
    contract = f"""apiVersion: v3.1.0
kind: DataContract
id: c{i:05d}
version: 1.0.0
status: active
domain: {domain}
schema:
  - name: t{i:05d}
    properties:
      - {{ name: id, logicalType: string, required: true }}
"""
    product = f"""apiVersion: v1.0.0
kind: DataProduct
id: p{i:05d}
version: 1.0.0
status: active
domain: {domain}
outputPorts:
  - {{ name: out, version: 1.0.0, contractId: c{i:05d} }}
"""
    return [contract, product]


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    scrapes = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite://{tmp}/bench.db"
        token = subprocess.run([binary, "bootstrap", "--database-url", url], cwd=tmp, check=True,
                               capture_output=True, text=True).stdout.strip()
        HEADERS["Authorization"] = f"Bearer {token}"
        server, base = start_server(binary, url, tmp)
        try:
            docs = [d for i in range(n) for d in documents(i)]
            contracts = [d for d in docs if "kind: DataContract" in d]
            products = [d for d in docs if "kind: DataProduct" in d]
            for batch in (contracts, products):
                for k in range(0, len(batch), 100):
                    post(base, "---\n".join(batch[k:k + 100]))
            while count_ready(url) < len(docs):
                time.sleep(0.25)
            def scrape():
                started = time.perf_counter()
                with urllib.request.urlopen(urllib.request.Request(f"{base}/metrics", headers=HEADERS)) as res:
                    body = res.read()
                return (time.perf_counter() - started) * 1000, body

            # After a change (here: one product's new version), a scrape reads every resource
            # again; while nothing changes, it answers what it read.
            changed, unchanged, body = [], [], b""
            for k in range(scrapes):
                post(base, products[0].replace("version: 1.0.0\nstatus", f"version: 1.0.{k + 1}\nstatus"))
                time.sleep(0.05)
                took, body = scrape()
                changed.append(took)
            for _ in range(scrapes):
                unchanged.append(scrape()[0])
            lines = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
            print(f"== /metrics with {n} products and {n} contracts ({len(docs)} resources), {scrapes} scrapes each; "
                  f"{len(body) / 1024:.0f} KiB, {lines} samples")
            for label, samples in (("after a change", changed), ("nothing changed", unchanged)):
                samples.sort()
                p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
                print(f"   {label:<16} p50 {statistics.median(samples):7.1f} ms   p99 {p99:7.1f} ms   max {samples[-1]:7.1f} ms")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
