#!/usr/bin/env bash
# Installs capsule from this checkout, once, with network: Deno (pinned in tools/package.json,
# from the npm registry into tools/node_modules), capsule's npm dependencies (zod, and rollup for
# the build only, exactly as deno.lock pins them, into node_modules/) and the bundle (dist/main.js
# + chunks, and the dist/capsule launcher). Afterwards no capsule command touches the network: the bundle
# holds zod, and running from source finds it in node_modules/. Idempotent; works as root and
# through sudo (which drops the environment that gave npm and Deno their TLS trust or proxy).
# Needs Node.js and npm (only here: the release tarball needs neither), and gcc with the static C
# library to build capsule's native helper (dist/capsule-nsexec, runtime/native/*.c: every
# container's init, and exec's): on
# Debian they are installed with apt when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
# TLS trust: Node and Deno bring their own CA lists; a machine whose registry is reached
# through a TLS-inspecting proxy trusts its CA in the system store, which sudo's env_reset
# hides from them (NODE_EXTRA_CA_CERTS, DENO_CERT are gone). Add the system store to theirs.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
export DENO_TLS_CA_STORE=${DENO_TLS_CA_STORE:-mozilla,system}
export DENO_NO_UPDATE_CHECK=1
if ! command -v npm >/dev/null && [ ! -x tools/node_modules/.bin/deno ]; then
  echo "scripts/install.sh: npm is needed to install Deno (apt-get install nodejs npm)," \
    "or use the release tarball (deno task release), which needs neither" >&2
  exit 1
fi
if [ ! -x tools/node_modules/.bin/deno ]; then
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
deno=$PWD/tools/node_modules/.bin/deno
"$deno" install --frozen --quiet
# The bundle, unless it is newer than every source (deno bundle fetches its esbuild once, into
# DENO_DIR: a later run as another user or with another DENO_DIR then needs no network).
# gcc and glibc's static library (libc.a) for the native helper.
if ! command -v gcc >/dev/null || [ "$(gcc -print-file-name=libc.a)" = libc.a ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null; }
  else
    echo "scripts/install.sh: gcc and the static C library are needed to build capsule's native" \
      "helper: install them (Debian: apt-get install gcc libc6-dev) and run this again" >&2
    exit 1
  fi
fi
if [ ! -f dist/main.js ] || [ ! -x dist/capsule ] || [ ! -x dist/capsule-nsexec ] ||
  [ -n "$(find main.ts mod.ts cli runtime image network ffi scripts/build.ts deno.json deno.lock \
    -newer dist/main.js -print -quit)" ]; then
  "$deno" run -A --quiet scripts/build.ts >/dev/null
fi
