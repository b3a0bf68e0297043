#!/usr/bin/env bash
# Installs what KYC Desk's two commands need, skipping whatever is already there.
# Sourced by run.sh and test.sh; run directly (`./setup.sh [build|test]`) to prepare a machine.
set -euo pipefail

KYC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The wasm-bindgen version pinned in Cargo.lock; the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$KYC_ROOT/Cargo.lock"
}

ensure_build_tools() {
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
  if ! cargo leptos --version >/dev/null 2>&1; then
    # cargo-leptos' dependencies need a newer compiler than the stable one here.
    if ! cargo +nightly --version >/dev/null 2>&1; then
      say "installing a nightly toolchain (only to build cargo-leptos)"
      rustup toolchain install nightly --profile minimal
    fi
    say "installing cargo-leptos (about 15 minutes, once)"
    cargo +nightly install cargo-leptos --locked
  fi
  ensure_wasm_opt
  local want
  want="$(wasm_bindgen_version)"
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    say "installing wasm-bindgen-cli $want (matching Cargo.lock)"
    # Not --locked: a yanked transitive crate stops the locked install.
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

# Release builds run `wasm-opt`. Binaryen 132 from npm (it runs under node), in the project's
# own .tools/ folder and first on PATH: Debian's binaryen (108) makes a bundle that builds but
# never hydrates.
ensure_wasm_opt() {
  local dir="$KYC_ROOT/.tools/binaryen"
  if [ ! -x "$dir/node_modules/.bin/wasm-opt" ]; then
    say "installing wasm-opt (binaryen 132 from npm)"
    mkdir -p "$dir"
    (cd "$dir" && npm install --no-audit --no-fund --silent binaryen@132 >/dev/null)
  fi
  export PATH="$dir/node_modules/.bin:$PATH"
}

ensure_test_tools() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's Chromium for the browser tests"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y chromium >/dev/null 2>&1 || {
      as_root apt-get update >/dev/null
      as_root apt-get install -y chromium >/dev/null
    }
  fi
  if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    say "installing aiosmtpd (a real SMTP server for the tests)"
    python3 -m pip install --quiet aiosmtpd
  fi
  if [ ! -d "$KYC_ROOT/end2end/node_modules/@playwright/test" ] ||
     [ "$KYC_ROOT/end2end/package-lock.json" -nt "$KYC_ROOT/end2end/node_modules/.package-lock.json" ]; then
    say "installing the browser-test packages (npm ci)"
    (cd "$KYC_ROOT/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null)
  fi
}

# Starts the local PostgreSQL if it is installed but down. Returns non-zero if none answers.
ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  if [ -d /etc/postgresql ]; then
    say "starting the local PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
    for _ in $(seq 1 20); do
      pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
      sleep 0.5
    done
  fi
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-test}" in
    build) ensure_build_tools ;;
    test) ensure_build_tools; ensure_test_tools ;;
    *) echo "usage: ./setup.sh [build|test]" >&2; exit 2 ;;
  esac
fi
