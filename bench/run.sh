#!/usr/bin/env bash
# Every row of issue 14's targets table in one command, as root:
#   run true               `run` of `true` (create + start + wait + delete in one command)
#   create+start+delete    three CLI calls, against three empty Deno starts + 15 ms
#   exec true              into a running container (`sleep`), each runtime into its own; then
#                          as engines call it (containerd's shim: --log FILE --log-format json
#                          exec --process FILE --detach --pid-file FILE ID): the same file again (after
#                          the first, capsule's front end runs it from exec.processes), and
#                          capsule alone with files of processes it has not run before: another
#                          environment each run (the front end, from the kept verdict),
#                          another umask each run (the front end reads the file whole), against
#                          runc's row above; and, reported, files the front end leaves to the
#                          Deno CLI (a key written twice: JSON.parse keeps the last)
#   image create           of a busybox + padding archive (IMAGE_MB, incompressible) vs GNU tar -xf
#                          into a directory on the same filesystem, each followed by sync; of a
#                          gzip of a tar holding one file of ZEROS_MB of zeros vs GNU tar -xzf
#   import peak RSS        of the padded archive, and of the tar holding ZEROS_MB of zeros as gzip,
#                          zstd and uncompressed: /usr/bin/time's maximum RSS of the CLI, as
#                          tests/integration/image_memory_test.ts measures it, on the same archives
#                          (tests/fixtures/big_archives.ts)
#   image run true         from a 2 MB busybox image vs the IMAGE_MB image
#   50 networked           NET_N containers, one network, a published port each, created in
#                          parallel then deleted in parallel, inside a private network namespace;
#                          total wall time, per-container median, leftovers (must be 0)
#   create peak RSS        of one `create` (the CLI process; /usr/bin/time -v) vs runc and crun
#   resident               processes left on the host (not in the container's PID namespace)
#                          once create + start, then a root's first and a second `run -d`,
#                          returned, with their RSS
#   floor                  `deno run` of an empty module with the flags dist/capsule uses
# Prints one table (capsule, runc, crun, floor, ratio, target, failed runs) and writes
# bench/RESULTS.md (machine, kernel, versions, date, the table, `--debug` phase timings),
# keeping the hand-written part of an existing RESULTS.md (below its `<!-- notes -->` line).
# Medians of RUNS (default 30) runs with hyperfine; RUNS_IMPORT (default 5) for image create.
# The start rows (run, create + start + delete, exec) and image run go in ROUNDS (default 5)
# rounds of RUNS/ROUNDS runs, the commands in turn each round, pooled: hyperfine runs one
# command's runs all together, and a minute of load on a shared machine then fell on one
# runtime alone (the same build measured 38-48 ms from one run to the next, runc 23-28).
# BENCH_QUICK=1: a short mode for CI (few runs, small archives, 5 networked containers).
# Never fails on a time: the exit status says only whether the benchmark could run.
# RESULTS=FILE writes the report elsewhere (BENCH_QUICK writes none unless RESULTS is given).
# Needs: apt-get install hyperfine runc crun busybox-static jq iptables iproute2 time, and
# `deno task build` (or CAPSULE=... to time another capsule).
set -euo pipefail
self=$(readlink -f "$0")
# crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not supported") even when the v2
# hierarchy has no controllers: the benchmark runs in a private mount namespace without it, for
# all three runtimes alike (nothing of the host changes).
if [ -z "${CAPSULE_BENCH_NS:-}" ] && grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
  exec env CAPSULE_BENCH_NS=1 unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec bash "$0" "$@"' "$self" "$@"
fi
cd "$(dirname "$self")/.."
repo=$PWD
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root" >&2; exit 1; }
QUICK=${BENCH_QUICK:-}
if [ -n "$QUICK" ]; then
  RUNS=${RUNS:-3} RUNS_IMPORT=${RUNS_IMPORT:-1} IMAGE_MB=${IMAGE_MB:-16} ZEROS_MB=${ZEROS_MB:-64}
  ROUNDS=${ROUNDS:-1}
  NET_N=${NET_N:-5} RESULTS=${RESULTS:-}
