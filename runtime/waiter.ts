// The waiter of a detached container (`run -d`, `image run -d`, `image start`): keeps its
// exit status.
//
// A detached container's init outlives capsule, so its exit status goes to whoever reaps it
// (runc leaves this to conmon or containerd-shim, subreapers that stay resident). capsule
// keeps the smallest such process it can without a build step: a Perl script (perl-base is
// Essential on Debian: always there), ~5 MB RSS, asleep in waitpid/sleep. It makes itself a
// child subreaper (prctl PR_SET_CHILD_SUBREAPER), runs the real capsule command under it
// (which creates and starts the container and exits), and so adopts the init. When the init
// exits it writes the status to <root>/<id>/exit.json (docker's convention: 128+N for a
// signal) unless the state now belongs to another container of that id, reaps any other
// orphan, and exits once it has no child left (the container's log writer, log_writer.ts,
// is adopted too when create's capsule exits: it is reaped here once the container's last
// process is gone). The log is not the waiter's: the log writer rotates it before each
// write, with the limits create was given. Nothing here is on the path of create/start: only
// the CLI of a detached run loads it.
import { CapsuleError } from "./errors.ts";
import { LOG_DEFAULTS, type LogLimits } from "./log_writer.ts";
import { v8FlagsFor } from "./v8_flags.ts";
import { EXIT_FILE } from "./state.ts";

export { LOG_DEFAULTS };

export { EXIT_FILE };

/**
 * The env var that tells a capsule run under the waiter not to start another one; its value
 * is the container's id (chosen before, so that a random one is the same in both).
 */
export const WAITED_ENV = "CAPSULE_WAITED";

/** What exit.json holds. */
export interface ExitStatus {
  /** The exit code, or 128 + the signal that killed the init (137: SIGKILL, OOM). */
  exitCode: number;
  /** The signal number that killed it, 0 if it exited. */
  signal: number;
  /** When the waiter reaped it, ISO 8601 UTC. */
  finishedAt: string;
}

/**
 * The word of a waiter's cleanup command that it replaces by PID:START of the init it saw
 * exit (its host pid and field 22 of its stat, from state.json): `stop --exited` acts only on
 * that run of the container.
 */
export const INIT_WORD = "@INIT@";

const PRCTL = Deno.build.arch === "aarch64" ? 167 : 157;

// state.json's own pids are read at its top level only: StateStore writes it with two spaces of
// indentation, so `\n  "pid":` is the record's, never a hook's kept key of the same name (deeper).
// Arguments: STATE_DIR N CLEANUP_ARGV(N words) CAPSULE_ARGV... The marker
// line tells the caller the exit code of the capsule run under it. CLEANUP_ARGV (--rm's
// destroyc, or a kept image container's `stop --exited`) runs once the init has exited, a word
// INIT_WORD in it replaced by PID:START of that init (as state.json had them when it started),
// so that it acts on that run only.
const SCRIPT = `
use strict; use warnings; use POSIX qw(:sys_wait_h setsid strftime);
my ($dir, $n, @rest) = @ARGV;
my @clean = splice(@rest, 0, $n); my @cmd = @rest;
syscall(${PRCTL}, 36, 1, 0, 0, 0) == 0 or die "capsule: cannot become a child subreaper: $!\\n";
$| = 1;
my $c = fork() // die "capsule: fork: $!\\n";
if (!$c) { exec { $cmd[0] } @cmd or die "capsule: exec $cmd[0]: $!\\n"; }
waitpid($c, 0);
my $code = $? & 127 ? 128 + ($? & 127) : $? >> 8;
print "\\ncapsule-waiter-exit $code\\n";
exit $code if $code;
open(STDIN, "<", "/dev/null"); open(STDOUT, ">", "/dev/null"); open(STDERR, ">", "/dev/null");
setsid(); chdir "/";
my ($init, $start, $reap) = (0, "", 0);
if (open(my $s, "<", "$dir/state.json")) {
  local $/; my $t = <$s>;
  $init = $1 if $t =~ /\\n  "pid":\\s*(\\d+)/; $start = $1 if $t =~ /\\n  "pidStartTime":\\s*"(\\d+)"/;
  $reap = $1 if $t =~ /\\n  "waitPid":\\s*(\\d+)/;
}
$reap ||= $init;
my $run = "$init:$start"; @clean = map { $_ eq '${INIT_WORD}' ? $run : $_ } @clean;
$SIG{CHLD} = sub {};
for (;;) {
  for (;;) {
    my $p = waitpid(-1, WNOHANG);
    exit 0 if $p < 0;
    last if $p == 0;
    next unless $p == $reap;
    my $sig = $? & 127;
    my $x = $sig ? 128 + $sig : $? >> 8;
    my $at = strftime("%Y-%m-%dT%H:%M:%SZ", gmtime);
    my $now = 0;
    if (open(my $s, "<", "$dir/state.json")) { local $/; my $t = <$s>; $now = $1 if $t =~ /\\n  "pid":\\s*(\\d+)/; }
    # util-linux 2.38's unshare exits 1 when its child was killed by SIGKILL (it cannot
    # re-raise that one): from a wrapper, 1 is no status at all.
    my $known = !($reap != $init && !$sig && $x == 1);
    if ($known && $now == $init && open(my $f, ">", "$dir/exit.json.tmp")) {
      print $f "{\\"exitCode\\": $x, \\"signal\\": $sig, \\"finishedAt\\": \\"$at\\"}\\n";
      close $f; rename("$dir/exit.json.tmp", "$dir/exit.json");
    }
    $reap = -1;
    if (@clean) { my $k = fork(); if (defined $k && !$k) { exec { $clean[0] } @clean; exit 127; } }
  }
  sleep 1;
}
`;

