#!/usr/bin/env bash
# selftest.sh — CI test for the tuning scripts; needs no root and changes
# nothing on the machine. It checks that:
#   * every script parses (bash -n);
#   * check.sh runs on this host (default and a missing --data-dir), prints
#     every expected NAME line, and --json is valid JSON (python3 -m
#     json.tool) with the same names; --strict exits 1 exactly when a WARN
#     is printed;
#   * check.sh survives a "VM" where almost no knob exists (fake /sys, /proc);
#   * apply.sh --dry-run runs and rejects unknown steps;
#   * apply.sh really applies every step to a fake /sys, /proc and /etc
#     (WEIR_SYSFS/WEIR_PROCFS/WEIR_ETC test hooks), producing the expected
#     values and files, and a second run changes nothing (idempotent).
# Ends with "N passed, N failed"; exit 1 if anything failed.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/weir-tuning-selftest.XXXXXX")
work=$(readlink -f "$work")
trap 'rm -rf "$work"' EXIT

pass=0 failn=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; failn=$((failn + 1)); }
check() { # check "description" command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; return 1; fi
}

EXPECTED=(
    kernel.version kernel.io_uring_disabled RLIMIT_MEMLOCK RLIMIT_NOFILE
    cpu.governor cpu.idle cpu.pstate thp.enabled thp.defrag
    disk.fs disk.device disk.scheduler disk.rotational disk.nr_requests
    disk.block_size disk.write_cache disk.o_direct
    fs.aio-max-nr fs.aio-nr vm.swappiness vm.max_map_count
    net.core.somaxconn net.ipv4.tcp_max_syn_backlog
    irq.disk irq.nic numa.nodes clocksource
)

# Every expected NAME appears exactly once as a well-formed line.
all_names_present() {
    local out=$1 n missing=0
    for n in "${EXPECTED[@]}"; do
        if [[ $(grep -cE "^${n//./\\.} +current=.*  recommended=.*  \[(ok|WARN|info)\]  " <<<"$out") != 1 ]]; then
            echo "   missing or malformed: $n" >&2
            missing=1
        fi
    done
    ((!missing))
}

json_has_all_names() {
    local js=$1 n
    for n in "${EXPECTED[@]}"; do
        grep -qF "\"name\": \"$n\"" <<<"$js" || { echo "   not in JSON: $n" >&2; return 1; }
    done
}

