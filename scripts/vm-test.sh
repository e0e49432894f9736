#!/usr/bin/env bash
# Runs the sensor's tests (unit and integration: real eBPF, real syscalls) inside VMs on
# Debian's stock kernels 6.1 and 6.12, which have kprobes, fentry and BPF-LSM where this
# host may not. The kernels boot at the same time, one core each (TCG on 2 shared cores).
#
#   scripts/vm-test.sh            # build, pack, boot, run; rc 0 only if every test passed
#
# Steps, each cached so a warm run only rebuilds what changed:
#   1. Debian packages: qemu-system-x86, busybox-static, cpio, jq (apt, once).
#   2. The kernels: for each meta package (`linux-image-amd64`, 6.1 on bookworm, and
#      `linux-image-6.12-amd64`), `apt-get download` it and the versioned image package it
#      depends on (Debian ships the modules in that same package), unpacked with
#      `dpkg -x` into $NIGHTJAR_VM_CACHE (default ~/.cache/nightjar/vm), kept there.
#   3. The test binaries: `cargo test --workspace --no-run --message-format=json` (the same
#      build `cargo test --workspace` made, so nothing is rebuilt after the host tests); the
#      nightjar-sensor test executables and the `nightjar` binary are taken from the JSON.
#   4. An initramfs (uncompressed cpio, in target/vm/): busybox for init, the host's own
#      glibc binaries the tests exec (sh, echo, true, cat, sleep, unshare, nsenter) laid
#      out as on the host (merged /usr), every shared library `ldd` names, the repo's
#      config/policies at the path the tests were built with, /etc/shadow & co.
#   5. QEMU with TCG (KVM hangs after the BIOS on these machines) under a deadline; the
#      guest mounts proc, sys, devtmpfs, tracefs, debugfs, bpffs, securityfs and cgroup2,
#      runs each test binary with --test-threads=1, prints `nightjar status`, powers off.
#      Its console (serial) is streamed here and kept in target/vm/console.log.
#
# Fails (rc 1) if a test fails, a binary's summary line is missing, or a VM has not
# powered off within NIGHTJAR_VM_DEADLINE seconds (each kernel).
#
# Environment: NIGHTJAR_VM_CACHE, NIGHTJAR_VM_DEADLINE (s per kernel, default 900),
# NIGHTJAR_VM_MEM (MiB per VM, default 1024), NIGHTJAR_VM_SMP (default 1),
# NIGHTJAR_VM_KERNEL_PKG (space-separated meta packages, default
# "linux-image-amd64 linux-image-6.12-amd64": Debian's 6.1 and 6.12 on bookworm),
# NIGHTJAR_VM_TEST_ARGS (extra libtest args for every binary, e.g. a name filter),
# NIGHTJAR_VM_SKIP_6_12 (test binaries not run on 6.12, default "policy,process":
# its verifier takes ~8x as long as 6.1's under TCG, ~8 s per copy of the selector engine,
# and those binaries load dozens of copies (policy.rs ~20 min; the process tests, a sensor
# each, did not finish in 600 s on a busy host); they run in full on 6.1, the lib tests
# (kernel probe, BTF offsets, compiler) and the policy corpus on both.
# `NIGHTJAR_VM_SKIP_6_12= NIGHTJAR_VM_DEADLINE=2400` runs all).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd -P)"
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[vm-test] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

cache="${NIGHTJAR_VM_CACHE:-$HOME/.cache/nightjar/vm}"
deadline="${NIGHTJAR_VM_DEADLINE:-900}"
mem="${NIGHTJAR_VM_MEM:-1024}"
smp="${NIGHTJAR_VM_SMP:-1}"
kernel_metas="${NIGHTJAR_VM_KERNEL_PKG:-linux-image-amd64 linux-image-6.12-amd64}"
# An exec under TCG costs ~15 ms with the sensor loaded, so the exec-accounting tests run
# a tenth of their host counts there (sensor/tests/process.rs: exec_count).
exec_scale="${NIGHTJAR_VM_EXEC_SCALE:-0.1}"
work="$repo/target/vm"
t_start=$(date +%s)

