# SPIKE helper: containers' seccomp.json (docker/podman format, /usr/share/containers/seccomp.json)
# to an OCI linux.seccomp for x86_64 and the runtime spec's default capabilities (none of the
# includes.caps rules apply; an excludes.caps rule applies, as those caps are not held).
{
  defaultAction,
  defaultErrnoRet,
  architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  syscalls: [
    .syscalls[]
    | select((.includes.caps // []) == [])
    | select((.includes.arches // []) == [] or ((.includes.arches // []) | index("amd64")))
    | select((.excludes.arches // []) | index("amd64") | not)
    | select(.includes.minKernel == null)
    | {names, action} + (if .errnoRet then {errnoRet} else {} end) + (if .args then {args} else {} end)
  ]
}