# ---------------------------------------------------------------- syntax
for f in "$here"/check.sh "$here"/apply.sh "$here"/lib.sh "$here"/selftest.sh "$here"/profiles/*.env; do
    check "bash -n ${f#"$here"/}" bash -n "$f"
done

# ---------------------------------------------------------------- check.sh on this host
out=$("$here/check.sh" 2>&1)
check "check.sh exits 0" test $? -eq 0
check "check.sh prints every NAME line" all_names_present "$out"

mkdir -p "$work/data"
out=$("$here/check.sh" --data-dir "$work/data" 2>&1)
check "check.sh --data-dir (existing) exits 0" test $? -eq 0
check "check.sh --data-dir prints every NAME line" all_names_present "$out"
check "O_DIRECT probe leaves no file behind" test -z "$(ls -A "$work/data")"

out=$("$here/check.sh" --data-dir "$work/does/not/exist" 2>&1)
check "check.sh --data-dir (missing) exits 0" test $? -eq 0
check "missing data dir is reported, not fatal" grep -q "missing; checked" <<<"$out"

js=$("$here/check.sh" --json --data-dir "$work/data")
check "check.sh --json exits 0" test $? -eq 0
if command -v python3 >/dev/null; then
    check "--json is valid JSON (python3 -m json.tool)" python3 -m json.tool <<<"$js" >/dev/null
else
    bad "--json validity: python3 not found"
fi
check "--json lists every NAME" json_has_all_names "$js"

text=$("$here/check.sh" --data-dir "$work/data")
"$here/check.sh" --strict --data-dir "$work/data" >/dev/null
rc=$?
if grep -q '\[WARN\]' <<<"$text"; then
    check "--strict exits 1 when a WARN is printed" test $rc -eq 1
else
    check "--strict exits 0 when nothing is WARN" test $rc -eq 0
fi
"$here/check.sh" --no-such-flag >/dev/null 2>&1
check "check.sh rejects unknown flags (exit 2)" test $? -eq 2

# ---------------------------------------------------------------- check.sh in a bare "VM"
vm=$work/vm
mkdir -p "$vm/sys/devices/system/cpu" "$vm/proc/sys"
echo 0-1 >"$vm/sys/devices/system/cpu/online"
out=$(WEIR_SYSFS=$vm/sys WEIR_PROCFS=$vm/proc "$here/check.sh" --data-dir "$work/data" 2>&1)
check "check.sh on a knob-less VM exits 0" test $? -eq 0
check "check.sh on a knob-less VM prints every NAME line" all_names_present "$out"
check "missing cpufreq says 'not exposed (VM)'" grep -q '^cpu.governor .*current=not exposed (VM)' <<<"$out"
js=$(WEIR_SYSFS=$vm/sys WEIR_PROCFS=$vm/proc "$here/check.sh" --json --data-dir "$work/data")
if command -v python3 >/dev/null; then
    check "knob-less VM --json is valid JSON" python3 -m json.tool <<<"$js" >/dev/null
fi

# ---------------------------------------------------------------- apply.sh --dry-run
out=$("$here/apply.sh" --dry-run --data-dir "$work/data" 2>&1)
check "apply.sh --dry-run exits 0" test $? -eq 0
check "apply.sh --dry-run announces itself" grep -q 'DRY RUN' <<<"$out"
for s in governor thp scheduler irq aio memlock sysctl idle; do
    check "apply.sh --dry-run runs step $s" grep -q "^== $s\$" <<<"$out"
done
out=$("$here/apply.sh" --dry-run --only aio,sysctl --profile latency --data-dir "$work/data" 2>&1)
check "apply.sh --only/--profile select steps" test "$(grep -c '^== ' <<<"$out")" -eq 2
"$here/apply.sh" --dry-run --only bogus >/dev/null 2>&1
check "apply.sh rejects unknown steps (exit 2)" test $? -eq 2

# ---------------------------------------------------------------- apply.sh on a fake host
F=$work/fake
S=$F/sys P=$F/proc E=$F/etc
mkdir -p "$S/devices/system/cpu" "$S/kernel/mm/transparent_hugepage" "$P/sys/fs" "$P/sys/vm" \
    "$P/sys/net/core" "$P/sys/net/ipv4" "$E/security/limits.d" "$E/tmpfiles.d" "$E/sysctl.d" "$E/udev"
echo 0-1 >"$S/devices/system/cpu/online"
for c in 0 1; do
    mkdir -p "$S/devices/system/cpu/cpu$c/cpufreq"
    echo powersave >"$S/devices/system/cpu/cpu$c/cpufreq/scaling_governor"
    echo "performance powersave" >"$S/devices/system/cpu/cpu$c/cpufreq/scaling_available_governors"
    for st in 0:POLL:0 1:C6:133; do
        IFS=: read -r i name lat <<<"$st"
        mkdir -p "$S/devices/system/cpu/cpu$c/cpuidle/state$i"
        echo "$name" >"$S/devices/system/cpu/cpu$c/cpuidle/state$i/name"
        echo "$lat" >"$S/devices/system/cpu/cpu$c/cpuidle/state$i/latency"
        echo 0 >"$S/devices/system/cpu/cpu$c/cpuidle/state$i/disable"
    done
done
echo "[always] madvise never" >"$S/kernel/mm/transparent_hugepage/enabled"
echo "[always] defer defer+madvise madvise never" >"$S/kernel/mm/transparent_hugepage/defrag"
# A SATA-like disk "sdz" behind PCI function 09.0 (IRQs 90 config, 91 queue)
# and a NIC "ethz" behind 0a.0 (IRQs 92, 93).
pci=$S/devices/pci0000:00
mkdir -p "$pci/0000:00:09.0/msi_irqs" "$pci/0000:00:09.0/host0/block/sdz/queue" \
    "$pci/0000:00:0a.0/msi_irqs" "$pci/0000:00:0a.0/net/ethz" "$S/block" "$S/class/net"
touch "$pci/0000:00:09.0/msi_irqs/90" "$pci/0000:00:09.0/msi_irqs/91" \
    "$pci/0000:00:0a.0/msi_irqs/92" "$pci/0000:00:0a.0/msi_irqs/93"
echo "[none] mq-deadline bfq" >"$pci/0000:00:09.0/host0/block/sdz/queue/scheduler"
ln -s "$pci/0000:00:09.0/host0/block/sdz" "$S/block/sdz"
ln -s "$pci/0000:00:0a.0/net/ethz" "$S/class/net/ethz"
ln -s "$pci/0000:00:0a.0" "$pci/0000:00:0a.0/net/ethz/device"
cat >"$P/interrupts" <<'EOF'
           CPU0       CPU1
 90:          0          5   PCI-MSIX-0000:00:09.0   0-edge      sdz-config
 91:          0       9000   PCI-MSIX-0000:00:09.0   1-edge      sdz-req.0
 92:        100       3000   PCI-MSIX-0000:00:0a.0   1-edge      ethz-input.0
 93:         50         40   PCI-MSIX-0000:00:0a.0   2-edge      ethz-output.0
EOF
for i in 90 91 92 93; do
    mkdir -p "$P/irq/$i"
    echo 0-1 >"$P/irq/$i/smp_affinity_list"
done
echo 65536 >"$P/sys/fs/aio-max-nr"
echo 60 >"$P/sys/vm/swappiness"
echo 65530 >"$P/sys/vm/max_map_count"
echo 8192 >"$P/sys/net/core/somaxconn"
echo 512 >"$P/sys/net/ipv4/tcp_max_syn_backlog"

fake_apply() {
    WEIR_SYSFS=$S WEIR_PROCFS=$P WEIR_ETC=$E WEIR_DATA_DISKS=sdz WEIR_NIC=ethz \
        "$here/apply.sh" --profile latency --user weirtest --data-dir "$work/data" "$@"
}
out=$(fake_apply --dry-run 2>&1)
check "fake host: --dry-run exits 0" test $? -eq 0
check "fake host: --dry-run changes nothing" grep -qx powersave "$S/devices/system/cpu/cpu0/cpufreq/scaling_governor"
check "fake host: --dry-run writes no files" test -z "$(find "$E" -type f)"

out1=$(fake_apply 2>&1)
check "fake host: apply exits 0" test $? -eq 0 || echo "$out1"
eq() { # eq FILE EXPECTED
    local got
    got=$(cat "$1" 2>/dev/null)
    [[ $got == "$2" ]] || { echo "   $1: got '$got', want '$2'" >&2; return 1; }
}
check "governor -> performance (cpu0)" eq "$S/devices/system/cpu/cpu0/cpufreq/scaling_governor" performance
check "governor -> performance (cpu1)" eq "$S/devices/system/cpu/cpu1/cpufreq/scaling_governor" performance
check "thp enabled -> madvise" eq "$S/kernel/mm/transparent_hugepage/enabled" madvise
check "thp defrag -> never" eq "$S/kernel/mm/transparent_hugepage/defrag" never
check "scheduler (SATA, auto) -> mq-deadline" eq "$S/block/sdz/queue/scheduler" mq-deadline
check "busiest disk IRQ 91 -> cpu0" eq "$P/irq/91/smp_affinity_list" 0
check "busiest NIC IRQ 92 -> cpu1" eq "$P/irq/92/smp_affinity_list" 1
check "NIC IRQ 93 -> cpu0" eq "$P/irq/93/smp_affinity_list" 0
check "quiet config IRQ 90 left alone" eq "$P/irq/90/smp_affinity_list" 0-1
check "fs.aio-max-nr raised" eq "$P/sys/fs/aio-max-nr" 1048576
check "vm.swappiness set" eq "$P/sys/vm/swappiness" 1
check "vm.max_map_count raised" eq "$P/sys/vm/max_map_count" 262144
check "net.core.somaxconn never lowered" eq "$P/sys/net/core/somaxconn" 8192
check "tcp_max_syn_backlog raised" eq "$P/sys/net/ipv4/tcp_max_syn_backlog" 8192
check "C6 (133 us) disabled by latency profile" eq "$S/devices/system/cpu/cpu1/cpuidle/state1/disable" 1
check "POLL state left enabled" eq "$S/devices/system/cpu/cpu1/cpuidle/state0/disable" 0
check "sysctl.d has aio-max-nr" grep -qx 'fs.aio-max-nr = 1048576' "$E/sysctl.d/60-weir.conf"
check "sysctl.d keeps the higher somaxconn" grep -qx 'net.core.somaxconn = 8192' "$E/sysctl.d/60-weir.conf"
check "tmpfiles.d persists THP defrag" grep -qx 'w /sys/kernel/mm/transparent_hugepage/defrag - - - - never' "$E/tmpfiles.d/60-weir.conf"
check "tmpfiles.d persists governor" grep -q 'scaling_governor - - - - performance$' "$E/tmpfiles.d/60-weir.conf"
check "udev rule persists scheduler" grep -q 'KERNEL=="sdz", ATTR{queue/scheduler}="mq-deadline"' "$E/udev/rules.d/60-weir-scheduler.rules"
check "limits.d sets memlock for the user" grep -qx 'weirtest hard memlock unlimited' "$E/security/limits.d/60-weir.conf"
check "systemd drop-in printed" grep -q 'LimitMEMLOCK=infinity' <<<"$out1"

snapshot() { (cd "$F" && find . -type f -print0 | sort -z | xargs -0 md5sum); }
before=$(snapshot)
out2=$(fake_apply 2>&1)
check "fake host: second apply exits 0" test $? -eq 0
check "fake host: second apply has nothing to do" test -z "$(grep -E '^  (\+|! failed)' <<<"$out2")" || echo "$out2"
check "fake host: second apply leaves every file identical" test "$before" == "$(snapshot)"
check "sysctl.d lists each key once" test "$(grep -c '^fs.aio-max-nr' "$E/sysctl.d/60-weir.conf")" -eq 1

# check.sh agrees with what apply.sh did on the fake host.
out=$(WEIR_SYSFS=$S WEIR_PROCFS=$P WEIR_DATA_DISKS=sdz WEIR_NIC=ethz "$here/check.sh" --data-dir "$work/data" 2>&1)
check "check.sh after apply: governor ok" grep -q '^cpu.governor .*\[ok\]' <<<"$out"
check "check.sh after apply: thp.defrag ok" grep -q '^thp.defrag .*\[ok\]' <<<"$out"
check "check.sh after apply: scheduler ok" grep -q '^disk.scheduler .*\[ok\]' <<<"$out"
check "check.sh after apply: fs.aio-max-nr ok" grep -q '^fs.aio-max-nr .*\[ok\]' <<<"$out"
check "check.sh after apply: irq.nic ok" grep -q '^irq.nic .*\[ok\]' <<<"$out"

echo "$pass passed, $failn failed"
((failn == 0))