/** Whether the waiter can run here (perl at /usr/bin/perl). */
export function waiterAvailable(): boolean {
  try {
    return Deno.statSync("/usr/bin/perl").isFile;
  } catch {
    return false;
  }
}

/**
 * This capsule's own program (without its arguments), to run it again under the waiter, with
 * the V8 flags the launcher gives the command line `args` (runtime/v8_flags.ts).
 */
export function selfCommand(args: readonly string[] = Deno.args): string[] {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return [exe];
  return [
    exe,
    "run",
    "-A",
    "--quiet",
    `--v8-flags=${v8FlagsFor(args)}`,
    new URL(Deno.mainModule).pathname,
  ];
}

/**
 * The cleanup of a kept (not --rm) detached image container with a network, for
 * runUnderWaiter: `capsule stop --exited PID:START ID` under its --root and --store, which
 * gives back its published ports and address once that run's init has exited (docker's stop
 * semantics) and keeps its state (exit status, log).
 */
export function releaseCommand(root: string, store: string, id: string): string[] {
  return [
    ...selfCommand(["stop"]),
    "--root",
    root,
    "--store",
    store,
    "stop",
    "--exited",
    INIT_WORD,
    id,
  ];
}

/**
 * Runs this same capsule command again under a waiter for the container whose state
 * directory is `stateDir` (see the module comment). Prints what the command printed and
 * resolves to its exit code; the waiter stays behind, detached, until the init exits, then
 * runs `cleanup` (a command line: --rm's destroyc, or releaseCommand) if one is given, its
 * INIT_WORD replaced by PID:START of that init.
 * Throws CapsuleError if the waiter cannot be started.
 */
export async function runUnderWaiter(
  id: string,
  stateDir: string,
  cleanup: string[] = [],
): Promise<number> {
  if (!stateDir.startsWith("/")) stateDir = `${Deno.cwd()}/${stateDir}`; // it chdirs to /
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("/usr/bin/perl", {
      args: [
        "-e",
        SCRIPT,
        stateDir,
        String(cleanup.length),
        ...cleanup,
        ...selfCommand(),
        ...Deno.args,
      ],
      env: { [WAITED_ENV]: id },
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    throw new CapsuleError(`Cannot start the container's waiter (perl): ${(e as Error).message}`);
  }
  const out = await new Response(child.stdout).text();
  child.unref();
  const m = /\ncapsule-waiter-exit (\d+)\n$/.exec(out);
  const text = m ? out.slice(0, m.index) : out;
  if (text) Deno.stdout.writeSync(new TextEncoder().encode(text));
  if (m) return Number(m[1]);
  const st = await child.status;
  return st.code || 1;
}

/** The exit status the waiter kept for a stopped container, if any. */
export function readExitStatus(stateDir: string): ExitStatus | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(`${stateDir}/${EXIT_FILE}`));
    return typeof v?.exitCode === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * --log-max-size / --log-max-files values (docker's json-file options) into numbers; sizes
 * through `parseSize` (bytes, e.g. "10m"). Throws CapsuleError naming the flag and the form.
 */
export function parseLogOptions(
  size: string | undefined,
  files: string | undefined,
  parseSize: (v: string) => number,
): LogLimits {
  let maxSize = LOG_DEFAULTS.maxSize;
  if (size !== undefined) {
    try {
      maxSize = parseSize(size);
    } catch {
      maxSize = -1;
    }
  }
  if (maxSize < 0) {
    throw new CapsuleError(
      `Invalid --log-max-size "${size}": expected bytes with an optional unit (k, m, g), ` +
        `e.g. 10m, or 0 to never rotate`,
    );
  }
  const maxFiles = files === undefined ? LOG_DEFAULTS.maxFiles : Number(files);
  if (!/^\d+$/.test(files ?? "1") || maxFiles < 1) {
    throw new CapsuleError(`Invalid --log-max-files "${files}": expected a whole number >= 1`);
  }
  return { maxSize, maxFiles };
}