else
  RUNS=${RUNS:-30} RUNS_IMPORT=${RUNS_IMPORT:-5} IMAGE_MB=${IMAGE_MB:-500} ZEROS_MB=${ZEROS_MB:-2048}
  ROUNDS=${ROUNDS:-5}
  NET_N=${NET_N:-50} RESULTS=${RESULTS-$repo/bench/RESULTS.md}
fi
for tool in hyperfine runc crun busybox jq tar gzip ip iptables unshare /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install hyperfine runc crun busybox-static jq iptables iproute2 time)" >&2; exit 1; }
done
[ -x dist/capsule ] || deno task build >/dev/null
CAPSULE=${CAPSULE:-$PWD/dist/capsule}
DENO=$(sed -n 's/^exec "\([^"]*\)" run .*/\1/p' "$CAPSULE" 2>/dev/null || true)
[ -x "$DENO" ] || DENO=$(command -v deno)
# V8's flags of the launcher's short commands (scripts/build.ts V8_FLAGS), for the floor too.
V8=$(sed -n 's/^v8=\(.*\)$/\1/p' "$CAPSULE" 2>/dev/null | head -1 || true)
# The archives and the extraction target on the disk (ext4 here), not a tmpfs /tmp.
work=$(mktemp -d "${WORK:-/var/tmp}/capsule-bench.XXXXXX")
S="$work/state-capsule"
cleanup() {
  set +e
  for id in $("$CAPSULE" --root "$S" list -q 2>/dev/null); do "$CAPSULE" --root "$S" delete -f "$id" >/dev/null 2>&1; done
  for r in runc crun; do
    for id in $("$r" --root "$work/state-$r" list -q 2>/dev/null); do "$r" --root "$work/state-$r" delete -f "$id" >/dev/null 2>&1; done
  done
  for st in "$work"/store-*; do
    [ -d "$st" ] || continue
    for img in tiny big zeros; do "$CAPSULE" --root "$S" --store "$st" image delete -f "$img" >/dev/null 2>&1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "bench: $(date +%T) $*" >&2; }
failed_of() { jq -r '[.results[] | select(any(.exit_codes[]; . != 0)) | "\(.command) \([.exit_codes[] | select(. != 0)] | length)/\(.exit_codes | length)"] | join(", ")' "$1"; }
med() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median * 1000' "$1"; }
ms() { [ -n "$1" ] && awk "BEGIN {printf \"%.1f ms\", $1}" || echo -; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk "BEGIN {printf \"%.2fx\", $1 / $2}" || echo -; }
# hyperfine in ROUNDS rounds (the commands in turn, RUNS/ROUNDS runs each, rounded up), the
# times pooled into OUT as one hyperfine result per command (times, exit_codes, median):
#   rounds OUT HYPERFINE_ARGS...   (without -r and --export-json)
rounds() {
  local out=$1 per=$(((RUNS + ROUNDS - 1) / ROUNDS)) i parts=()
  shift
  for i in $(seq 1 "$ROUNDS"); do
    hyperfine "$@" -r "$per" --export-json "$out.$i" >/dev/null
    parts+=("$out.$i")
  done
  jq -s '[.[].results[]] | group_by(.command)
    | map({command: .[0].command, times: (map(.times) | add), exit_codes: (map(.exit_codes) | add)})
    | map(. + {median: (.times | sort | if length % 2 == 1 then .[(length - 1) / 2]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end)})
    | {results: .}' "${parts[@]}" >"$out"
}
rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "$@")"); }

# The bundle: busybox, one config for all three runtimes (ociVersion 1.0.2: crun 1.8 refuses newer).
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/"{proc,sys,dev,tmp,etc,root}
cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/bundle/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/bundle/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/bundle/rootfs/etc/group"
(cd "$work/bundle" && "$CAPSULE" spec)
jq '.ociVersion = "1.0.2" | .process.args = ["true"] | .process.terminal = false' \
  "$work/bundle/config.json" >"$work/c.json" && mv "$work/c.json" "$work/bundle/config.json"
# A second bundle (same rootfs) whose program stays up: for exec and the networked containers.
mkdir -p "$work/sleeper"
jq --arg root "$work/bundle/rootfs" '.process.args = ["sleep", "100000"] | .root.path = $root' \
  "$work/bundle/config.json" >"$work/sleeper/config.json"
