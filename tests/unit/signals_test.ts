// Unit tests of runtime/signals.ts. Numbers are Linux's (signal(7); glibc's SIGRTMIN is 34).
import { parseSignal, signalName } from "../../runtime/signals.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows } from "./helpers.ts";

Deno.test("parseSignal: bare names, SIG-prefixed names, any case", () => {
  assertEquals(parseSignal("TERM"), 15);
  assertEquals(parseSignal("SIGKILL"), 9);
  assertEquals(parseSignal("sigint"), 2);
  assertEquals(parseSignal("hup"), 1);
  assertEquals(parseSignal("SigUsr1"), 10);
  assertEquals(parseSignal("USR2"), 12);
  assertEquals(parseSignal("STOP"), 19);
  assertEquals(parseSignal("CONT"), 18);
  assertEquals(parseSignal("CHLD"), 17);
  assertEquals(parseSignal("WINCH"), 28);
  assertEquals(parseSignal("SYS"), 31);
});

Deno.test("parseSignal: numbers from 1 to 64", () => {
  assertEquals(parseSignal("9"), 9);
  assertEquals(parseSignal("1"), 1);
  assertEquals(parseSignal("15"), 15);
  assertEquals(parseSignal("64"), 64);
  assertEquals(parseSignal("09"), 9);
});

Deno.test("parseSignal: real-time signals RTMIN+n and RTMAX-n", () => {
  assertEquals(parseSignal("RTMIN+2"), 36);
  assertEquals(parseSignal("RTMIN"), 34);
  assertEquals(parseSignal("SIGRTMIN+1"), 35);
  assertEquals(parseSignal("rtmin+30"), 64);
  assertEquals(parseSignal("RTMAX"), 64);
  assertEquals(parseSignal("RTMAX-1"), 63);
  assertEquals(parseSignal("RTMAX-30"), 34);
  // 0: no signal, a check that the process exists (runc kill ID 0).
  assertEquals(parseSignal("0"), 0);
});

Deno.test("parseSignal: out of range or unknown values are CapsuleErrors naming the value", () => {
  for (
    const v of [
      "65",
      "FOO",
      "",
      "-9",
      "1.5",
      "0x9",
      "SIG",
      "RTMIN+31",
      "RTMAX-31",
      "RTMIN-1",
      "KILL9",
      "SIGSIGKILL",
    ]
  ) {
    assertThrows(() => parseSignal(v), CapsuleError, JSON.stringify(v));
  }
});

Deno.test("parseSignal: names of Object.prototype members are not signals", () => {
  for (const v of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
    assertThrows(() => parseSignal(v), CapsuleError);
  }
});

Deno.test("signalName: numbers to SIG names, unknown numbers described", () => {
  assertEquals(signalName(15), "SIGTERM");
  assertEquals(signalName(9), "SIGKILL");
  assertEquals(signalName(40), "signal 40");
});
