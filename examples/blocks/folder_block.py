#!/usr/bin/env python3
"""A remote meshplane block in Python, standard library only: it implements the protocol in
docs/block-protocol.openapi.json by keeping, for each contract, a JSON file describing its
bound servers in a folder. Small on purpose: it shows that a block can be written in any
language.

    python3 folder_block.py --port 9091 --root ./block-data --credential-env FOLDER_BLOCK_TOKEN

Validate asks every server for a `location`; provision answers as a long-running operation (202, then done at the first poll), to show
that part of the protocol; cleanup keeps the file (it is the block's data) and returns it as
a leftover; purge deletes it; update-access keeps the grants in force next to the entry (a folder
cannot refuse a reader, so it answers `advisory`). Every request must carry
`Authorization: Bearer <credential>`. Calls made under a reconcile's lease carry its fencing token:
the block remembers the largest token it has seen per contract and refuses (409) a smaller one.
"""
import argparse
import json
import os
import pathlib
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--credential-env", required=True, help="the variable holding the expected credential")
    args = parser.parse_args()
    credential = os.environ.get(args.credential_env)
    if not credential:
        sys.exit(f"the environment variable {args.credential_env} is not set")
    root = pathlib.Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    operations = {}
    lock = threading.Lock()
    # The largest fencing token seen per contract: a smaller one is a replica whose lease passed on.
    fences = {}

    def entry(name):
        # Keys are id@vMAJOR: keep the file name to safe characters.
        return root / (re.sub(r"[^A-Za-z0-9@._-]", "_", name) + ".json")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if self.headers.get("Authorization") == f"Bearer {credential}":
                return True
            self.answer(401, {"message": "a valid credential is required"})
            return False

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except ValueError as e:
                self.answer(422, {"message": f"the body is not JSON: {e}"})
                return None

        def do_GET(self):
            if not self.authorized():
                return
            if self.path == "/v1/health":
                return self.answer(200, {"root": str(root)})
            if self.path.startswith("/v1/operations/"):
                with lock:
                    op = operations.get(self.path.rsplit("/", 1)[1])
                if op is None:
                    return self.answer(404, {"message": "no such operation"})
                return self.answer(200, op)
            self.answer(404, {"message": f"no route {self.path}"})

        def stale(self, request):
            token = (request.get("fence") or {}).get("token")
            if token is None:
                return False
            with lock:
                seen = fences.get(request.get("name"), 0)
                if token < seen:
                    self.answer(409, {"message": f"lease token {token} is older than {seen}, already seen"})
                    return True
                fences[request.get("name")] = token
            return False

        def do_POST(self):
            if not self.authorized():
                return
            request = self.body()
            if request is None or self.stale(request):
                return
            if self.path == "/v1/validate":
                problems = [f"server `{s.get('server')}` has no location (the folder entry's address)"
                            for s in request.get("servers", []) if not s.get("location")]
                return self.answer(200, {"problems": problems})
            if self.path == "/v1/provision":
                path = entry(request["name"])
                wanted = {"name": request["name"], "servers": request["servers"]}
                summary = f"{path.name} is as declared"
                if not path.exists() or json.loads(path.read_text()) != wanted:
                    path.write_text(json.dumps(wanted, indent=2))
                    summary = f"wrote {path.name}"
                op = str(uuid.uuid4())
                with lock:
                    operations[op] = {"done": True, "result": {"summary": summary, "drift": []}}
                return self.answer(202, {"operation": op})
            if self.path == "/v1/cleanup":
                path = entry(request["name"])
                left = [{"place": path.name, "note": f"entry {path.name} (kept until purged)"}] if path.exists() else []
                return self.answer(200, {"leftovers": left})
            if self.path == "/v1/access":
                access = request["access"]
                grants = entry(request["name"]).with_suffix(".grants.json")
                if access["releasing"]:
                    grants.unlink(missing_ok=True)
                else:
                    grants.write_text(json.dumps(access["grants"], indent=2))
                return self.answer(200, {"enforcement": "advisory", "drift": [], "removed": [], "problems": []})
            if self.path == "/v1/purge":
                path = root / pathlib.Path(request["place"]).name
                path.unlink(missing_ok=True)
                return self.answer(200, {})
            self.answer(501, {"message": f"{self.path} is not implemented by this block"})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"folder block on http://127.0.0.1:{args.port}, keeping {root}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
