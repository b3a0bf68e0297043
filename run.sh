#!/usr/bin/env bash
# Builds and starts KYC Desk on http://127.0.0.1:3000 with an embedded SQLite database under
# data/. On the first start it prints a one-time link that creates the first admin.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup.sh
ensure_build_tools
export DATABASE_URL="${DATABASE_URL:-sqlite://data/kyc-desk.db}"
export KYC_DESK_ADDR="${KYC_DESK_ADDR:-127.0.0.1:3000}"
# Opened as http://localhost:PORT: browsers offer passkeys for a domain name, not for 127.0.0.1.
if [ -z "${KYC_DESK_PUBLIC_URL:-}" ] && [[ "$KYC_DESK_ADDR" == 127.0.0.1:* ]]; then
  export KYC_DESK_PUBLIC_URL="http://localhost:${KYC_DESK_ADDR#127.0.0.1:}"
fi
# The built-in provider sandbox, with its credentials seeded, so a link can be made at once.
export KYC_DESK_SANDBOX="${KYC_DESK_SANDBOX:-true}"
# Development master key: generated into data/master.key (mode 0600) on first start.
# Production must supply its own (KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE).
if [ -z "${KYC_DESK_MASTER_KEY:-}" ] && [ -z "${KYC_DESK_MASTER_KEY_FILE:-}" ]; then
  export KYC_DESK_MASTER_KEY_FILE=data/master.key
  export KYC_DESK_DEV_GENERATE_MASTER_KEY=true
fi
# Checkpoints of the audit chain: beside the SQLite file by default; PostgreSQL needs a path.
if [[ "$DATABASE_URL" == postgres* ]] && [ -z "${KYC_DESK_AUDIT_ANCHOR_FILE:-}" ]; then
  export KYC_DESK_AUDIT_ANCHOR_FILE=data/audit-anchors.jsonl
fi
say "building and starting KYC Desk on ${KYC_DESK_PUBLIC_URL:-http://$KYC_DESK_ADDR} (database: $DATABASE_URL)"
# The release build, as it ships: optimised, split into lazily loaded parts, content-hashed
# and precompressed.
cargo leptos build --release --precompress --split
# The split bundle's small parts merged into a few files: far fewer requests on a first visit.
target/release/kyc-desk pack-bundle --site target/site
KYC_DESK_SITE_ROOT=target/site exec target/release/kyc-desk serve
