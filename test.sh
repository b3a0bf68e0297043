#!/usr/bin/env bash
# Runs KYC Desk's whole test suite: Rust unit and integration tests against SQLite and
# PostgreSQL, a check that the browser bundle carries no server-only strings, and the
# Playwright browser tests in Debian's Chromium against the real built app.
#
# Pass-through: `./test.sh -- <cargo test filter>` runs only matching Rust tests and skips
# the browser tests.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup.sh
ensure_build_tools

# A fresh clone never benefits from incremental caches, and they double the target folder.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

rust_filter=()
only_rust=0
if [ "${1:-}" = "--" ]; then shift; rust_filter=("$@"); only_rust=1; fi
ensure_test_tools

# --- PostgreSQL: required on CI, optional (and loudly reported) elsewhere ----------------
skip_postgres=()
# Drops the databases the Rust tests made on the shared PostgreSQL server (`kycdesk_t_*`).
drop_test_databases() {
  psql "$TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'kycdesk_t_%'" 2>/dev/null |
    while read -r name; do psql "$TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true; done
}
if ensure_postgres; then
  export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
  # Drop databases left behind by earlier runs (interrupted, or filtered with `--`).
  drop_test_databases
elif [ "${CI:-}" = "true" ]; then
  echo "FAILED: no PostgreSQL answers at 127.0.0.1:5432, and CI must run the PostgreSQL tests." >&2
  exit 1
else
  say "WARNING: no PostgreSQL at 127.0.0.1:5432 — the PostgreSQL tests are NOT run (SQLite only)."
  skip_postgres=(--skip postgres)
fi

say "Rust tests (SQLite${TEST_POSTGRES_URL:+ and PostgreSQL})"
cargo test --features ssr -- "${rust_filter[@]}" "${skip_postgres[@]}"
[ "$only_rust" = 1 ] && exit 0

if [ -n "${TEST_POSTGRES_URL:-}" ]; then
  # Alone, after the suite: it stops and starts the PostgreSQL server under a running app.
  say "restarting PostgreSQL under a running KYC Desk"
  cargo test --features ssr --test it -- --ignored --exact faults::postgres_restart::postgres_restarting_under_a_running_server
  say "scanning every audit row the suite wrote (PostgreSQL databases) for secrets and PII"
  cargo test --features ssr --test it -- --ignored --exact audit_scan::every_audit_row_of_the_suite_is_clean
  # The scan has read them: the suite's databases (one per PostgreSQL test, each a full schema
  # on disk) are not left on the shared server until the next run's start drops them.
  drop_test_databases
fi

# --- Build the real app; canary values in the environment must not reach the bundle ----
canary="kyc-canary-$(date +%s)-secret"
say "building the app as it ships (cargo leptos build --release --precompress --split)"
# The browser tests run the release build users get: wasm-opt'd, content-hashed and
# precompressed bundle, and the server binary cargo-leptos built with the same flags.
# (Not DATABASE_URL: sqlx macros track it, so a changing value would rebuild the server every run.)
KYC_DESK_MASTER_KEY="$canary" KYC_DESK_SMTP_PASSWORD="$canary" KYC_DESK_SESSION_SECRET="$canary" \
  cargo leptos build --release --precompress --split
server_bin=target/release/kyc-desk
say "packing the bundle's small parts into a few files (kyc-desk pack-bundle)"
"$server_bin" pack-bundle --site target/site

say "checking the browser bundle for server-only strings"
bundle=(target/site/pkg/*.wasm target/site/pkg/*.js)
leaks=0
for needle in "$canary" "CREATE TABLE" "sign_in_throttle" "auth_sessions" "password_hash" '$argon2id$' "second_factors" "totp_seed" "code_hash" "passkeys_by_user" "user_identities" "pkce_verifier" "DATABASE_URL" "SELECT COUNT"; do
  if grep -a -q -F -- "$needle" "${bundle[@]}"; then
    echo "LEAK: '$needle' is in the browser bundle" >&2
    leaks=1
  fi
done
# The check itself must be able to fail: a string the bundle is known to carry is found.
grep -a -q -F "Wrong email or password." "${bundle[@]}" || { echo "bundle check is broken: expected text not found" >&2; exit 1; }
[ "$leaks" = 0 ] || exit 1

# --- Browser tests against the built server on a fresh SQLite database -----------------
workdir="$(mktemp -d)"
# A free port, so a dev server (or another run) on a fixed port cannot answer in its place.
port="${KYC_DESK_E2E_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
log="$workdir/server.log"
# A real SMTP server for the browser tests; what it receives lands in a maildir they read.
maildir="$workdir/mail"
mkdir -p "$maildir/tmp" "$maildir/new" "$maildir/cur"
smtp_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$maildir" >"$workdir/smtp.log" 2>&1 &
smtp_pid=$!
export DATABASE_URL="sqlite://$workdir/e2e.db" KYC_DESK_MASTER_KEY_FILE="$workdir/master.key" KYC_DESK_DEV_GENERATE_MASTER_KEY=true
printf '{"kind":"smtp","environment":"default","settings":{"host":"127.0.0.1","port":"%s","tls":"none","from":"kyc@bank.example"},"secrets":{}}' "$smtp_port" |
  RUST_LOG=warn "$server_bin" credentials import >/dev/null
say "starting the app for the browser tests on 127.0.0.1:$port (log: $log)"
# No role must have a second factor on this server: its specs sign the same people in many times
# a minute, and an authenticator code is accepted once. 7-second-factor-policy.spec.ts starts a
# server of its own with the default policy (admins and auditors) for that path.
KYC_DESK_ADDR="127.0.0.1:$port" KYC_DESK_SITE_ROOT=target/site KYC_DESK_SANDBOX=true \
  KYC_DESK_SECOND_FACTOR_ROLES=none RUST_LOG=info "$server_bin" serve >"$log" 2>&1 &
server_pid=$!
trap 'kill $server_pid $smtp_pid 2>/dev/null || true; wait $server_pid $smtp_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "the server did not start" >&2; exit 1; }
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; echo "the server stopped" >&2; exit 1; }
grep -q "listening on http://127.0.0.1:$port" "$log" || { cat "$log" >&2; echo "another process answers on port $port" >&2; exit 1; }
say "Playwright tests in Chromium"
root="$PWD"
(cd end2end && KYC_DESK_BASE_URL="http://127.0.0.1:$port" KYC_DESK_LOG="$log" KYC_DESK_MAILDIR="$maildir" \
  KYC_DESK_BIN="$root/$server_bin" KYC_DESK_ROOT="$root" npx playwright test)
# Nothing secret may appear in the server's log: not the canaries the browser tests typed in.
if grep -q -F "canary-" "$log"; then
  echo "LEAK: a canary secret appears in the server log $log" >&2
  exit 1
fi
say "all tests passed"
