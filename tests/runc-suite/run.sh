#!/usr/bin/env bash
# Runs runc's own integration suite (tests/integration/*.bats of an opencontainers/runc checkout,
# v1.1.5 is the one docs/runc-suite.md was measured with) against capsule, as root.
#
#   sudo bash tests/runc-suite/run.sh PATH_TO_RUNC_CHECKOUT [FILE.bats ...] [-- BATS_ARGS...]
#
# PATH_TO_RUNC_CHECKOUT is a whole runc source tree (its vendor/ builds the Go helpers offline),
# outside capsule's repository: the suite is runc's code and is never copied into capsule.
# With no FILE.bats, every file runs. Environment:
#   RUNC=/usr/sbin/runc   run against another runtime (the baseline) instead of dist/capsule
#   TIMEOUT=40            seconds one test may take (bats' BATS_TEST_TIMEOUT)
#   LOG_DIR=DIR           where per-file TAP logs go (default: a new dir under /tmp)
#   LOCK=run              take /tmp/capsule-itest.lock once for all files (default: per file)
#
# It installs nothing: it checks for what it needs and says what to install. It builds
# contrib/cmd/{recvtty,sd-helper,seccompagent} in the checkout (go -mod=vendor, no network),
# writes the two images get-images.sh looks for into the checkout's tests/integration/testdata
# (busybox from the host's busybox-static; a small "debian" rootfs with sh, ldconfig and grep
# copied from the host, enough for hooks.bats), runs each file under the shared lock
# /tmp/capsule-itest.lock and prints one line per test: "pass|fail|skip FILE: NAME", then totals.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
# LOCK=run: hold the shared lock once for all the files given (fewer waits on a busy machine)
# instead of once per file.
if [ "${LOCK:-file}" = run ] && [ -z "${RUNC_SUITE_LOCKED:-}" ]; then
  echo "waiting for /tmp/capsule-itest.lock" >&2
  exec flock /tmp/capsule-itest.lock env RUNC_SUITE_LOCKED=1 bash "$0" "$@"
fi
checkout=$(cd "$1" 2>/dev/null && pwd) || {
  echo "run.sh: $1 is not a directory: give the path of a runc source checkout" >&2
  exit 2
}
shift
itest="$checkout/tests/integration"
if [ ! -f "$itest/helpers.bash" ] || [ ! -d "$checkout/vendor" ]; then
  echo "run.sh: $checkout has no tests/integration/helpers.bash or vendor/: give the root of a" \
    "runc source tree (e.g. git -C runc.git archive v1.1.5 | tar -x -C DIR)" >&2
  exit 2
