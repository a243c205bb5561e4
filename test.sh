#!/usr/bin/env bash
# The whole test suite on this machine, by itself: starts the local PostgreSQL the tests use
# (127.0.0.1:5432, user postgres, trust), installs the few programs the tests run when they
# are missing (psql, PostgreSQL's initdb for a private TLS cluster, openssl for its
# certificates, python3 for the example remote block, node and oidc-provider for the sign-in
# tests, Prometheus and promtool for the metrics tests, the Standard Webhooks library, NATS
# with JetStream and Alertmanager for the notification tests), then runs every test.
# Arguments are passed to `cargo test` (e.g. `./test.sh -p meshplane-server`).
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshplane-target}"

missing=()
command -v psql > /dev/null || missing+=(postgresql-client)
command -v openssl > /dev/null || missing+=(openssl)
command -v python3 > /dev/null || missing+=(python3)
python3 -c "import ensurepip" > /dev/null 2>&1 || missing+=(python3-venv)
command -v runuser > /dev/null || missing+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || missing+=(postgresql)
command -v node > /dev/null || missing+=(nodejs)
command -v npm > /dev/null || missing+=(npm)
command -v prometheus > /dev/null || missing+=(prometheus)
command -v nats-server > /dev/null || missing+=(nats-server)
command -v prometheus-alertmanager > /dev/null || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing what the tests need: ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" > /dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}" > /dev/null
  fi
fi

# `meshplane login`'s tests sign in at a real OpenID provider: oidc-provider from npm, kept
# in a cache of its own.
npm_cache="$HOME/.cache/meshplane-npm"
if [ ! -d "$npm_cache/node_modules/oidc-provider" ]; then
  echo "installing what the tests need: oidc-provider (npm, into $npm_cache)" >&2
  npm install --silent --no-audit --no-fund --prefix "$npm_cache" oidc-provider@9.13.3 > /dev/null
fi
export MESHPLANE_NPM_MODULES="$npm_cache/node_modules"

# The notification tests verify webhook signatures with the Standard Webhooks reference
# library: standardwebhooks from PyPI, in a venv of its own.
venv="$HOME/.cache/meshplane-venv"
if ! "$venv/bin/python" -c "import standardwebhooks" > /dev/null 2>&1; then
  echo "installing what the tests need: standardwebhooks (pip, into $venv)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check standardwebhooks==1.3.0
fi
export MESHPLANE_PYTHON="$venv/bin/python"

# The tests use the local PostgreSQL: start it if it is down, then wait until it answers.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  (service postgresql start || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start) > /dev/null 2>&1 || true
fi
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
pg_isready -h 127.0.0.1 -p 5432

# The notification tests publish to NATS with JetStream on 127.0.0.1:4222 (each test with
# streams of its own): start it if it is down.
if ! (exec 3<> /dev/tcp/127.0.0.1/4222) 2> /dev/null; then
  mkdir -p /var/lib/nats-server 2> /dev/null || true
  start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd "${NATS_STORE:-/var/lib/nats-server}" > /dev/null 2>&1 || true
  for _ in $(seq 30); do (exec 3<> /dev/tcp/127.0.0.1/4222) 2> /dev/null && break; sleep 1; done
fi

cargo test --workspace --locked "$@"
