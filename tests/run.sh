#!/usr/bin/env bash
# Runs the whole test suite: unit tests (no root needed) and integration tests (root: they
# run the real CLI against a busybox bundle). Ends with one line "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
DENO=${DENO:-$(command -v deno || echo tools/node_modules/.bin/deno)}
export NO_COLOR=1 DENO_NO_UPDATE_CHECK=1
# The tests run what a user runs: dist/capsule, the launcher of the bundle and its native helper
# (runtime/native/*.c: the containers' init, exec's helper, the front end of exec, start and
# delete), built first from this checkout (~2 s). CAPSULE=... runs another build; CAPSULE= (empty)
# runs main.ts from source (tests/helpers.ts capsuleCommand), with the helper built here.
"$DENO" run -A scripts/build.ts >/dev/null || exit 1
if [ -z "${CAPSULE+set}" ]; then export CAPSULE="$PWD/dist/capsule"; fi
targets=(tests/unit)
if [ "$(id -u)" = 0 ]; then
  targets+=(tests/integration tests/e2e)
else
  echo "not root: integration tests are skipped (run as root for the whole suite)" >&2
fi
log=$(mktemp)
"$DENO" test -A --no-check=remote "${targets[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
rm -f "$log"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
