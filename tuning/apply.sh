#!/usr/bin/env bash
# apply.sh — apply the host settings check.sh recommends for Weir, each
# step idempotent (a value already in place is left alone and reported as
# "=") and individually selectable, so it is safe to re-run from
# provisioning or a boot-time unit.
#
# Usage: tuning/apply.sh [--dry-run] [--only STEPS] [--profile NAME|FILE]
#                        [--data-dir DIR] [--user NAME]
#   --dry-run        print what would be done (commands and file contents),
#                    change nothing; works without root
#   --only STEPS     comma list of: governor,thp,scheduler,irq,aio,memlock,
#                    sysctl,idle (default: all; idle only acts when the
#                    profile sets IDLE_MAX_LATENCY_US)
#   --profile P      tuning/profiles/P.env or a file path; values below
#                    are the built-in defaults (= bare-metal-nvme)
#   --data-dir DIR   broker data dir; its disk gets the scheduler and IRQ
#                    steps (default ./data)
#   --user NAME      account Weir runs as, for limits.d (default weir)
#
# Needs root (except --dry-run). Knobs a VM or container does not expose
# are skipped with a message, never an error. Exit 0 = everything applied,
# already in place or skipped; 1 = some write failed; 2 = bad usage.
# Persistent copies: /etc/sysctl.d/60-weir.conf (sysctls),
# /etc/tmpfiles.d/60-weir.conf (governor, THP, idle states, via
# systemd-tmpfiles at boot), /etc/udev/rules.d/60-weir-scheduler.rules
# (scheduler), /etc/security/limits.d/60-weir.conf (PAM sessions); the
# systemd drop-in for the service's own limits is printed, not installed.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

ALL_STEPS=governor,thp,scheduler,irq,aio,memlock,sysctl,idle

# Built-in defaults; a profile overrides any of them.
GOVERNOR=performance
THP_ENABLED=madvise
THP_DEFRAG=never
SCHEDULER=auto # auto: none for NVMe and virtio/xen, mq-deadline otherwise
AIO_MAX_NR=1048576
MEMLOCK=unlimited
NOFILE=1048576
SWAPPINESS=1
MAX_MAP_COUNT=262144
SOMAXCONN=4096
TCP_MAX_SYN_BACKLOG=8192
IRQ_CPUS=all
IDLE_MAX_LATENCY_US=
WEIR_USER=weir

DRY=0
ONLY=$ALL_STEPS
DATA_DIR=./data
PROFILE=
USER_OVERRIDE=

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
    --dry-run) DRY=1; shift ;;
    --only) ONLY=${2:?--only needs a list}; shift 2 ;;
    --only=*) ONLY=${1#*=}; shift ;;
    --profile) PROFILE=${2:?--profile needs a name or file}; shift 2 ;;
    --profile=*) PROFILE=${1#*=}; shift ;;
    --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift 2 ;;
    --data-dir=*) DATA_DIR=${1#*=}; shift ;;
    --user) USER_OVERRIDE=${2:?--user needs a name}; shift 2 ;;
    --user=*) USER_OVERRIDE=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "apply.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -n $PROFILE ]]; then
    pf=$PROFILE
    [[ $pf != */* && -f $here/profiles/$pf.env ]] && pf=$here/profiles/$pf.env
    [[ $pf != */* && -f $here/profiles/$pf ]] && pf=$here/profiles/$pf
    if [[ ! -f $pf ]]; then
        echo "apply.sh: profile not found: $PROFILE" >&2
        exit 2
    fi
    # shellcheck source=/dev/null
    source "$pf"
    echo "# profile: $pf"
fi
[[ -n $USER_OVERRIDE ]] && WEIR_USER=$USER_OVERRIDE

IFS=, read -r -a steps <<<"$ONLY"
for s in "${steps[@]}"; do
    if [[ ,$ALL_STEPS, != *,$s,* ]]; then
        echo "apply.sh: unknown step '$s' (known: $ALL_STEPS)" >&2
        exit 2
    fi
done
want() { [[ ,$ONLY, == *,$1,* ]]; }

# Test mode (fake /sys, /proc, /etc from selftest.sh) needs no root.
TEST_MODE=0
[[ -n ${WEIR_SYSFS:-}${WEIR_PROCFS:-}${WEIR_ETC:-} ]] && TEST_MODE=1
if ((!DRY && !TEST_MODE)) && ! is_root; then
    echo "apply.sh: must run as root (or use --dry-run to see what it would do)" >&2
    exit 1
fi