echo 'export default 0;' >"$work/empty.js"
floor_cmd="$DENO run -A --no-config --no-lock --no-remote --no-npm --quiet ${V8:+--v8-flags=$V8} $work/empty.js"
bin() { case $1 in capsule) echo "$CAPSULE" ;; *) echo "$1" ;; esac; }

# 1, 2: run true; create + start + delete -f; the floor (one empty Deno start).
log "run true, create+start+delete ($RUNS runs each)"
cmds_run=() cmds_csd=()
for r in capsule runc crun; do
  b=$(bin "$r") s="$work/state-$r"
  cmds_run+=("$b --root $s run -b $work/bundle bench-$r")
  cmds_csd+=("sh -c '$b --root $s create -b $work/bundle csd-$r >/dev/null 2>&1 && $b --root $s start csd-$r && $b --root $s delete -f csd-$r'")
done
rounds "$work/run.json" -N -i -w 3 -n capsule -n runc -n crun -n floor "${cmds_run[@]}" "$floor_cmd"
rounds "$work/csd.json" -i -w 3 -S none -n capsule -n runc -n crun "${cmds_csd[@]}"
floor=$(med "$work/run.json" floor)
c=$(med "$work/run.json" capsule) rr=$(med "$work/run.json" runc) cr=$(med "$work/run.json" crun)
row "run true" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "<= 1.5x runc" "$(failed_of "$work/run.json")"
c=$(med "$work/csd.json" capsule) rr=$(med "$work/csd.json" runc) cr=$(med "$work/csd.json" crun)
f3=$(awk "BEGIN {print 3 * $floor + 15}")
row "create+start+delete" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$f3") (3 floors+15)" "$(ratio "$c" "$f3") of 3 floors+15" "<= 1.00x" "$(failed_of "$work/csd.json")"

# 3: exec true into a running container (each runtime into its own).
log "exec true ($RUNS runs each)"
cmds_exec=() cmds_pexec=()
for r in capsule runc crun; do
  b=$(bin "$r") s="$work/state-$r"
  "$b" --root "$s" create -b "$work/sleeper" "ex-$r" </dev/null >"$work/ex-$r.log" 2>&1 &&
    "$b" --root "$s" start "ex-$r" >>"$work/ex-$r.log" 2>&1 || { log "$r: the sleeper did not start:"; cat "$work/ex-$r.log" >&2; }
  cmds_exec+=("$b --root $s exec ex-$r true")
  # As containerd's shim calls it: its --log in json, the process file, --detach, --pid-file.
  cmds_pexec+=("$b --root $s --log $work/log-$r.json --log-format json exec --process $work/process.json --detach --pid-file $work/pid-$r ex-$r")
done
# The form engines use (podman's conmon, containerd's shim): the process as an OCI process file.
jq '.process | .args = ["true"] | .terminal = false' "$work/bundle/config.json" >"$work/process.json"
rounds "$work/exec.json" -N -i -w 3 -n capsule -n runc -n crun "${cmds_exec[@]}"
rounds "$work/pexec.json" -N -i -w 3 -n capsule -n runc -n crun "${cmds_pexec[@]}"
# The same form for processes capsule has not run before. Each run's file another environment
# (what engines change from one exec to the next: args, env, cwd): the front end runs it from the
# kept verdict of the file above, those three replaced (runtime/native/process_delta.c). Each
# run's file another umask: unlike any file run before, read whole by the front end
# (process_delta.c process_records). Each run's file another umask and "user" written twice
# (JSON.parse keeps the last): a file the front end does not read, so each is the Deno CLI's exec.
for i in $(seq 1 "$RUNS"); do
  jq -c --arg v "$i" '.env += ["BENCH_RUN=" + $v]' "$work/process.json" >"$work/process-$i.json"
  jq -c --argjson v "$i" '.user.umask = $v' "$work/process.json" >"$work/process-u$i.json"
  jq -c --argjson v "$i" '.user.umask = 100 + $v' "$work/process.json" |
    sed 's/^{/{"user":{"uid":0,"gid":0},/' >"$work/process-d$i.json"
done
hyperfine -N -i -r 1 -P i 1 "$RUNS" --export-json "$work/pnew.json" \
  "$CAPSULE --root $S --log $work/log-capsule.json --log-format json exec --process $work/process-{i}.json --detach --pid-file $work/pid-capsule ex-capsule" >/dev/null
