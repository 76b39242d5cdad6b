#!/usr/bin/env bash
# `make test`: lint, host tests, the wasm build and the Miniflare tests
# (including the official conformance suite). Every step runs even if an
# earlier one failed; the last line is `tests: N passed, N failed` over all
# runners, and the exit status is non-zero on any failure.
set -uo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

OUT="$ROOT/.test-results"
rm -rf "$OUT" && mkdir -p "$OUT"
passed=0
failed=0
broken=()

step() { # step NAME CMD... : a check that is not a test runner counts as one test
  local name=$1; shift
  echo "== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); broken+=("$name"); fi
}

step "cargo fmt --check" cargo fmt --all -- --check
step "clippy (host)" cargo clippy --all-targets --locked -- -D warnings
step "clippy (wasm32)" cargo clippy --lib --locked --target wasm32-unknown-unknown -- -D warnings

echo "== cargo test"
cargo test --locked 2>&1 | tee "$OUT/cargo-test.log"
cargo_status=${PIPESTATUS[0]}
read -r cp cf < <(awk '/^test result:/ {p += $4; f += $6} END {print p+0, f+0}' "$OUT/cargo-test.log")
passed=$((passed + cp)); failed=$((failed + cf))
if [ "$cargo_status" -ne 0 ] && [ "$cf" -eq 0 ]; then failed=$((failed + 1)); broken+=("cargo test (did not run)"); fi
[ "$cf" -gt 0 ] && broken+=("cargo test")

step "clippy (client)" cargo clippy -p durable-streams-client --all-targets --locked -- -D warnings

step "wasm build" ./scripts/build.sh
# The deployable bundle, checked offline (no account, no network).
step "wrangler deploy --dry-run" wrangler deploy --dry-run --outdir build/deploy

echo "== vitest (Miniflare + conformance)"
if [ -f build/index.js ]; then
  vitest run --reporter=default --reporter=json --outputFile.json="$OUT/vitest.json"
  vitest_status=$?
else
  vitest_status=1
fi
if [ -f "$OUT/vitest.json" ]; then
  read -r vp vf < <(node -e '
    const r = require(process.argv[1]);
    const suiteErrors = r.testResults.filter((t) => t.status === "failed" && t.assertionResults.length === 0).length;
    console.log(r.numPassedTests, r.numFailedTests + suiteErrors);' "$OUT/vitest.json")
else
  vp=0; vf=1
fi
if [ "$vitest_status" -ne 0 ] && [ "$vf" -eq 0 ]; then vf=1; fi
passed=$((passed + vp)); failed=$((failed + vf))
[ "$vf" -gt 0 ] && broken+=("vitest")

echo "== client (cargo test -p durable-streams-client, against the worker and the Node reference server)"
node scripts/client-tests.mjs 2>&1 | tee "$OUT/client-test.log"
client_status=${PIPESTATUS[0]}
read -r kp kf < <(awk '/^test result:/ {p += $4; f += $6} END {print p+0, f+0}' "$OUT/client-test.log")
passed=$((passed + kp)); failed=$((failed + kf))
if [ "$client_status" -ne 0 ] && [ "$kf" -eq 0 ]; then failed=$((failed + 1)); broken+=("client tests (did not run)"); fi
[ "$kf" -gt 0 ] && broken+=("client tests")

# The benchmark still works (a few seconds; figures are not asserted).
step "bench smoke" node bench/run.mjs --smoke
step "bench smoke (clients)" node bench/clients.mjs --smoke

if [ -f "$OUT/vitest.json" ]; then
  node scripts/conformance-count.mjs "$OUT/vitest.json" | tee "$OUT/conformance.txt"
fi
[ "${#broken[@]}" -gt 0 ] && echo "failed steps: ${broken[*]}"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