FAILED=0
say() { printf '  %s\n' "$*"; }
skip() { say "- skip: $*"; }
same() { say "= $*"; }
fail() { say "! failed: $*"; FAILED=$((FAILED + 1)); }

# Write VALUE into a sysfs/procfs knob unless it already holds it.
# $3 (optional) = how to read the current value: "bracket" for
# "a [b] c" style files.
set_knob() {
    local f=$1 v=$2 how=${3:-plain} cur
    if ! cur=$(read_knob "$f"); then
        skip "$f not exposed"
        return 0
    fi
    [[ $how == bracket && $cur == *\[* ]] && cur=$(bracketed "$cur")
    if [[ $cur == "$v" ]]; then
        same "$f already $v"
        return 0
    fi
    say "+ echo $v > $f    # was $cur"
    ((DRY)) && return 0
    if ! printf '%s\n' "$v" 2>/dev/null >"$f"; then
        fail "echo $v > $f (kernel refused the value)"
    fi
}

# Make FILE contain LINE, replacing any line whose field FIELD equals KEY,
# so each setting appears once however often apply.sh runs. New files get
# a header pointing back here.
persist_line() {
    local file=$1 field=$2 key=$3 line=$4 dir new
    dir=$(dirname "$file")
    if [[ -f $file ]] && grep -qxF -- "$line" "$file"; then
        same "$file already has: $line"
        return 0
    fi
    say "+ persist in $file: $line"
    ((DRY)) && return 0
    mkdir -p "$dir" || { fail "mkdir $dir"; return 0; }
    new=$(mktemp "$file.XXXXXX") || { fail "temp file next to $file"; return 0; }
    # shellcheck disable=SC2015 # any failure in the chain must clean up
    {
        if [[ -f $file ]]; then
            awk -v f="$field" -v k="$key" '$f != k' "$file"
        else
            echo "# Managed by Weir's tuning/apply.sh (see tuning/README.md); edit the profile, not this file."
        fi
        echo "$line"
    } >"$new" && chmod 644 "$new" && mv "$new" "$file" || { rm -f "$new"; fail "writing $file"; }
}

# sysctl: MODE "min" only raises (never lowers a value someone set higher
# for another workload), "exact" sets the value as given.
set_sysctl() {
    local key=$1 val=$2 mode=$3 path cur target
    path=$(sysctl_path "$key")
    if ! cur=$(read_knob "$path"); then
        skip "$key not exposed (container or missing module)"
        return 0
    fi
    target=$val
    if [[ $mode == min ]] && ((cur >= val)); then
        same "$key already $cur (>= $val)"
        target=$cur
    elif [[ $cur == "$val" ]]; then
        same "$key already $val"
    else
        say "+ sysctl -w $key=$val    # was $cur"
        if ((!DRY)); then
            if ((TEST_MODE)); then
                printf '%s\n' "$val" >"$path" || fail "writing $path"
            else
                sysctl -q -w "$key=$val" || fail "sysctl -w $key=$val"
            fi
        fi
    fi
    persist_line "$ETC/sysctl.d/60-weir.conf" 1 "$key" "$key = $target"
}

TMPFILES=$ETC/tmpfiles.d/60-weir.conf
# systemd-tmpfiles "w" lines re-apply sysfs values at every boot.
persist_sysfs() {
    local glob=$1 val=$2
    if [[ ! -d $ETC/tmpfiles.d && ! -d $ETC/systemd ]]; then
        skip "no systemd-tmpfiles: $glob=$val lasts until reboot"
        return 0
    fi
    persist_line "$TMPFILES" 2 "$glob" "w $glob - - - - $val"
}

# ---------------------------------------------------------------- steps
step_governor() {
    local f any=0 avail changed=0
    for f in "$SYS"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        [[ -e $f ]] || continue
        any=1
        avail=$(read_knob "$(dirname "$f")/scaling_available_governors") || avail=$GOVERNOR
        if [[ " $avail " != *" $GOVERNOR "* ]]; then
            skip "$f: $GOVERNOR not offered (have: $avail)"
            continue
        fi
        set_knob "$f" "$GOVERNOR"
        changed=1
    done
    if ((!any)); then
        skip "cpufreq not exposed (VM or container): the host controls frequency"
        return 0
    fi
    ((changed)) && persist_sysfs "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor" "$GOVERNOR"
}

step_thp() {
    local base="$SYS/kernel/mm/transparent_hugepage"
    if [[ ! -e $base/enabled ]]; then
        skip "transparent hugepages not built into this kernel"
        return 0
    fi
    set_knob "$base/enabled" "$THP_ENABLED" bracket
    set_knob "$base/defrag" "$THP_DEFRAG" bracket
    persist_sysfs /sys/kernel/mm/transparent_hugepage/enabled "$THP_ENABLED"
    persist_sysfs /sys/kernel/mm/transparent_hugepage/defrag "$THP_DEFRAG"
}

step_scheduler() {
    local disks d target avail
    mapfile -t disks < <(data_disks "$DATA_DIR")
    if ((${#disks[@]} == 0)); then
        skip "no block device behind $DATA_DIR (tmpfs/overlay/network fs)"
        return 0
    fi
    for d in "${disks[@]}"; do
        target=$SCHEDULER
        if [[ $target == auto ]]; then
            case $d in
            nvme* | vd* | xvd*) target=none ;;
            *) target=mq-deadline ;;
            esac
        fi
        if ! avail=$(read_knob "$SYS/block/$d/queue/scheduler"); then
            skip "$d has no queue/scheduler (not a blk-mq device)"
            continue
        fi
        if [[ " ${avail//[\[\]]/} " != *" $target "* ]]; then
            skip "$d: scheduler $target not available (have: $avail; modprobe $target?)"
            continue
        fi
        set_knob "$SYS/block/$d/queue/scheduler" "$target" bracket
        if [[ -d $ETC/udev || -d /run/udev ]]; then
            persist_line "$ETC/udev/rules.d/60-weir-scheduler.rules" 2 "KERNEL==\"$d\"," \
                "ACTION==\"add|change\", KERNEL==\"$d\", ATTR{queue/scheduler}=\"$target\""
        else
            skip "no udev: scheduler for $d lasts until reboot"
        fi
    done
}

# "IRQ COUNT" lines for the IRQs of one device that carry traffic
# (>= 1% of its busiest IRQ); all of them if none has fired yet.
busy_irqs() {
    local i c t max=0
    local -A total=()
    for i in "$@"; do
        t=0
        for c in $(irq_counts "$i"); do t=$((t + c)); done
        total[$i]=$t
        ((t > max)) && max=$t
    done
    for i in "$@"; do
        if ((max == 0 || (total[$i] > 0 && total[$i] * 100 >= max))); then
            echo "$i ${total[$i]}"
        fi
    done
}

step_irq() {
    local cpus=() irqs=() d nic i k=0 cpu cur
    if [[ $IRQ_CPUS == all ]]; then
        mapfile -t cpus < <(online_cpus)
    else
        mapfile -t cpus < <(expand_cpulist "$IRQ_CPUS")
    fi
    if ((${#cpus[@]} < 2)); then
        skip "fewer than 2 CPUs to spread over (${cpus[*]:-none})"
        return 0
    fi
    # Only IRQs that carry traffic are moved (config/admin vectors fire a
    # handful of times), busiest first, so the heaviest disk queue and the
    # heaviest NIC queue land on different cores. Right after boot nothing
    # has traffic yet: then every IRQ is spread.
    local disks=() lines=() dev_irqs=()
    mapfile -t disks < <(data_disks "$DATA_DIR")
    for d in "${disks[@]}"; do
        mapfile -t dev_irqs < <(disk_irqs "$d")
        mapfile -t -O "${#lines[@]}" lines < <(busy_irqs "${dev_irqs[@]}")
    done
    if nic=$(data_nic); then
        mapfile -t dev_irqs < <(nic_irqs "$nic")
        mapfile -t -O "${#lines[@]}" lines < <(busy_irqs "${dev_irqs[@]}")
    fi
    mapfile -t irqs < <(printf '%s\n' "${lines[@]}" | grep . | sort -k2,2nr | awk '{ print $1 }')
    if ((${#irqs[@]} == 0)); then
        skip "no disk/NIC IRQs visible in sysfs"
        return 0
    fi
    if pgrep -x irqbalance >/dev/null 2>&1; then
        say "note: irqbalance is running and will move these again; ban Weir's shard cores (IRQBALANCE_BANNED_CPULIST) or stop it"
    fi
    # Round-robin over the chosen CPUs in IRQ_CPUS order.
    for i in "${irqs[@]}"; do
        cpu=${cpus[k % ${#cpus[@]}]}
        k=$((k + 1))
        if ! cur=$(read_knob "$PROC/irq/$i/smp_affinity_list"); then
            skip "irq $i has no smp_affinity_list"
            continue
        fi
        if [[ $cur == "$cpu" ]]; then
            same "irq $i already on cpu $cpu"
            continue
        fi
        say "+ echo $cpu > $PROC/irq/$i/smp_affinity_list    # was $cur"
        ((DRY)) && continue
        if ! printf '%s\n' "$cpu" 2>/dev/null >"$PROC/irq/$i/smp_affinity_list"; then
            # NVMe and other multi-queue drivers use kernel-managed affinity
            # (one queue per CPU already): writes fail with EIO, by design.
            skip "irq $i: affinity is kernel-managed (per-queue IRQs are already spread)"
        fi
    done
    say "note: IRQ numbers can change across boots; re-run 'apply.sh --only irq' from a boot-time unit"
}

step_aio() {
    set_sysctl fs.aio-max-nr "$AIO_MAX_NR" min
}

step_sysctl() {
    set_sysctl vm.swappiness "$SWAPPINESS" exact
    set_sysctl vm.max_map_count "$MAX_MAP_COUNT" min
    set_sysctl net.core.somaxconn "$SOMAXCONN" min
    set_sysctl net.ipv4.tcp_max_syn_backlog "$TCP_MAX_SYN_BACKLOG" min
}

step_memlock() {
    local f="$ETC/security/limits.d/60-weir.conf"
    if [[ -d $ETC/security ]]; then
        # limits lines are keyed by user+type+item, so the (small, fully
        # managed) file is rewritten whole rather than line by line.
        local want
        want=$(printf '%s\n' \
            "# Managed by Weir's tuning/apply.sh (see tuning/README.md); edit the profile, not this file." \
            "# Applies to PAM sessions (ssh, su, login); systemd services use the drop-in below." \
            "$WEIR_USER soft memlock $MEMLOCK" "$WEIR_USER hard memlock $MEMLOCK" \
            "$WEIR_USER soft nofile $NOFILE" "$WEIR_USER hard nofile $NOFILE")
        if [[ -f $f && $(cat "$f") == "$want" ]]; then
            same "$f already sets memlock=$MEMLOCK nofile=$NOFILE for $WEIR_USER"
        else
            say "+ write $f:"
            printf '%s\n' "$want" | sed 's/^/      /'
            if ((!DRY)); then
                # shellcheck disable=SC2015 # any failure in the chain must clean up
                printf '%s\n' "$want" >"$f.tmp.$$" && chmod 644 "$f.tmp.$$" && mv "$f.tmp.$$" "$f" ||
                    { rm -f "$f.tmp.$$"; fail "writing $f"; }
            fi
        fi
    else
        skip "no $ETC/security (PAM limits not installed)"
    fi
    local lm=$MEMLOCK
    [[ $lm == unlimited ]] && lm=infinity
    say "systemd ignores limits.d; add this drop-in for the broker service:"
    say "    # /etc/systemd/system/weir.service.d/60-limits.conf"
    say "    [Service]"
    say "    LimitMEMLOCK=$lm"
    say "    LimitNOFILE=$NOFILE"
    say "  then: systemctl daemon-reload && systemctl restart weir"
}

step_idle() {
    if [[ -z $IDLE_MAX_LATENCY_US ]]; then
        skip "IDLE_MAX_LATENCY_US not set in the profile (latency.env sets it): idle states left alone"
        return 0
    fi
    local s lat name any=0 idx deep=0
    local -A persisted=()
    for s in "$SYS"/devices/system/cpu/cpu[0-9]*/cpuidle/state[0-9]*; do
        [[ -e $s/disable ]] || continue
        any=1
        lat=$(read_knob "$s/latency") || continue
        name=$(read_knob "$s/name") || name='?'
        if ((lat > IDLE_MAX_LATENCY_US)); then
            deep=$((deep + 1))
            say "($name: exit latency $lat us > $IDLE_MAX_LATENCY_US us)"
            set_knob "$s/disable" 1
            idx=$(basename "$s")
            if [[ -z ${persisted[$idx]:-} ]]; then
                persisted[$idx]=1
                persist_sysfs "/sys/devices/system/cpu/cpu*/cpuidle/$idx/disable" 1
            fi
        fi
    done
    if ((!any)); then
        skip "cpuidle not exposed (VM or container)"
    elif ((!deep)); then
        same "every idle state already exits within $IDLE_MAX_LATENCY_US us"
    fi
}

echo "# weir tuning apply: $( ((DRY)) && echo 'DRY RUN, nothing changed' || echo 'applying') on $(uname -n), steps: $ONLY"
for s in governor thp scheduler irq aio memlock sysctl idle; do
    want "$s" || continue
    echo "== $s"
    "step_$s"
done
if ((FAILED)); then
    echo "# $FAILED step(s) failed"
    exit 1
fi
echo "# done"
exit 0
