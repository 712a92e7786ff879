# shellcheck shell=bash
# lib.sh — detection helpers shared by check.sh and apply.sh (sourced, never
# run). Both scripts must agree on *which* disk backs the data dir and *which*
# IRQs belong to it, otherwise apply.sh would tune a different device than
# the one check.sh reported.
#
# Only coreutils, util-linux (findmnt) and procps are used, because these
# scripts must run on minimal bare-metal installs before anything else is.
#
# Test hooks (used by selftest.sh, harmless in production): WEIR_SYSFS,
# WEIR_PROCFS and WEIR_ETC relocate /sys, /proc and /etc to a fake tree, and
# WEIR_DATA_DISKS (comma list) and WEIR_NIC override disk/NIC detection, so
# apply.sh can be exercised for real, twice, without root and without
# touching the machine.

# shellcheck disable=SC2034 # SYS/PROC/ETC are used by the sourcing scripts
SYS=${WEIR_SYSFS:-/sys}
PROC=${WEIR_PROCFS:-/proc}
ETC=${WEIR_ETC:-/etc}

# Print a file's content; fail quietly if it is missing or unreadable (a VM or
# container simply lacks many of these knobs, which is not an error).
read_knob() {
    [[ -r $1 ]] || return 1
    local v
    v=$(cat "$1" 2>/dev/null) || return 1
    printf '%s' "$v"
}

# "always [madvise] never" -> "madvise"; a value without brackets (a knob
# with a single choice) is returned as is.
bracketed() {
    if [[ $1 == *\[*\]* ]]; then
        sed -n 's/.*\[\([^]]*\)\].*/\1/p' <<<"$1"
    else
        printf '%s' "$1"
    fi
}

# sysctl name -> /proc/sys path (fs.aio-max-nr -> $PROC/sys/fs/aio-max-nr)
sysctl_path() {
    printf '%s/sys/%s' "$PROC" "${1//.//}"
}

read_sysctl() {
    read_knob "$(sysctl_path "$1")"
}

# Expand a kernel CPU list ("0-3,8,10-11") into one CPU number per line.
expand_cpulist() {
    local part a b
    local IFS=,
    for part in $1; do
        [[ -z $part ]] && continue
        if [[ $part == *-* ]]; then
            a=${part%-*}
            b=${part#*-}
            seq "$a" "$b"
        else
            echo "$part"
        fi
    done
}

online_cpus() {
    local l
    if l=$(read_knob "$SYS/devices/system/cpu/online"); then
        expand_cpulist "$l"
    else
        seq 0 $(($(nproc) - 1))
    fi
}

# Nearest existing directory at or above $1: the data dir may not exist yet
# on a fresh host, and its future parent is on the same filesystem.
existing_ancestor() {
    local d=$1
    while [[ ! -e $d && $d != / && $d != . ]]; do
        d=$(dirname "$d")
    done
    printf '%s' "$d"
}

# Leaf disks (not partitions, not dm/md) under a /sys/devices block node:
# the queue knobs that matter (scheduler, nr_requests) live on those.
leaf_disks() {
    local node=$1 s found=0
    if [[ -d $node/slaves ]]; then
        for s in "$node"/slaves/*; do
            [[ -e $s ]] || continue
            found=1
            leaf_disks "$(readlink -f "$s")"
        done
    fi
    ((found)) && return 0
    if [[ -e $node/partition ]]; then
        basename "$(dirname "$node")"
    else
        basename "$node"
    fi
}

# Disk names (e.g. "nvme0n1", "vda") backing directory $1, one per line;
# nothing for tmpfs/overlay/network filesystems.
data_disks() {
    if [[ -n ${WEIR_DATA_DISKS:-} ]]; then
        tr ',' '\n' <<<"$WEIR_DATA_DISKS"
        return 0
    fi
    local dir mm src t node
    dir=$(existing_ancestor "$1")
    mm=$(findmnt -n -o MAJ:MIN -T "$dir" 2>/dev/null | head -n1 | tr -d ' ')
    if [[ -z $mm || $mm == 0:* ]]; then
        # btrfs reports an anonymous 0:N device: fall back to the source node.
        src=$(findmnt -n -o SOURCE -T "$dir" 2>/dev/null | head -n1)
        src=${src%%\[*}
        if [[ -b $src ]]; then
            t=$(stat -L -c '%t:%T' "$src" 2>/dev/null) || t=
            [[ -n $t ]] && mm=$((16#${t%:*})):$((16#${t#*:}))
        fi
    fi
    [[ -z $mm || $mm == 0:* ]] && return 0
    node=$(readlink -f "$SYS/dev/block/$mm" 2>/dev/null) || return 0
    [[ -d $node ]] || return 0
    leaf_disks "$node" | sort -u
}

# The NIC clients reach the broker through: the default-route interface,
# else the first interface backed by a real device.
data_nic() {
    if [[ -n ${WEIR_NIC:-} ]]; then
        echo "$WEIR_NIC"
        return 0
    fi
    local n
    n=$(awk '$2 == "00000000" { print $1; exit }' "$PROC/net/route" 2>/dev/null)
    if [[ -n $n ]]; then
        echo "$n"
        return 0
    fi
    for n in "$SYS"/class/net/*; do
        [[ -e $n/device ]] && { basename "$n"; return 0; }
    done
    return 1
}

# IRQ numbers of the PCI function behind a sysfs device path: walk up from
# the block/net node to the first ancestor with msi_irqs/ (MSI-X: one IRQ per
# queue) or a legacy "irq" file.
device_irqs() {
    local d
    d=$(readlink -f "$1" 2>/dev/null) || return 0
    while [[ -n $d && $d != / && $d != "$SYS" && $d != "$SYS/devices" ]]; do
        if [[ -d $d/msi_irqs ]]; then
            local f
            for f in "$d"/msi_irqs/*; do
                [[ -e $f ]] && basename "$f"
            done | sort -n
            return 0
        fi
        if [[ -r $d/irq && $d == */pci* ]]; then
            local i
            i=$(cat "$d/irq")
            [[ $i != 0 ]] && echo "$i"
            return 0
        fi
        d=$(dirname "$d")
    done
    return 0
}

disk_irqs() { device_irqs "$SYS/block/$1"; }
nic_irqs() { device_irqs "$SYS/class/net/$1/device"; }

# CPU list an IRQ is delivered to (effective if the kernel exposes it).
irq_affinity() {
    read_knob "$PROC/irq/$1/effective_affinity_list" ||
        read_knob "$PROC/irq/$1/smp_affinity_list"
}

# Interrupt count of IRQ $1 on each CPU, space separated, from /proc/interrupts.
irq_counts() {
    awk -v irq="$1:" '$1 == irq { out = ""; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) out = out (out == "" ? "" : " ") $i; print out; exit }' \
        "$PROC/interrupts" 2>/dev/null
}

is_root() { [[ $(id -u) -eq 0 ]]; }