hyperfine -N -i -r 1 -P i 1 "$RUNS" --export-json "$work/punlike.json" \
  "$CAPSULE --root $S --log $work/log-capsule.json --log-format json exec --process $work/process-u{i}.json --detach --pid-file $work/pid-capsule ex-capsule" >/dev/null
hyperfine -N -i -r 1 -P i 1 "$RUNS" --export-json "$work/pdeno.json" \
  "$CAPSULE --root $S --log $work/log-capsule.json --log-format json exec --process $work/process-d{i}.json --detach --pid-file $work/pid-capsule ex-capsule" >/dev/null
for r in capsule runc crun; do "$(bin "$r")" --root "$work/state-$r" delete -f "ex-$r" >/dev/null 2>&1 || true; done
c=$(med "$work/exec.json" capsule) rr=$(med "$work/exec.json" runc) cr=$(med "$work/exec.json" crun)
row "exec true" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "<= 1.5x runc" "$(failed_of "$work/exec.json")"
c=$(med "$work/pexec.json" capsule) rr=$(med "$work/pexec.json" runc) cr=$(med "$work/pexec.json" crun)
row "exec --process of true as engines call it (--log, --detach, --pid-file), a process run before" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "<= 1.5x runc" "$(failed_of "$work/pexec.json")"
medp() { jq '[.results[].times[0]] | sort | if length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end * 1000' "$1"; }
c=$(medp "$work/pnew.json")
row "the same, a process not run before: another env than one run before" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "<= 1.5x runc" "$(failed_of "$work/pnew.json")"
c=$(medp "$work/punlike.json")
row "the same, a process unlike any run before (another umask: read whole by the front end)" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "<= 1.5x runc" "$(failed_of "$work/punlike.json")"
c=$(medp "$work/pdeno.json")
row "the same, a file the front end leaves to the Deno CLI (a key written twice)" "$(ms "$c")" "$(ms "$rr")" "$(ms "$cr")" "$(ms "$floor")" "$(ratio "$c" "$rr") of runc" "reported" "$(failed_of "$work/pdeno.json")"

# 4: the archives, built offline. big.tar: the busybox rootfs plus IMAGE_MB of incompressible
# padding, half in 8 KiB files (a language's packages), half in 16 MiB files (data, binaries).
# zeros.tar{,.gz,.zst}: a tar of one file of ZEROS_MB zeros; compressed (gzip -9 as one member,
# zstd frames) it is tiny and imports huge (tests/fixtures/big_archives.ts, as the memory test).
log "building the archives (${IMAGE_MB} MB image, ${ZEROS_MB} MB of zeros)"
tar -C "$work/bundle/rootfs" -cf "$work/tiny.tar" .
tiny_mb=$(awk "BEGIN {printf \"%.1f\", $(stat -c %s "$work/tiny.tar") / 1048576}")
mkdir -p "$work/bigroot"
cp -a "$work/bundle/rootfs/." "$work/bigroot/"
mkdir -p "$work/bigroot/opt/pad/small" "$work/bigroot/opt/pad/large"
small_mb=$((IMAGE_MB / 2))
head -c $((small_mb * 1048576)) /dev/urandom | split -a 5 -b 8192 - "$work/bigroot/opt/pad/small/f"
left=$((IMAGE_MB - small_mb)) i=0
while [ "$left" -gt 0 ]; do
  n=$((left < 16 ? left : 16)) i=$((i + 1)) left=$((left - n))
  head -c $((n * 1048576)) /dev/urandom >"$work/bigroot/opt/pad/large/blob$i"
done
tar --numeric-owner -C "$work/bigroot" -cf "$work/big.tar" .
rm -rf "$work/bigroot"
big_mb=$(($(stat -c %s "$work/big.tar") / 1048576))
big_files=$(tar -tf "$work/big.tar" | wc -l)
"$DENO" run -A --no-config --no-lock --quiet "$repo/tests/fixtures/big_archives.ts" "$work" "$ZEROS_MB"
zeros_kb=$(($(stat -c %s "$work/zeros.tar.gz") / 1024))
zst_kb=$(($(stat -c %s "$work/zeros.tar.zst") / 1024))