# --- 1. packages -------------------------------------------------------------------------
need=()
for p in qemu-system-x86 busybox-static cpio jq binutils; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- 3. test binaries --------------------------------------------------------------------
log "cargo test --workspace --no-run"
cargo test --workspace --no-run --locked --message-format=json-render-diagnostics >"$work.build.json" 2> >(grep -v '^ *\(Compiling\|Finished\|Executable\)' >&2 || true) \
  || { mkdir -p "$work"; die "cargo build failed"; }
mkdir -p "$work"
mv "$work.build.json" "$work/build.json"
sensor_tests="$(jq -r 'select(.reason == "compiler-artifact" and .profile.test and (.package_id | test("#nightjar-sensor@")) and .executable != null) | "\(.target.name) \(.executable)"' "$work/build.json")"
nightjar_bin="$(jq -r 'select(.reason == "compiler-artifact" and (.target.kind | index("bin")) and .target.name == "nightjar" and (.profile.test | not) and .executable != null) | .executable' "$work/build.json" | tail -n1)"
[ -n "$sensor_tests" ] || die "no nightjar-sensor test executables in cargo's output"

# --- 2. kernels (each prepared just before its boot) -----------------------------------
mkdir -p "$cache"
kernel_pkg() { apt-cache depends "$kernel_meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
# prepare_kernel META: sets kpkg, kdir and expect (what the guest's probe must see).
prepare_kernel() {
kernel_meta="$1"
fetch_kernel() {
  local pkg="$1" dir="$cache/kernel/$1" tmp
  [ -s "$dir/vmlinuz" ] && return 0
  log "downloading $kernel_meta -> $pkg (once; cached in $dir)"
  tmp="$(mktemp -d "$cache/.dl.XXXXXX")"
  (cd "$tmp" && apt-get download "$kernel_meta" "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; return 1; }
  dpkg -x "$tmp"/"$pkg"_*.deb "$tmp/root"
  mkdir -p "$tmp/out"
  cp "$tmp"/root/boot/vmlinuz-* "$tmp/out/vmlinuz"
  cp "$tmp"/root/boot/config-* "$tmp/out/config"
  cp "$tmp"/root/boot/System.map-* "$tmp/out/System.map"
  # The modules stay out of the initramfs: everything the tests use is built in
  # (bpf, tracefs, cgroup2, namespaces); kept here for whoever needs one later.
  mv "$tmp/root/lib/modules" "$tmp/out/modules" 2>/dev/null || mv "$tmp/root/usr/lib/modules" "$tmp/out/modules"
  mkdir -p "$cache/kernel"
  rm -rf "$dir" && mv "$tmp/out" "$dir"
  rm -rf "$tmp"
}
(
  flock 9
  pkg="$(kernel_pkg)"
  if [ -z "$pkg" ]; then
    apt-get update -qq || true
    pkg="$(kernel_pkg)"
  fi
  if [ -z "$pkg" ]; then
    # No apt lists: use whatever kernel of this series was cached before.
    series="$(sed -n 's/^linux-image-\([0-9.]*\)-amd64$/\1/p' <<<"$kernel_meta")"
    pkg="$(ls "$cache/kernel" 2>/dev/null | grep "^linux-image-${series:-6.1}" | sort -V | tail -n1)"
    [ -n "$pkg" ] || die "apt-cache knows no $kernel_meta and nothing is cached"
  fi
  fetch_kernel "$pkg" || die "could not download $pkg"
  echo "$pkg" >"$cache/kernel/.current.$$"
) 9>"$cache/.lock"
kpkg="$(cat "$cache/kernel/.current.$$")"
rm -f "$cache/kernel/.current.$$"
kdir="$cache/kernel/$kpkg"
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$kdir/config" || die "$kpkg has no CONFIG_DEBUG_INFO_BTF: the sensor needs /sys/kernel/btf/vmlinux"
log "kernel: $kpkg"
# What the guest's probe must see there (sensor/src/probe.rs asserts it), from the config.
expect=btf,tracefs
grep -q '^CONFIG_KPROBE_EVENTS=y' "$kdir/config" && expect="$expect,kprobes"
if grep -q '^CONFIG_BPF_LSM=y' "$kdir/config" && grep -q '^CONFIG_LSM=".*\bbpf\b' "$kdir/config"; then
  expect="$expect,bpf_lsm"
fi
# fentry: BTF (checked above) and ftrace direct calls (the policy tests check it loads).
if grep -q '^CONFIG_FUNCTION_TRACER=y' "$kdir/config" && grep -q '^CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y' "$kdir/config"; then
  expect="$expect,fentry"
fi
}

# --- 4. initramfs ------------------------------------------------------------------------
root="$work/root"
rm -rf "$root" && mkdir -p "$root"
# The host's top-level layout (merged /usr: /bin -> usr/bin, ...), so paths the tests
# canonicalize on the host canonicalize the same way in the guest.
for d in bin sbin lib lib64 lib32 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"; fi
done
# copy PATH: the file, and every symlink on the way to it, at the same place in $root.
copy() {
  local p="$1" dir real link
  for _ in 1 2 3 4 5 6 7 8; do
    dir="$(cd "$(dirname "$p")" && pwd -P)"
    real="$dir/$(basename "$p")"
    mkdir -p "$root$dir"
    if [ -L "$real" ]; then
      link="$(readlink "$real")"
      ln -sfn "$link" "$root$real"
      case "$link" in /*) p="$link" ;; *) p="$dir/$link" ;; esac
    else
      [ -e "$root$real" ] || cp -p "$real" "$root$real"
      return 0
    fi
  done
  die "symlink loop at $1"
}
# copy_exe PATH [DEST]: an executable and the shared libraries it loads.
copy_exe() {
  local exe="$1" lib
  if [ -n "${2:-}" ]; then
    mkdir -p "$(dirname "$root$2")"
    objcopy --strip-debug "$exe" "$root$2"
  else
    copy "$exe"
  fi
  for lib in $(ldd "$exe" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}'); do
    copy "$lib"
  done
}
for t in /bin/sh /bin/dash /bin/bash /bin/echo /bin/true /bin/false /bin/cat /bin/sleep /bin/ls /bin/id \
  /usr/bin/unshare /usr/bin/nsenter /usr/bin/env; do
  copy_exe "$(command -v "$t")"
  [ "$t" = "$(command -v "$t")" ] || copy "$t"
done
copy_exe /bin/busybox /vm/busybox
# /bin/true is what the exec-accounting tests run thousands of times: under TCG a
# dynamically linked exec costs ~30 ms (ld.so, libc, page faults), a static one ~5 ms.
# busybox-static, as a regular file named true, is a program /bin/true that exits 0.
rm -f "$root/usr/bin/true"
cp /bin/busybox "$root/usr/bin/true"
mkdir -p "$root/vm/bin"
for a in mount umount poweroff mkdir hostname uname ls cat echo sync sleep grep head tr date cut; do
  ln -s ../busybox "$root/vm/bin/$a"
done
# The test binaries, where cargo put them (they find nothing relative to themselves),
# and the repo files they read (policy.rs opens CARGO_MANIFEST_DIR/../config/policies).
: >"$root/vm/tests"
while read -r name exe; do
  copy_exe "$exe" "$exe"
  echo "$name $exe" >>"$root/vm/tests"
done <<<"$sensor_tests"
if [ -n "$nightjar_bin" ]; then copy_exe "$nightjar_bin" /usr/local/bin/nightjar; fi
mkdir -p "$root$repo/sensor" "$root$repo/config" "$root$repo/tests/corpus"
cp -r "$repo/config/policies" "$root$repo/config/"
cp -r "$repo/tests/corpus/policies" "$root$repo/tests/corpus/"
mkdir -p "$root"/{proc,sys,dev,tmp,run,root,etc,var/log}
chmod 1777 "$root/tmp"
echo nightjar-vm >"$root/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
chmod 0640 "$root/etc/shadow"
cat >"$root/init" <<EOF
#!/vm/busybox sh
echo
export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/vm/bin HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
export NIGHTJAR_VM=1 NIGHTJAR_TEST_EXEC_SCALE=$exec_scale
# The kernel's own nls_utf8 module, which the corpus's do_init_module case loads.
[ -f /vm/modules/nls_utf8.ko ] && export NIGHTJAR_TEST_MODULE=/vm/modules/nls_utf8.ko
mount -t proc proc /proc
# What this kernel's config promises (the runner passes it on the command line).
skip=""
for w in \$(cat /proc/cmdline); do
  case "\$w" in
    nightjar.expect=*) export NIGHTJAR_EXPECT_KERNEL="\${w#nightjar.expect=}" ;;
    nightjar.skip=*) skip="\${w#nightjar.skip=}" ;;
  esac
done
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# No tmpfs over /tmp or /run: the initramfs root is already in memory and writable, and
# a checkout under /tmp (a clean clone there) has its test binaries at their host paths.
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname nightjar-vm
echo "nightjar-vm: kernel \$(uname -r); lsm \$(cat /sys/kernel/security/lsm); btf \$(ls /sys/kernel/btf/vmlinux 2>&1); up \$(cut -d' ' -f1 /proc/uptime 2>/dev/null || cat /proc/uptime)s"
if [ -x /usr/local/bin/nightjar ]; then
  echo "nightjar-vm: nightjar status"
  /usr/local/bin/nightjar status 2>&1 | grep -v '^agent:'
fi
while read -r name exe; do
  case ",\$skip," in *",\$name,"*) echo "nightjar-vm: skip \$name"; continue ;; esac
  echo "nightjar-vm: run \$name"
  (cd $repo/sensor && "\$exe" --test-threads=1 ${NIGHTJAR_VM_TEST_ARGS:-})
  echo "nightjar-vm: exit \$name \$?"
done </vm/tests
echo "nightjar-vm: done up \$(cat /proc/uptime)"
sync
poweroff -f
EOF
chmod 0755 "$root/init"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet >"$work/initramfs.cpio")
log "initramfs: $(du -m "$work/initramfs.cpio" | cut -f1) MiB, $(wc -l <"$root/vm/tests") test binaries; packed in $(($(date +%s) - t_start)) s since start"

# --- 5. boot -----------------------------------------------------------------------------
# boot_kernel: boots $kdir with the initramfs (in the background, one core each), its
# console in $work/console-$kpkg.log (streamed here, each line tagged with the kernel) and
# QEMU's status in $work/rc-$kpkg.
boot_kernel() {
local console="$work/console-$kpkg.log" tag="${kpkg#linux-image-}"
# This kernel's nls_utf8 module (for the corpus's do_init_module case), decompressed, in a
# second cpio archive after the shared one (the kernel unpacks concatenated archives).
local initrd="$work/initramfs.cpio" ko extra
ko="$(find "$kdir/modules" -name 'nls_utf8.ko*' 2>/dev/null | head -n1)"
if [ -n "$ko" ]; then
  extra="$work/extra-$kpkg"
  rm -rf "$extra" && mkdir -p "$extra/vm/modules"
  case "$ko" in
    *.xz) xz -dc "$ko" ;;
    *.zst) zstd -dc "$ko" ;;
    *) cat "$ko" ;;
  esac >"$extra/vm/modules/nls_utf8.ko"
  initrd="$work/initramfs-$kpkg.cpio"
  (cd "$extra" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) | cat "$work/initramfs.cpio" - >"$initrd"
else
  log "$kpkg: no nls_utf8 module in its package: the do_init_module corpus case will fail"
fi
log "booting $kpkg under QEMU TCG (-smp $smp -m $mem), deadline ${deadline}s"
rm -f "$work/rc-$kpkg"
(
  set +e
  timeout -k 5 "$deadline" qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem" \
    -nographic -nic none -no-reboot -kernel "$kdir/vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 quiet panic=-1 mitigations=off nightjar.expect=$expect nightjar.skip=$skip" </dev/null 2>&1 |
    tr -d '\r' | tee "$console" | sed -u "s/^/[$tag] /"
  echo "${PIPESTATUS[0]} $(date +%s)" >"$work/rc-$kpkg"
) &
}

# judge_kernel KPKG EXPECT T_BOOT: the verdict on a finished run; adds to passed/failed/fail.
judge_kernel() {
local kpkg="$1" expect="$2" t_boot="$3" console="$work/console-$1.log" qemu_rc t_end name rc summary p f
local fail_before="$fail"
fail=0
read -r qemu_rc t_end <"$work/rc-$kpkg" || { qemu_rc=none t_end=$(date +%s); }
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
  log "$kpkg: the VM did not power off within ${deadline}s"
  fail=1
elif [ "$qemu_rc" != 0 ]; then
  log "$kpkg: qemu exited with $qemu_rc"
  fail=1
fi
grep -q '^nightjar-vm: done' "$console" || { log "$kpkg: the guest did not finish its run"; fail=1; }
if [ -z "${NIGHTJAR_VM_TEST_ARGS:-}" ] && ! grep -q '^test probe::tests::probe_sees_what_this_kernel_offers \.\.\. ok$' "$console"; then
  log "$kpkg: the guest did not pass the kernel-features test (expected: $expect)"
  fail=1
fi
while read -r name _; do
  if grep -q "^nightjar-vm: skip $name\$" "$console"; then
    log "$kpkg: $name not run here (NIGHTJAR_VM_SKIP_6_12)"
    continue
  fi
  rc="$(sed -n "s/^nightjar-vm: exit $name \([0-9]*\)\$/\1/p" "$console" | tail -n1)"
  summary="$(awk -v n="$name" '$0 == "nightjar-vm: run " n {on=1; next} /^nightjar-vm: exit / {on=0} on && /^test result: /' "$console" | tail -n1)"
  if [ -z "$summary" ]; then
    log "$kpkg: $name: no test summary in the guest's output"
    fail=1
  else
    printf '[vm-test] %s guest %s: %s\n' "$kpkg" "$name" "$summary"
    p="$(sed -n 's/.* \([0-9]*\) passed.*/\1/p' <<<"$summary")"
    f="$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$summary")"
    passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0}))
  fi
  if [ "$rc" != 0 ]; then
    log "$kpkg: $name: exit status ${rc:-none}"
    fail=1
  fi
done <"$root/vm/tests"
log "guest $(sed -n 's/^nightjar-vm: \(kernel .*\)/\1/p' "$console" | head -n1); probe expected $expect"
log "VM run ${kpkg}: $((t_end - t_boot)) s in QEMU, $((t_end - t_start)) s in all"
cp "$console" "$work/console.log"
[ "$fail" = 0 ] || log "FAIL on $kpkg: see $console"
[ "$fail_before" = 0 ] || fail=1
}

# Every kernel is prepared (downloaded once) first, then all boot at once.
fail=0 passed=0 failed=0
runs=()
for meta in $kernel_metas; do
  prepare_kernel "$meta"
  skip=""
  case "$kpkg" in linux-image-6.12*) skip="${NIGHTJAR_VM_SKIP_6_12-policy,process}" ;; esac
  boot_kernel
  runs+=("$kpkg $expect $(date +%s)")
done
wait
for r in "${runs[@]}"; do
  # shellcheck disable=SC2086
  judge_kernel $r
done
echo "vm-test: $passed passed, $failed failed"
[ "$fail" = 0 ] || die "a kernel's run failed (target/vm/console-*.log)"
