#!/usr/bin/env bash
# Fuzzes KYC Desk's input handling with cargo-fuzz (libFuzzer): runs each target for a fixed
# time and prints, per target, how many inputs it executed and what it found. Not part of CI
# or ./test.sh; run it by hand after changing a parser, normaliser or sanitiser.
#
#   tests/fuzz/run.sh                  every target, 60 s each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh phone csv_line
#
# Needs the nightly toolchain (installed if missing) and installs cargo-fuzz if missing.
# Builds into tests/fuzz/target; keeps what it learns in tests/fuzz/corpus/<target>/ (seeded
# from tests/fuzz/seeds/<target>/), crashing inputs in tests/fuzz/artifacts/<target>/ and each
# run's output in tests/fuzz/logs/<target>.log. Exits 1 when any target found something.
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${FUZZ_SECONDS:-60}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  say "installing a nightly toolchain (cargo-fuzz needs sanitizer flags)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked || cargo +nightly install cargo-fuzz
fi

# Fuzz the dependency versions the product ships: start from its lock file (cargo then adds
# libfuzzer-sys to the copy).
if [ ! -f Cargo.lock ] || [ ../../Cargo.lock -nt Cargo.lock ]; then
  cp ../../Cargo.lock Cargo.lock
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir "$fuzz_dir")
fi

say "building ${targets[*]} (nightly, AddressSanitizer, debug assertions)"
for target in "${targets[@]}"; do
  cargo +nightly fuzz build --fuzz-dir "$fuzz_dir" --debug-assertions "$target"
done

mkdir -p logs
summary=()
found_any=0
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
  marker="$(mktemp)"
  say "fuzzing $target for ${seconds}s"
  status=0
  cargo +nightly fuzz run --fuzz-dir "$fuzz_dir" --debug-assertions "$target" \
    "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"logs/$target.log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -n 1)"
  mapfile -t findings < <(find "artifacts/$target" -type f -newer "$marker")
  rm -f "$marker"
  if [ "${#findings[@]}" -gt 0 ] || [ "$status" -ne 0 ]; then
    found_any=1
    line="$(printf '%-18s %12s executions  %d finding(s), exit %d' "$target" "${runs:-?}" "${#findings[@]}" "$status")"
    for finding in "${findings[@]}"; do line+=$'\n'"    $fuzz_dir/$finding"; done
    line+=$'\n'"    log: $fuzz_dir/logs/$target.log"
  else
    line="$(printf '%-18s %12s executions  no findings' "$target" "${runs:-?}")"
  fi
  summary+=("$line")
done

say "summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ "$found_any" = 1 ]; then
  echo "Reproduce a finding: cargo +nightly fuzz run --fuzz-dir tests/fuzz <target> <file>" >&2
  exit 1
fi