# Each run starts with nothing dirty in the page cache (`sync` after the removal of the last run's
# files): the disk's writeback of one run's 500 MB fell on the next, and moved either side by 2-3x
# from one run to the next. And each side's time ends with its files on disk (`&& sync` in the
# timed command): neither syncs by itself, and how much of 500 MB the kernel has written back when
# the command returns decided this row (2.33x of tar in one full run, 0.74x in the next, the same
# archive; capsule 3.79 s and tar 3.63 s in a spot check with a sync before each). The two sides
# alternate, one run each per round (rounds): this machine's I/O changes from minute to minute
# (tar alone took 3.7 s, then 6.3 s), and a slow minute fell on one side only.
log "image create vs tar -xf ($RUNS_IMPORT runs each, alternating)"
cat "$work/big.tar" >/dev/null
RUNS=$RUNS_IMPORT ROUNDS=$RUNS_IMPORT rounds "$work/import.json" -N -i \
  --prepare "sh -c 'rm -rf $work/store-import $work/tar-target && sync'" \
  -n capsule "sh -c '$CAPSULE --root $S --store $work/store-import image create big $work/big.tar && sync'" \
  --prepare "sh -c 'rm -rf $work/store-import $work/tar-target && mkdir $work/tar-target && sync'" \
  -n tar "sh -c 'tar -C $work/tar-target -xf $work/big.tar && sync'" >/dev/null
rm -rf "$work/store-import" "$work/tar-target"
c=$(med "$work/import.json" capsule) t=$(med "$work/import.json" tar)
row "image create ($big_mb MB, $big_files entries), then sync" "$(ms "$c")" - - "tar $(ms "$t")" "$(ratio "$c" "$t") of tar" "<= 1.5x tar" "$(failed_of "$work/import.json")"
log "image create vs tar -xzf of the gzip of $ZEROS_MB MB of zeros ($RUNS_IMPORT runs each, alternating)"
RUNS=$RUNS_IMPORT ROUNDS=$RUNS_IMPORT rounds "$work/import-zeros.json" -N -i \
  --prepare "sh -c 'rm -rf $work/store-import $work/tar-target && sync'" \
  -n capsule "$CAPSULE --root $S --store $work/store-import image create zeros $work/zeros.tar.gz" \
  --prepare "sh -c 'rm -rf $work/store-import $work/tar-target && mkdir $work/tar-target && sync'" \
  -n tar "tar -C $work/tar-target -xzf $work/zeros.tar.gz" >/dev/null
rm -rf "$work/store-import" "$work/tar-target"
c=$(med "$work/import-zeros.json" capsule) t=$(med "$work/import-zeros.json" tar)
row "image create, gzip of $ZEROS_MB MB zeros ($zeros_kb KB)" "$(ms "$c")" - - "tar -xzf $(ms "$t")" "$(ratio "$c" "$t") of tar" "<= 1.5x tar" "$(failed_of "$work/import-zeros.json")"

