#!/usr/bin/env bash
# Page-load benchmark of one build (BENCHMARKS.md): starts SERVER_BIN on a fresh SQLite
# database with the site folder SITE_ROOT, makes an admin, and runs page-load.mjs (sign-in and
# sessions pages, cold and warm, over an emulated 10 Mbit/s, 40 ms link).
#
# usage: end2end/bench/page-load.sh SERVER_BIN SITE_ROOT LABEL [RUNS]
# e.g.   end2end/bench/page-load.sh target/release/kyc-desk target/site after 5
# The hash file is read beside SERVER_BIN, as in production.
set -euo pipefail
server_bin="$(realpath "$1")"; site_root="$(realpath "$2")"; label="$3"; runs="${4:-5}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export DATABASE_URL="sqlite://$work/bench.db" KYC_DESK_MASTER_KEY_FILE="$work/master.key" \
  KYC_DESK_DEV_GENERATE_MASTER_KEY=true KYC_DESK_SITE_ROOT="$site_root" \
  KYC_DESK_ADDR="127.0.0.1:$port" KYC_DESK_SANDBOX=true RUST_LOG=warn \
  KYC_DESK_SECOND_FACTOR_ROLES=none  # the bench signs its admin in by password only
password="bench passphrase 2026"
printf '%s\n' "$password" | "$server_bin" create-user --email bench@example.com --role admin >/dev/null
"$server_bin" serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.5
done
(cd "$here/.." && node bench/page-load.mjs "http://127.0.0.1:$port" bench@example.com "$password" "$label" "$runs")
