#!/usr/bin/env python3
"""Benchmark of the registry (issues #3 and #4): apply 10,000 contracts and 2,000 products
through the API, measure the time until every one of them is Ready (reconciled), then list
and filter latency (p50, p99) at that size: on SQLite, and on PostgreSQL with one and with
two replicas.

Readiness is read from the store's status table (the reconcilers' own record), four times a
second, so that the observer does not load the server it measures.

With --lake, every contract has a server in environment dev that the embedded platform's
lake block provisions (a prefix with its schema record under the server's ./data), so Ready
includes provisioning.

Usage: registry.py MESHPLANE_BINARY [CONTRACTS] [PRODUCTS] [--lake] [--only sqlite|postgres|postgres2]
Needs the local PostgreSQL (127.0.0.1:5432, user postgres, trust auth) and psql."""
import json
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LAKE = "--lake" in sys.argv


def contract(i):
    server = (f"servers:\n  - {{ server: lake, type: local, environment: dev, path: ./data/c{i:05d}/, "
              f"format: parquet }}\n") if LAKE else ""
    return f"""apiVersion: v3.1.0
kind: DataContract
id: c{i:05d}
version: 1.0.0
status: active
domain: d{i % 20:02d}
tags: [{'gold' if i % 10 == 0 else 'silver'}]
{server}schema:
  - name: t{i:05d}
    properties:
      - {{ name: id, logicalType: string, required: true, unique: true }}
      - {{ name: amount, logicalType: number, logicalTypeOptions: {{ minimum: 0 }} }}
      - {{ name: created_at, logicalType: date }}
"""


def product(i, contracts):
    # A product offers only its own domain's contracts (the domain of c{n} is n % 20).
    a, b = (i * 5) % contracts, (i * 5 - (i * 5) % 20 + i % 20) % contracts
    return f"""apiVersion: v1.0.0
kind: DataProduct
id: p{i:05d}
version: 1.0.0
status: active
domain: d{i % 20:02d}
inputPorts:
  - {{ name: in, version: 1.0.0, contractId: c{a:05d} }}
outputPorts:
  - {{ name: out, version: 1.0.0, contractId: c{b:05d} }}
"""


# The admin token of the store being measured (`meshplane bootstrap`), sent with every call.
HEADERS = {}


def post(base, body):
    req = urllib.request.Request(f"{base}/api/v1/apply", data=body.encode(), method="POST", headers=HEADERS)
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def get(base, path):
    with urllib.request.urlopen(urllib.request.Request(f"{base}{path}", headers=HEADERS)) as res:
        res.read()


READY = """SELECT count(*) FROM statuses WHERE conditions LIKE '%"type":"Ready","status":"True"%'"""


def count_ready(url):
    """How many resources the reconcilers have recorded as Ready."""
    if url.startswith("sqlite://"):
        with sqlite3.connect(f"file:{url[len('sqlite://'):]}?mode=ro", uri=True) as db:
            return db.execute(READY).fetchone()[0]
    database = url.rsplit("/", 1)[1]
    out = subprocess.run(["psql", "-XAt", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-c", READY],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def start_server(binary, url, cwd):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--database-url", url],
                              stderr=subprocess.DEVNULL, cwd=cwd)
    for _ in range(100):
        try:
            get(base, "/healthz")
            break
        except OSError:
            time.sleep(0.05)
    return server, base


def run(binary, url, label, n_contracts, n_products, replicas=1):
    workdir = tempfile.TemporaryDirectory()
    token = subprocess.run([binary, "bootstrap", "--database-url", url], cwd=workdir.name, check=True,
                           capture_output=True, text=True).stdout.strip()
    HEADERS["Authorization"] = f"Bearer {token}"
    servers = [start_server(binary, url, workdir.name) for _ in range(replicas)]
    base = servers[0][1]
    try:
        docs = [contract(i) for i in range(n_contracts)] + [product(i, n_contracts) for i in range(n_products)]
        start = time.perf_counter()
        for k in range(0, len(docs), 100):
            post(base, "---\n".join(docs[k:k + 100]))
        applied = time.perf_counter() - start
        while count_ready(url) < len(docs):
            if time.perf_counter() - start > 600:
                raise SystemExit(f"only {count_ready(url)} of {len(docs)} were Ready after 10 minutes")
            time.sleep(0.25)
        ready = time.perf_counter() - start
        queries = ["/api/v1/contracts?limit=100", "/api/v1/contracts?domain=d07&limit=100",
                   "/api/v1/contracts?tag=gold&limit=100", "/api/v1/products?domain=d03&status=active&limit=100",
                   f"/api/v1/contracts/c{n_contracts // 2:05d}@v1"]
        timings = {}
        for q in queries:
            samples = []
            for _ in range(300):
                t = time.perf_counter()
                get(base, q)
                samples.append((time.perf_counter() - t) * 1000)
            samples.sort()
            timings[q] = (statistics.median(samples), samples[int(len(samples) * 0.99) - 1])
        print(f"== {label}: applied {n_contracts} contracts and {n_products} products in batches of 100: {applied:.2f} s "
              f"({len(docs) / applied:.0f} documents/s); all {len(docs)} Ready {ready:.2f} s after the first apply "
              f"({replicas} replica{'s' if replicas > 1 else ''}{', every contract provisioned in the lake' if LAKE else ''})")
        for q, (p50, p99) in timings.items():
            print(f"   GET {q:<52} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait()
        workdir.cleanup()


def main():
    # --only sqlite|postgres|postgres2 runs one backend (how before/after rounds are run).
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    skip = {"--lake", "--only", only}
    args = [a for a in sys.argv[1:] if a not in skip]
    binary = args[0]
    n_contracts = int(args[1]) if len(args) > 1 else 10_000
    n_products = int(args[2]) if len(args) > 2 else 2_000
    if only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            run(binary, f"sqlite://{tmp}/bench.db", "SQLite", n_contracts, n_products)
    for replicas in {None: (1, 2), "postgres": (1,), "postgres2": (2,)}.get(only, ()):
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c",
                        "DROP DATABASE IF EXISTS meshplane_registry_bench", "-c",
                        "CREATE DATABASE meshplane_registry_bench"], check=True)
        try:
            run(binary, "postgres://postgres@127.0.0.1:5432/meshplane_registry_bench", "PostgreSQL", n_contracts,
                n_products, replicas)
        finally:
            subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c",
                            "DROP DATABASE meshplane_registry_bench WITH (FORCE)"], check=True)


if __name__ == "__main__":
    main()