# 5: peak RSS of imports (one run each; KB from /usr/bin/time -v).
rss() { sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$1"; }
exitof() { sed -n 's/^\s*Exit status: //p' "$1"; }
log "peak RSS of imports"
/usr/bin/time -v -o "$work/rss-big" "$CAPSULE" --root "$S" --store "$work/store-rss" image create big "$work/big.tar" >/dev/null 2>&1 || true
"$CAPSULE" --root "$S" --store "$work/store-rss" image delete -f big >/dev/null 2>&1 || true
for a in tar.gz tar.zst tar; do
  /usr/bin/time -v -o "$work/rss-zeros.$a" "$CAPSULE" --root "$S" --store "$work/store-rss" image create zeros "$work/zeros.$a" >/dev/null 2>&1 || true
  "$CAPSULE" --root "$S" --store "$work/store-rss" image delete -f zeros >/dev/null 2>&1 || true
done
rm -rf "$work/store-rss"
mb() { [ -n "$1" ] && awk "BEGIN {printf \"%.0f MB\", $1 / 1024}" || echo -; }
fails() { [ "$(exitof "$1")" = 0 ] && echo "" || echo "exit $(exitof "$1")"; }
row "import peak RSS, $big_mb MB tar" "$(mb "$(rss "$work/rss-big")")" - - - - "<= 300 MB" "$(fails "$work/rss-big")"
row "import peak RSS, gzip of $ZEROS_MB MB zeros ($zeros_kb KB)" "$(mb "$(rss "$work/rss-zeros.tar.gz")")" - - - - "<= 300 MB" "$(fails "$work/rss-zeros.tar.gz")"
row "import peak RSS, zstd of $ZEROS_MB MB zeros ($zst_kb KB)" "$(mb "$(rss "$work/rss-zeros.tar.zst")")" - - - - "<= 300 MB" "$(fails "$work/rss-zeros.tar.zst")"
row "import peak RSS, tar holding one $ZEROS_MB MB file" "$(mb "$(rss "$work/rss-zeros.tar")")" - - - - "<= 300 MB" "$(fails "$work/rss-zeros.tar")"

# 6: image run --rm true, tiny vs big image.
log "image run true, $tiny_mb MB vs $big_mb MB image ($RUNS runs each)"
"$CAPSULE" --root "$S" --store "$work/store-run" image create tiny "$work/tiny.tar" >/dev/null
"$CAPSULE" --root "$S" --store "$work/store-run" image create big "$work/big.tar" >/dev/null
rounds "$work/irun.json" -N -i -w 3 \
  -n tiny "$CAPSULE --root $S --store $work/store-run image run --rm tiny true" \
  -n big "$CAPSULE --root $S --store $work/store-run image run --rm big true"
c=$(med "$work/irun.json" big) t=$(med "$work/irun.json" tiny)
row "image run true, $big_mb MB vs $tiny_mb MB image" "$(ms "$c")" - - "$tiny_mb MB: $(ms "$t")" "$(ratio "$c" "$t") of small" "<= 1.10x" "$(failed_of "$work/irun.json")"

# 7: NET_N containers with a network and a published port each, created in parallel then deleted
# in parallel, in a private network namespace (bridge, veths and iptables rules stay in it).
log "$NET_N networked containers in parallel"
cat >"$work/net.sh" <<'EOF'
set -u
C=$1 S=$2 B=$3 N=$4 out=$5
ip link set lo up
"$C" --root "$S" network create benchnet --subnet 10.231.0.0/16 >/dev/null || exit 1
now() { date +%s%N; }
t0=$(now)
for i in $(seq 1 "$N"); do
  ( s=$(now); "$C" --root "$S" create --network benchnet -p $((20000 + i)):80 -b "$B" "net-$i" </dev/null >"$out/create-$i.log" 2>&1
    rc=$?; echo "$i $rc $((($(now) - s) / 1000000))" >>"$out/create.times" ) &
done
wait
t1=$(now)
for i in $(seq 1 "$N"); do
  ( s=$(now); "$C" --root "$S" delete -f "net-$i" </dev/null >"$out/delete-$i.log" 2>&1
    rc=$?; echo "$i $rc $((($(now) - s) / 1000000))" >>"$out/delete.times" ) &
done
wait
t2=$(now)
echo "create_total=$(((t1 - t0) / 1000000)) delete_total=$(((t2 - t1) / 1000000))" >"$out/totals"
# Leftovers while the network still exists: containers, veths, DNAT rules, addresses taken.
{
  echo "containers $("$C" --root "$S" list -q 2>/dev/null | wc -l)"
  echo "veths $(ip -o link show type veth | wc -l)"
  echo "dnat_rules $(iptables-save -t nat 2>/dev/null | grep -c -- '--dport 2[0-9][0-9][0-9][0-9]')"
  echo "port_claims $(find "$S/_networks/_ports" -type f 2>/dev/null | wc -l)"
  echo "ip_claims $(find "$S/_networks/benchnet/ips" -type f 2>/dev/null | wc -l)"
} >"$out/leftovers"
"$C" --root "$S" network delete benchnet >/dev/null 2>&1 || echo "network_delete_failed 1" >>"$out/leftovers"
echo "links_after_network_delete $(($(ip -o link | wc -l) - 1))" >>"$out/leftovers"
EOF
mkdir -p "$work/net"
unshare -n bash "$work/net.sh" "$CAPSULE" "$work/state-net" "$work/sleeper" "$NET_N" "$work/net" || log "the network run failed"
cg_left=$(find /sys/fs/cgroup -path '*capsule*' -name 'net-*' -type d 2>/dev/null | wc -l)
state_left=$(find "$work/state-net" -mindepth 1 -maxdepth 1 -name 'net-*' 2>/dev/null | wc -l)
echo "cgroups $cg_left" >>"$work/net/leftovers"
echo "state_dirs $state_left" >>"$work/net/leftovers"
median_of() { awk '{print $3}' "$1" | sort -n | awk '{a[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
nfail() { awk '$2 != 0' "$1" 2>/dev/null | wc -l; }
# shellcheck disable=SC1091
. "$work/net/totals" 2>/dev/null || { create_total='' delete_total=''; }
left_total=$(awk '{s += $2} END {print s + 0}' "$work/net/leftovers")
left_text=$(awk '$2 != 0 {printf "%s%s %s", sep, $1, $2; sep = ", "}' "$work/net/leftovers")
# The first failure of each kind, for the report (the logs go with $work).
: >"$work/net-errors"
for k in create delete; do
  i=$(awk '$2 != 0 {print $1; exit}' "$work/net/$k.times" 2>/dev/null || true)
  [ -n "$i" ] && { echo "first failed $k (net-$i):"; head -5 "$work/net/$k-$i.log"; } >>"$work/net-errors"
done
[ -s "$work/net-errors" ] && cat "$work/net-errors" >&2
net_fail="create $(nfail "$work/net/create.times")/$NET_N, delete $(nfail "$work/net/delete.times")/$NET_N"
row "$NET_N networked (-p) creates, parallel: total / median" "$(ms "$create_total") / $(ms "$(median_of "$work/net/create.times")")" - - - - "reported" "$net_fail"
row "$NET_N deletes, parallel: total / median; leftovers" "$(ms "$delete_total") / $(ms "$(median_of "$work/net/delete.times")")" - - - "leftovers: $left_total ${left_text:+($left_text)}" "0 leftovers" ""

# 8: peak RSS of one create (the CLI process, as /usr/bin/time -v sees it) vs runc, crun.
log "peak RSS of one create"
for r in capsule runc crun; do
  /usr/bin/time -v -o "$work/rss-create-$r" "$(bin "$r")" --root "$work/state-$r" create -b "$work/bundle" "rss-$r" </dev/null >/dev/null 2>&1 || true
  "$(bin "$r")" --root "$work/state-$r" delete -f "rss-$r" >/dev/null 2>&1 || true
done
/usr/bin/time -v -o "$work/rss-floor" $floor_cmd >/dev/null 2>&1 || true
c=$(rss "$work/rss-create-capsule") rr=$(rss "$work/rss-create-runc") cr=$(rss "$work/rss-create-crun")
row "create peak RSS (CLI)" "$(mb "$c")" "$(mb "$rr")" "$(mb "$cr")" "$(mb "$(rss "$work/rss-floor")")" "$(ratio "$c" "$rr") of runc" "reported" "$(for r in capsule runc crun; do [ "$(exitof "$work/rss-create-$r")" = 0 ] || printf '%s exit %s ' "$r" "$(exitof "$work/rss-create-$r")"; done)"

# 9: what stays resident per running container, beside the container's own processes: the
# processes that appeared on the host and are in the host's PID namespace, with their RSS, once
# create + start (the engines' way), then `run -d`, have returned.
log "what stays resident per container"
resident() { # COMMAND...: prints "N (M MB)"
  local before after p v n=0 kb=0 host
  host=$(readlink /proc/self/ns/pid)
  before=$(ps -e -o pid= | sort)
  "$@" </dev/null >/dev/null 2>&1 || { echo "failed"; return; }
  sleep 0.5
  after=$(ps -e -o pid= | sort)
  for p in $(comm -13 <(echo "$before") <(echo "$after")); do
    [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$host" ] || continue
    # A process that is running (not a zombie left for its parent), and its RSS.
    v=$(awk '/^State:/ && $2 == "Z" {z = 1} /^VmRSS/ {r = $2} END {if (!z) print r + 0}' "/proc/$p/status" 2>/dev/null || true)
    [ -n "$v" ] || continue
    n=$((n + 1)) kb=$((kb + v))
  done
  echo "$n ($(awk "BEGIN {printf \"%.1f\", $kb / 1024}") MB)"
}
# A root's first `run -d` starts capsule's monitor (one per state root: runtime/native/monitor.c);
# a second one while the first runs shows what each further container adds.
declare -A res_cs res_rd res_rd2
for r in capsule runc crun; do
  b=$(bin "$r") s="$work/state-$r"
  res_cs[$r]=$(resident sh -c "'$b' --root '$s' create -b '$work/sleeper' res-$r && '$b' --root '$s' start res-$r")
  "$b" --root "$s" delete -f "res-$r" >/dev/null 2>&1 || true
  res_rd[$r]=$(resident "$b" --root "$s" run -d -b "$work/sleeper" "rd-$r")
  res_rd2[$r]=$(resident "$b" --root "$s" run -d -b "$work/sleeper" "rd2-$r")
  "$b" --root "$s" delete -f "rd-$r" >/dev/null 2>&1 || true
  "$b" --root "$s" delete -f "rd2-$r" >/dev/null 2>&1 || true
done
row "resident per container after create + start: processes (RSS)" "${res_cs[capsule]}" "${res_cs[runc]}" "${res_cs[crun]}" - - "0 resident" ""
row "resident after a root's first run -d: processes (RSS)" "${res_rd[capsule]}" "${res_rd[runc]}" "${res_rd[crun]}" - - "1 per root" ""
row "resident per container after a further run -d: processes (RSS)" "${res_rd2[capsule]}" "${res_rd2[runc]}" "${res_rd2[crun]}" - - "0 resident" ""

# Where create's milliseconds go: one `--debug run` of true.
"$CAPSULE" --debug --root "$S" run -b "$work/bundle" debug-run >"$work/debug.txt" 2>&1 || true

table() {
  echo "| row | capsule | runc | crun | floor / reference | ratio | target | failed runs |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
}
mode="RUNS=$RUNS in ROUNDS=$ROUNDS rounds, RUNS_IMPORT=$RUNS_IMPORT, IMAGE_MB=$IMAGE_MB, ZEROS_MB=$ZEROS_MB, NET_N=$NET_N${QUICK:+, BENCH_QUICK}"
echo "medians; $mode; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
table
if [ -n "$RESULTS" ]; then
  notes=""
  [ -f "$RESULTS" ] && notes=$(sed -n '/^<!-- notes -->$/,$p' "$RESULTS")
  {
    echo "# Benchmark results"
    echo
    echo "Written by \`bash bench/run.sh\` ($mode) on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM; load average before the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- system: $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r), cgroup $(if grep -q ' /sys/fs/cgroup cgroup2 ' /proc/self/mountinfo; then echo v2; else echo v1 hybrid; fi), $(df -PT "$work" | awk 'NR==2 {print $2}') under $(dirname "$work")"
    echo "- versions: capsule $(git -C "$repo" rev-parse --short HEAD 2>/dev/null), $("$DENO" --version | head -1), $(runc --version | head -1), $(crun --version | head -1), $(hyperfine --version), $(tar --version | head -1)"
    echo "- archives: busybox rootfs $tiny_mb MB; padded image $big_mb MB ($big_files entries, half 8 KiB files, half 16 MiB files, random bytes); a tar of one file of $ZEROS_MB MB of zeros: gzip $zeros_kb KB, zstd $zst_kb KB, uncompressed (its zeros a hole on disk)"
    echo
    table
    echo
    echo "Ratios are of medians from the same run. Peak RSS is \`/usr/bin/time -v\`'s maximum resident"
    echo "set size: the CLI process and the children it waited for (capsule's init, which outlives"
    echo "\`create\`, is not counted)."
    echo
    echo "\`capsule --debug run\` of \`true\` (one run, same bundle):"
    echo
    echo '```'
    cat "$work/debug.txt"
    echo '```'
    if [ -s "$work/net-errors" ]; then
      echo
      echo "Failures of the networked run:"
      echo
      echo '```'
      cat "$work/net-errors"
      echo '```'
    fi
    if [ -n "$notes" ]; then echo; echo "$notes"; fi
  } >"$RESULTS"
  # In the repository's markdown style (deno fmt aligns the table), when Deno can.
  (cd "$repo" && "$DENO" fmt "$RESULTS" >/dev/null 2>&1) || true
  echo "wrote $RESULTS"
fi
