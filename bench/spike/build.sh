#!/usr/bin/env bash
# SPIKE, not used by the product: builds bench/spike/dist/ (the static C exec helper, the
# bundled Deno side and its launcher, made like dist/capsule's). Needs gcc and glibc's static
# libraries (Debian: gcc, libc6-dev).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
deno=${DENO:-$(command -v deno)}
mkdir -p dist
gcc -O2 -static -Wall -Wextra -Werror -o dist/capsule-exec-helper exec_helper.c
"$deno" bundle --quiet --platform deno --minify -o dist/exec_native.js exec_native.ts
cat >dist/exec-native <<LAUNCHER
#!/bin/sh
# spike launcher: the bundled exec_native.js on the Deno that built it, with dist/capsule's flags.
exec "$deno" run -A --no-config --no-lock --quiet "$PWD/dist/exec_native.js" "\$@"
LAUNCHER
chmod 755 dist/exec-native
# run_native imports zod lazily (only for a config the fast check refuses): a chunk, and its
# import rewritten as scripts/build.ts deferDynamicImports does, so Deno reads it only if run.
rm -rf dist/run
"$deno" bundle --quiet --platform deno --minify --code-splitting --outdir dist/run run_native.ts
perl -pi -e 's/\bimport\("(\.{1,2}\/[^"\\]+\.js)"\)/import(new URL("$1",import.meta.url).href)/g' dist/run/*.js
cat >dist/run-native <<LAUNCHER
#!/bin/sh
# spike launcher: the bundled run_native.js on the Deno that built it, with dist/capsule's flags.
exec "$deno" run -A --no-config --no-lock --quiet "$PWD/dist/run/run_native.js" "\$@"
LAUNCHER
chmod 755 dist/run-native
echo "bench/spike/dist: $(ls dist | tr '\n' ' ')"
