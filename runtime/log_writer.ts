// The log of a detached container or exec: its stdout and stderr go to a pipe, and a small
// log writer process (Perl: perl-base is Essential on Debian, and the waiter already uses it)
// appends what it reads to the log file, rotating by rename, as conmon and docker's json-file
// driver do. Nothing here is on the path of a container that is not detached.
//
// Rotation (docker's rule, checked before each write): when the file is not empty and the
// bytes read would take it past max-size, the file is renamed away first (container.log ->
// .1 -> .2 ..., the oldest dropped; with max-files 1 the file is replaced) and a new one is
// begun. Where it can, the writer cuts at the last newline that fits, so files end on whole
// lines; a read (at most 64 KiB) that holds no such newline is cut at max-size. So no file
// is ever larger than max-size, and the files together hold at most max-size x max-files.
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";

/** Log rotation: rotate past `maxSize` bytes (0: never), keep `maxFiles` files (>= 1). */
export interface LogLimits {
  /** Bytes a file may hold before the next write goes to a new one; 0: no limit. */
  maxSize: number;
  /** Files kept, the current one included (docker's max-file): 1 replaces the file. */
  maxFiles: number;
}

/** The default log limits: 10 MiB, 3 files (container.log, .1, .2), as docker's. */
export const LOG_DEFAULTS: LogLimits = { maxSize: 10 * 1024 * 1024, maxFiles: 3 };

/** Whether `v` is a well-formed LogLimits (e.g. one read back from a record). */
export function validLimits(v: unknown): v is LogLimits {
  const l = v as LogLimits | undefined;
  return !!l && Number.isSafeInteger(l.maxSize) && l.maxSize >= 0 &&
    Number.isSafeInteger(l.maxFiles) && l.maxFiles >= 1;
}

const PERL = "/usr/bin/perl";
const ARM = Deno.build.arch === "aarch64";
// No module is loaded (POSIX alone adds 1.7 MB of RSS and 10 ms of CPU at start): syscalls
// by number, open flags as numbers (O_NOFOLLOW differs between the two architectures).
const SYS_CLOSE = ARM ? 57 : 3, SYS_SETSID = ARM ? 157 : 112;
const O_LOG = 0o1 | 0o100 | 0o2000 | (ARM ? 0o100000 : 0o400000); // WRONLY CREAT APPEND NOFOLLOW

// Arguments: LOG MAX_SIZE MAX_FILES PIPE_FD LOG_FD. It keeps nothing but the pipe's read end
// and the log open (never a write end of the pipe: EOF comes once every process of the
// container has closed its own), leaves the caller's session and directory, and exits at EOF.
const SCRIPT = `
use strict;
my ($log, $max, $files, $pfd, $lfd) = @ARGV;
$SIG{PIPE} = 'IGNORE'; $SIG{HUP} = 'IGNORE';
if (opendir(my $d, "/proc/self/fd")) {
  my @fds = grep { /^\\d+$/ && $_ > 2 && $_ != $pfd && $_ != $lfd } readdir($d);
  closedir($d); syscall(${SYS_CLOSE}, $_ + 0) for @fds;
}
$0 = "capsule-log $log";
open(STDIN, "<", "/dev/null"); open(STDOUT, ">", "/dev/null"); open(STDERR, ">", "/dev/null");
syscall(${SYS_SETSID}); chdir("/"); umask(027);
open(my $in, "<&=", $pfd) or exit 1;
my $out; my $size = 0;
if (!open($out, ">>&=", $lfd)) { undef $out; } else { $size = -s $out || 0; }
sub reopen {
  if (sysopen($out, $log, ${O_LOG}, 0640)) {
    $size = -s $out || 0; return 1;
  }
  undef $out; $size = 0; return 0;
}
sub rotate {
  close($out) if $out; undef $out;
  if ($files > 1) {
    for (my $i = $files - 1; $i > 1; $i--) { rename("$log." . ($i - 1), "$log.$i"); }
    rename($log, "$log.1");
  } else { unlink($log); }
  reopen();
}
my $buf;
sub emit {
  my ($o, $l) = @_;
  $out or reopen() or return;
  while ($l > 0) {
    my $w = syswrite($out, $buf, $l, $o);
    if (!defined $w) { next if $! == 4; return; } # EINTR
    $o += $w; $l -= $w; $size += $w;
  }
}
for (;;) {
  my $n = sysread($in, $buf, 65536);
  if (!defined $n) { next if $! == 4 || $! == 11; last; } # EINTR, EAGAIN
  last if $n == 0;
  my $off = 0;
  while ($off < $n) {
    my $len = $n - $off;
    if ($max > 0 && $size + $len > $max) {
      if ($size > 0) {
        my $room = $max - $size;
        my $nl = $room > 0 ? rindex($buf, "\\n", $off + $room - 1) : -1;
        if ($nl >= $off) { emit($off, $nl + 1 - $off); $off = $nl + 1; }
        rotate();
        next;
      }
      my $nl = rindex($buf, "\\n", $off + $max - 1);
      $len = $nl >= $off ? $nl + 1 - $off : $max;
    }
    emit($off, $len); $off += $len;
  }
}
exit 0;
`;

/** What openLog made: the fd for the process's stdout and stderr, and the writer's pid. */
export interface OpenedLog {
  /** The pipe's write end (or the file itself without perl); close-on-exec. */
  fd: number;
  /** The log writer's host pid; undefined without perl (the file is written directly). */
  writerPid?: number;
}

/**
 * Opens the log at `path` (created 0640, appended to) for a detached process and starts its
 * log writer (see the module comment) with `limits`. Returns the fd to hand to the process as
 * stdout and stderr, close-on-exec: clear that right before the one spawn that must inherit
 * it, and close it here once that spawn is done (the writer exits when every holder of it has
 * closed it). Without /usr/bin/perl the fd is the file itself: written directly, never
 * rotated, as before the writer existed. Throws CapsuleError when the file cannot be opened
 * or the writer cannot be started.
 */
export function openLog(path: string, limits: LogLimits): OpenedLog {
  let file: number;
  try {
    file = libc.open(path, libc.O.WRONLY | libc.O.CREAT | libc.O.APPEND | libc.O.CLOEXEC, 0o640);
  } catch (e) {
    throw new CapsuleError(`Cannot open the log ${path}: ${(e as Error).message}`);
  }
  if (!perlAvailable()) return { fd: file };
  let read = -1, write = -1;
  try {
    [read, write] = libc.pipe2(true);
    // Only the writer gets these two; its own copy of the write end would never see EOF.
    libc.setCloexec(read, false);
    libc.setCloexec(file, false);
    const child = new Deno.Command(PERL, {
      args: [
        "-e",
        SCRIPT,
        path,
        String(limits.maxSize),
        String(limits.maxFiles),
        String(read),
        String(file),
      ],
      cwd: "/",
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    child.unref();
    return { fd: write, writerPid: child.pid };
  } catch (e) {
    if (write >= 0) libc.close(write);
    throw new CapsuleError(`Cannot start the log writer of ${path}: ${(e as Error).message}`);
  } finally {
    if (read >= 0) libc.close(read);
    libc.close(file);
  }
}

let perl: boolean | undefined;
function perlAvailable(): boolean {
  if (perl === undefined) {
    try {
      perl = Deno.statSync(PERL).isFile;
    } catch {
      perl = false;
    }
  }
  return perl;
}
