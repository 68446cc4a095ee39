#!/usr/bin/env bash
# Bounded fuzzing (cargo-fuzz / libFuzzer on the nightly toolchain) of the options parser and
# the tokenizer, seeded from fuzz/seeds. Prints one `test result:` line per target so the test
# command's summary counts them.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]    (the test command uses 20; try 600 or more)
# Findings (crashing inputs) are kept in fuzz/artifacts/TARGET/.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS="${1:-20}"
cd "$ROOT/fuzz"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal >/dev/null 2>&1 || {
    echo "fuzz: no nightly toolchain and none installable here; fuzzing not run"
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (fuzz: nightly toolchain missing)"
    exit 1
  }
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked -q || exit 1
status=0
for t in options tokenizer; do
  corpus="$(mktemp -d)"
  cp "seeds/$t"/* "$corpus"/
  if cargo +nightly fuzz run "$t" "$corpus" -- -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 > "$corpus.log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs' "$corpus.log" | grep -oE '[0-9]+' | tail -1)
    echo "fuzz $t: ${runs:-?} inputs in ${SECS}s, no failure"
    echo "test result: ok. 1 passed; 0 failed; 0 ignored (fuzz $t)"
  else
    tail -30 "$corpus.log"
    echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (fuzz $t; see fuzz/artifacts/$t)"
    status=1
  fi
  rm -rf "$corpus" "$corpus.log"
done
exit $status