fi
case "$checkout/" in "$repo"/*)
  echo "run.sh: $checkout is inside capsule's repository; put runc's code elsewhere" >&2
  exit 2
  ;;
esac
files=()
bats_args=()
while [ $# -gt 0 ]; do
  case "$1" in
  --)
    shift
    bats_args=("$@")
    break
    ;;
  *) files+=("$1") ;;
  esac
  shift
done

if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (the suite's root tests are the ones compared with runc)" >&2
  exit 2
fi

# What the suite and the helpers' build need, with the Debian package that has it.
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need bats bats
need go golang-go
need jq jq
need gawk gawk
need gcc gcc
need pkg-config pkg-config
need busybox busybox-static
need xz xz-utils
need nsenter util-linux
need script bsdutils
pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: missing tools; install them with:" >&2
  echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
bats_version=$(bats --version | awk '{print $2}')
if [ "$(printf '%s\n1.7.0\n' "$bats_version" | sort -V | head -1)" != 1.7.0 ]; then
  echo "run.sh: bats $bats_version has no per-test timeout; bats >= 1.7.0 is needed" >&2
  exit 1
fi

RUNC=${RUNC:-$repo/dist/capsule}
if [ ! -x "$RUNC" ]; then
  echo "run.sh: $RUNC is missing; build it first: deno task build" >&2
  exit 1
fi

# The Go helpers, built from the checkout's vendor/ (no module downloads).
build_helper() { # NAME [TAGS]
  local dir="$checkout/contrib/cmd/$1"
  [ -x "$dir/$1" ] && [ "$dir/$1" -nt "$dir" ] && return 0
  echo "building $1" >&2
  (cd "$dir" && GOFLAGS=-mod=vendor GOPROXY=off go build ${2:+-tags "$2"} -o "$1" .) || {
    echo "run.sh: building $dir failed (see above)" >&2
    exit 1
  }
}
build_helper recvtty
build_helper sd-helper
build_helper seccompagent seccomp

# Images: get-images.sh only downloads when testdata/busybox-ARCH.tar.xz is absent.
arch=$(go env GOARCH)
testdata="$itest/testdata"
busybox_tar="$testdata/busybox-$arch.tar.xz"
debian_tar="$testdata/debian-$arch.tar.xz"
if [ ! -e "$busybox_tar" ]; then
  echo "making $busybox_tar from $(command -v busybox)" >&2
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # the image's / (mktemp makes it 0700: no other user could reach /bin)
  # No /proc or /sys, as in docker's busybox image: mask.bats makes them symlinks.
  mkdir -p "$tmp"/{bin,dev,etc,home,root,tmp,usr/sbin,var/spool/mail,var/www}
  chmod 1777 "$tmp/tmp"
  chmod 700 "$tmp/root"
  cp "$(readlink -f "$(command -v busybox)")" "$tmp/bin/busybox"
  for applet in $("$tmp/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
  done
  cat >"$tmp/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
  cat >"$tmp/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nogroup:x:65534:
GROUP
  tar -C "$tmp" --numeric-owner --owner=0 --group=0 -cJf "$busybox_tar.new" . &&
    mv "$busybox_tar.new" "$busybox_tar" && rm -rf "$tmp"
fi
if [ ! -e "$debian_tar" ]; then
  echo "making $debian_tar (sh, ldconfig, grep and their libraries from the host)" >&2
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  mkdir -p "$tmp"/{usr/bin,usr/sbin,usr/lib,etc,dev,proc,sys,tmp,root,var/cache/ldconfig}
  ln -s usr/bin "$tmp/bin"
  ln -s usr/sbin "$tmp/sbin"
  ln -s usr/lib "$tmp/lib"
  ln -s usr/lib64 "$tmp/lib64"
  for prog in sh grep cat ls; do cp -L "$(command -v $prog)" "$tmp/usr/bin/"; done
  cp -L /sbin/ldconfig "$tmp/usr/sbin/"
  for lib in $(ldd "$tmp"/usr/bin/* 2>/dev/null | grep -oE '/[^ :]+ \(0x' | cut -d' ' -f1 | sort -u); do
    mkdir -p "$tmp/usr$(dirname "${lib#/usr}")"
    cp -L "$lib" "$tmp/usr${lib#/usr}"
  done
  [ -d "$tmp/usr/lib64" ] || mkdir -p "$tmp/usr/lib64"
  echo "include /etc/ld.so.conf.d/*.conf" >"$tmp/etc/ld.so.conf"
  mkdir -p "$tmp/etc/ld.so.conf.d"
  echo "/usr/lib/$(gcc -dumpmachine)" >"$tmp/etc/ld.so.conf.d/multiarch.conf"
  echo "root:x:0:0:root:/root:/bin/sh" >"$tmp/etc/passwd"
  echo "root:x:0:" >"$tmp/etc/group"
  chmod 1777 "$tmp/tmp"
  tar -C "$tmp" --numeric-owner --owner=0 --group=0 -cJf "$debian_tar.new" . &&
    mv "$debian_tar.new" "$debian_tar" && rm -rf "$tmp"
fi

if [ ${#files[@]} -eq 0 ]; then
  for f in "$itest"/*.bats; do files+=("$(basename "$f")"); done
fi
LOG_DIR=${LOG_DIR:-$(mktemp -d /tmp/runc-suite.XXXXXX)}
mkdir -p "$LOG_DIR"
echo "runtime: $RUNC; logs: $LOG_DIR" >&2

export RUNC
timeout=${TIMEOUT:-40}
pass=0 fail=0 skip=0
for f in "${files[@]}"; do
  f=$(basename "$f")
  [ -f "$itest/$f" ] || {
    echo "run.sh: no $itest/$f" >&2
    exit 2
  }
  log="$LOG_DIR/${f%.bats}.tap"
  # Each file under the lock other root tests on this machine take; the suite's helpers run
  # from its own directory (get-images.sh, testdata).
  # script(1) gives the run a controlling terminal, as a developer's shell has: tests such as
  # spec.bats run the default terminal: true bundle in the foreground.
  # A per-test timeout (a hung create must not stop the file), except where a test waits for
  # all its background jobs (bats' timeout watcher is one of them: "wait" would never return);
  # there the whole file gets a deadline instead.
  # And every file a deadline of its own: a helper a failed test left behind (a recvtty that
  # its teardown never killed) holds bats' output open, and bats would wait for it for ever.
  # --foreground: bats stays in the terminal's foreground group (else the tests that use the
  # terminal are stopped by SIGTTOU).
  ntests=$(grep -c '^@test' "$itest/$f")
  limit=(timeout --foreground -k 5 $((timeout * ntests + 30)) env BATS_TEST_TIMEOUT="$timeout")
  if grep -qE '^\s*wait\s*(#.*)?$' "$itest/$f"; then
    limit=(timeout --foreground -k 5 $((timeout * ntests)))
  fi
  lock=(flock /tmp/capsule-itest.lock)
  [ -n "${RUNC_SUITE_LOCKED:-}" ] && lock=()
  cmd=$(printf '%q ' cd "$itest")"&& "$(printf '%q ' "${lock[@]}" "${limit[@]}" bats --tap "${bats_args[@]}" "$f")">$(printf '%q' "$log") 2>&1"
  script -q -e -c "$cmd" /dev/null </dev/null >/dev/null 2>&1
  while IFS= read -r line; do
    case "$line" in
    "ok "*"# skip"*)
      echo "skip $f: $(sed -E 's/^ok [0-9]+ //; s/ # skip.*//' <<<"$line")"
      skip=$((skip + 1))
      ;;
    "ok "*)
      echo "pass $f: $(sed -E 's/^ok [0-9]+ //' <<<"$line")"
      pass=$((pass + 1))
      ;;
    "not ok "*)
      echo "fail $f: $(sed -E 's/^not ok [0-9]+ //; s/ in [0-9]+ms$//' <<<"$line")"
      fail=$((fail + 1))
      ;;
    esac
  done <"$log"
  if ! grep -qE '^(ok|not ok) ' "$log"; then
    echo "fail $f: no result (the file hung or was killed; see $log)"
    fail=$((fail + 1))
  fi
done
echo "runc suite against $RUNC: $pass passed, $fail failed, $skip skipped (logs: $LOG_DIR)"
[ "$fail" -eq 0 ]
