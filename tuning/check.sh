#!/usr/bin/env bash
# check.sh — read-only report of every host setting that bounds Weir's
# throughput or tail latency (io_uring availability, locked memory, CPU
# frequency/idle, THP, the data disk's queue, O_DIRECT alignment, sysctls,
# IRQ placement, NUMA, clocks), each with the value Weir wants and why.
#
# Usage: tuning/check.sh [--data-dir DIR] [--json] [--strict]
#   --data-dir DIR  broker data directory (default ./data); its filesystem
#                   and block device are the ones checked and probed
#   --json          machine-readable output (one object, "checks" array)
#   --strict        exit 1 if any check is WARN (for CI / provisioning)
#
# Output: one line per check:  NAME  current=…  recommended=…  [ok|WARN|info]  why…
# Changes nothing except a temp file in DIR for the O_DIRECT probe (removed).
# Works unprivileged; as root it sees the same knobs (none of them are
# root-readable only). Needs bash, coreutils, util-linux (findmnt), procps.

set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

DATA_DIR=./data
JSON=0
STRICT=0

usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

while (($#)); do
    case $1 in
    --data-dir) DATA_DIR=${2:?--data-dir needs a directory}; shift 2 ;;
    --data-dir=*) DATA_DIR=${1#*=}; shift ;;
    --json) JSON=1; shift ;;
    --strict) STRICT=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "check.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

names=() currents=() recs=() statuses=() whys=()
emit() {
    names+=("$1") currents+=("$2") recs+=("$3") statuses+=("$4") whys+=("$5")
}

NPROC=$(nproc)
PROBE_FILE=
cleanup() { [[ -n $PROBE_FILE ]] && rm -f "$PROBE_FILE"; }
trap cleanup EXIT

# ---------------------------------------------------------------- kernel
check_kernel() {
    local rel maj rest min kv
    rel=$(uname -r)
    maj=${rel%%.*}
    rest=${rel#*.}
    min=${rest%%[!0-9]*}
    kv=$((maj * 1000 + ${min:-0}))
    if ((kv < 5008)); then
        emit kernel.version "$rel" ">= 5.15" WARN \
            "glommio needs io_uring features that arrived in 5.8; Weir will not start on this kernel"
    elif ((kv < 5015)); then
        emit kernel.version "$rel" ">= 5.15" WARN \
            "io_uring works from 5.8, but 5.15 LTS is the first with the fixes and performance work (fast poll, registered buffers without memlock churn) Weir is tested on"
    else
        emit kernel.version "$rel" ">= 5.15" ok \
            "every io_uring feature glommio uses is present"
    fi

    local d
    if d=$(read_sysctl kernel.io_uring_disabled); then
        case $d in
        0) emit kernel.io_uring_disabled 0 0 ok "io_uring allowed for all processes" ;;
        1) emit kernel.io_uring_disabled 1 0 WARN \
            "only CAP_SYS_ADMIN or members of kernel.io_uring_group may create rings: run Weir in that group or set 0" ;;
        *) emit kernel.io_uring_disabled "$d" 0 WARN \
            "io_uring is disabled system-wide: glommio (and so Weir) cannot start" ;;
        esac
    else
        emit kernel.io_uring_disabled "absent" 0 info \
            "knob appeared in 6.6; without it io_uring is always allowed (seccomp/container profiles may still block it)"
    fi
}

# ---------------------------------------------------------------- limits
check_limits() {
    local cur hard need=$((512 * NPROC))
    cur=$(ulimit -S -l)
    hard=$(ulimit -H -l)
    local c="$cur KiB (hard $hard)"
    [[ $cur == unlimited ]] && c="unlimited (hard $hard)"
    if [[ $cur == unlimited ]]; then
        emit RLIMIT_MEMLOCK "$c" unlimited ok \
            "io_uring registered buffers and glommio's DMA pool are pinned memory, never limited here"
    elif is_root; then
        emit RLIMIT_MEMLOCK "$c" unlimited info \
            "root has CAP_IPC_LOCK so this shell is not limited; the service user is: set LimitMEMLOCK=infinity in the systemd unit (apply.sh --only memlock prints the drop-in)"
    elif ((cur < 512)); then
        emit RLIMIT_MEMLOCK "$c" unlimited WARN \
            "glommio needs >= 512 KiB of locked memory per executor for io_uring; executors fail to start below it. Set LimitMEMLOCK=infinity (systemd) or limits.d"
    elif ((cur < need)); then
        emit RLIMIT_MEMLOCK "$c" unlimited WARN \
            "one pinned executor per core needs ${NPROC} x 512 KiB = ${need} KiB; later shards would fail to start. Set LimitMEMLOCK=infinity"
    else
        emit RLIMIT_MEMLOCK "$c" unlimited ok \
            "enough for ${NPROC} executors (>= ${need} KiB); unlimited also covers a larger DMA buffer pool"
    fi

    cur=$(ulimit -S -n)
    hard=$(ulimit -H -n)
    if [[ $cur == unlimited ]] || ((cur >= 1048576)); then
        emit RLIMIT_NOFILE "$cur (hard $hard)" 1048576 ok "no fd exhaustion from segments or client sockets"
    elif ((cur >= 65536)); then
        emit RLIMIT_NOFILE "$cur (hard $hard)" 1048576 ok \
            "fine for thousands of partitions; 1048576 removes the question (each open segment and each client connection is one fd)"
    else
        emit RLIMIT_NOFILE "$cur (hard $hard)" 1048576 WARN \
            "each open segment/index and each client connection is an fd; running out fails accept() and segment rolls. Set LimitNOFILE=1048576"
    fi
}

# ---------------------------------------------------------------- CPU
check_cpu() {
    local f govs=() g
    for f in "$SYS"/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        g=$(read_knob "$f") && govs+=("$g")
    done
    if ((${#govs[@]} == 0)); then
        emit cpu.governor "not exposed (VM)" performance info \
            "no cpufreq interface: the hypervisor or firmware picks the clock; on bare metal set performance"
    else
        local summary bad=0
        summary=$(printf '%s\n' "${govs[@]}" | sort | uniq -c | awk '{printf "%s%sx%s", (NR>1?",":""), $2, $1}')
        for g in "${govs[@]}"; do [[ $g == performance ]] || bad=1; done
        if ((bad)); then
            emit cpu.governor "$summary" performance WARN \
                "ondemand/schedutil/powersave raise the clock only after load shows up, so the first batches after an idle gap run slow (tens to hundreds of µs on p99); shards poll io_uring in bursts that governors misread"
        else
            emit cpu.governor "$summary" performance ok "cores stay at full clock; no ramp-up latency"
        fi
    fi

    local drv states="" maxlat=0 s name lat dis
    drv=$(read_knob "$SYS/devices/system/cpu/cpuidle/current_driver") || drv=
    for s in "$SYS"/devices/system/cpu/cpu0/cpuidle/state[0-9]*; do
        [[ -d $s ]] || continue
        name=$(read_knob "$s/name") || continue
        name=${name// /_}
        lat=$(read_knob "$s/latency") || lat=0
        dis=$(read_knob "$s/disable") || dis=0
        states+="${states:+,}${name}:${lat}us"
        [[ $dis == 1 ]] && states+="(off)"
        [[ $dis != 1 ]] && ((lat > maxlat)) && maxlat=$lat
    done
    if [[ -z $drv && -z $states ]]; then
        emit cpu.idle "not exposed (VM)" "exit latency <= 10us" info \
            "no cpuidle interface; on bare metal deep C-states add wake-up time to an idle shard"
    elif ((maxlat <= 20)); then
        emit cpu.idle "driver=${drv:-?} states=${states}" "exit latency <= 10us" ok \
            "deepest enabled state wakes in ${maxlat} µs: negligible next to a disk flush"
    else
        emit cpu.idle "driver=${drv:-?} states=${states}" "exit latency <= 10us" info \
            "deepest enabled state needs ${maxlat} µs to wake; an idle shard pays that on the next request. Trade-off against power: the latency profile disables deeper states (apply.sh --only idle)"
    fi

    local ps="" v
    v=$(read_knob "$SYS/devices/system/cpu/intel_pstate/status") && ps+="intel_pstate=$v"
    v=$(read_knob "$SYS/devices/system/cpu/intel_pstate/no_turbo") && ps+=" no_turbo=$v"
    v=$(read_knob "$SYS/devices/system/cpu/amd_pstate/status") && ps+="${ps:+ }amd_pstate=$v"
    v=$(read_knob "$SYS/devices/system/cpu/cpu0/cpufreq/scaling_driver") && ps+="${ps:+ }driver=$v"
    if [[ -z $ps ]]; then
        emit cpu.pstate "not exposed (VM)" "turbo on, governor performance" info \
            "no P-state driver visible; frequency is the host's business"
    else
        emit cpu.pstate "$ps" "turbo on, governor performance" info \
            "P-state driver in use; with intel_pstate/amd_pstate active the governor line above is what matters, and no_turbo=1 caps single-shard throughput"
    fi
}

# ---------------------------------------------------------------- THP
check_thp() {
    local base="$SYS/kernel/mm/transparent_hugepage" e d
    if ! e=$(read_knob "$base/enabled"); then
        emit thp.enabled "not exposed" madvise info "kernel without THP: nothing to tune"
        emit thp.defrag "not exposed" never info "kernel without THP: nothing to tune"
        return
    fi
    e=$(bracketed "$e")
    case $e in
    always) emit thp.enabled always madvise WARN \
        "every anonymous mapping (shard heaps, connection buffers) gets huge pages: memory bloat and khugepaged churn; madvise lets Weir opt in only where it helps (its cache arena)" ;;
    madvise) emit thp.enabled madvise madvise ok "huge pages only where Weir asks for them (MADV_HUGEPAGE)" ;;
    *) emit thp.enabled "$e" madvise ok "no huge pages at all: safe for latency; the cache arena pays some extra TLB misses" ;;
    esac
    d=$(bracketed "$(read_knob "$base/defrag")")
    case $d in
    always) emit thp.defrag always never WARN \
        "a page fault on a shard thread may stall in synchronous compaction for milliseconds: a p99/p999 latency spike no Weir code can avoid. never = fall back to 4 KiB pages instantly, khugepaged collapses later" ;;
    never | defer) emit thp.defrag "$d" never ok "faults never wait for compaction" ;;
    *) emit thp.defrag "$d" never info \
        "regions that madvise(MADV_HUGEPAGE) still compact synchronously on fault; never is the strict choice for tail latency" ;;
    esac
}

# ---------------------------------------------------------------- data disk
check_disk() {
    local dir fstype opts src note=""
    dir=$(existing_ancestor "$DATA_DIR")
    [[ $dir != "$DATA_DIR" ]] && note=" (data dir $DATA_DIR missing; checked $dir)"
    fstype=$(findmnt -n -o FSTYPE -T "$dir" 2>/dev/null | head -n1)
    [[ -z $fstype ]] && fstype=$(stat -f -c %T "$dir" 2>/dev/null)
    opts=$(findmnt -n -o OPTIONS -T "$dir" 2>/dev/null | head -n1)
    src=$(findmnt -n -o SOURCE -T "$dir" 2>/dev/null | head -n1)
    local cur="${fstype:-unknown} on ${src:-?}"
    case $fstype in
    tmpfs | ramfs)
        emit disk.fs "$cur" "ext4 or xfs" WARN \
            "RAM filesystem: nothing is durable and O_DIRECT either fails (EINVAL before Linux 6.6) or means nothing${note}" ;;
    overlay*)
        emit disk.fs "$cur" "ext4 or xfs" WARN \
            "overlayfs: O_DIRECT depends on the upper filesystem and fails on many kernels; mount a host volume for the data dir${note}" ;;
    nfs* | cifs | smb* | fuse* | 9p | virtiofs)
        emit disk.fs "$cur" "ext4 or xfs" WARN \
            "network/FUSE filesystem: O_DIRECT and fdatasync semantics vary, latency is the network's${note}" ;;
    zfs)
        emit disk.fs "$cur" "ext4 or xfs" WARN \
            "OpenZFS ignores O_DIRECT before 2.3 (writes go through the ARC), so Weir's own cache doubles memory use${note}" ;;
    btrfs)
        emit disk.fs "$cur" "ext4 or xfs" info \
            "copy-on-write: each fdatasync commits tree metadata, so acks=all latency is higher than on ext4/xfs${note}" ;;
    ext4)
        if [[ ,$opts, == *,data=journal,* ]]; then
            emit disk.fs "$cur" "ext4 or xfs" WARN "data=journal makes ext4 fall back to buffered I/O for O_DIRECT${note}"
        elif [[ ,$opts, == *,nobarrier,* || ,$opts, == *,barrier=0,* ]]; then
            emit disk.fs "$cur" "ext4 or xfs" WARN \
                "nobarrier: fdatasync no longer flushes the device cache, so acks=all is not durable on power loss${note}"
        else
            emit disk.fs "$cur" "ext4 or xfs" ok "extent-based, O_DIRECT capable, fdatasync skips unchanged metadata${note}"
        fi ;;
    xfs)
        emit disk.fs "$cur" "ext4 or xfs" ok "extent-based, O_DIRECT capable, good with concurrent appenders${note}" ;;
    *)
        emit disk.fs "$cur" "ext4 or xfs" info "untested filesystem: check O_DIRECT and fdatasync behaviour below${note}" ;;
    esac

    mapfile -t DISKS < <(data_disks "$DATA_DIR")
    if ((${#DISKS[@]} == 0)); then
        local why="no block device behind $dir (tmpfs/overlay/network fs): queue checks skipped"
        emit disk.device "none" "local NVMe/SSD" info "$why"
        emit disk.scheduler "n/a" "none (NVMe) / mq-deadline" info "$why"
        emit disk.rotational "n/a" 0 info "$why"
        emit disk.nr_requests "n/a" ">= 128" info "$why"
        emit disk.block_size "n/a" "4096-aligned writes" info "$why"
        emit disk.write_cache "n/a" "write back + flush, or write through" info "$why"
    else
        local d q list="" sched_cur="" sched_st=ok sched_rec="" rot_cur="" rot_st=ok rot_why=""
        local nr_cur="" nr_st=ok bs_cur="" wc_cur="" max_phys=512 multi=0
        ((${#DISKS[@]} > 1)) && multi=1
        for d in "${DISKS[@]}"; do
            q="$SYS/block/$d/queue"
            local pfx=""
            ((multi)) && pfx="$d:"
            local drv size model kind
            drv=
            [[ -e $SYS/block/$d/device/driver ]] && drv=$(basename "$(readlink -f "$SYS/block/$d/device/driver")")
            size=$(read_knob "$SYS/block/$d/size") || size=0
            model=$(read_knob "$SYS/block/$d/device/model" | tr -s ' ') || model=
            list+="${list:+, }$d (${drv:-${model:-?}}, $((size * 512 / 1000000000)) GB)"
            case $d in
            nvme*) kind=nvme ;;
            vd* | xvd*) kind=virtual ;;
            *) kind=other ;;
            esac

            local s rot nr lbs pbs wc
            s=$(read_knob "$q/scheduler") || s="?"
            [[ $s == *\[* ]] && s=$(bracketed "$s")
            rot=$(read_knob "$q/rotational") || rot="?"
            sched_cur+="${sched_cur:+,}${pfx}${s}"
            case $kind in
            nvme)
                sched_rec=none
                [[ $s == none ]] || sched_st=WARN ;;
            virtual)
                [[ -z $sched_rec ]] && sched_rec=none
                [[ $s == none ]] || { [[ $sched_st == ok ]] && sched_st=info; } ;;
            *)
                [[ -z $sched_rec || $sched_rec == none ]] && sched_rec=mq-deadline
                if [[ $s == mq-deadline ]]; then :
                elif [[ $s == none && $rot == 0 ]]; then [[ $sched_st == ok ]] && sched_st=info
                else sched_st=WARN; fi ;;
            esac

            rot_cur+="${rot_cur:+,}${pfx}${rot}"
            if [[ $rot == 1 && $kind == virtual ]]; then
                [[ $rot_st == ok ]] && rot_st=info
                rot_why="virtio/xen disks report rotational=1 unless the host sets a hint: says nothing about the medium"
            elif [[ $rot == 1 ]]; then
                rot_st=WARN
                rot_why="spinning disk: every fdatasync waits for the platter (ms), which is the floor under acks=all latency; use SSD/NVMe"
            fi

            nr=$(read_knob "$q/nr_requests") || nr=0
            nr_cur+="${nr_cur:+,}${pfx}${nr}"
            ((nr < 128)) && nr_st=WARN

            lbs=$(read_knob "$q/logical_block_size") || lbs="?"
            pbs=$(read_knob "$q/physical_block_size") || pbs="?"
            bs_cur+="${bs_cur:+,}${pfx}logical=${lbs}/physical=${pbs}"
            [[ $pbs =~ ^[0-9]+$ ]] && ((pbs > max_phys)) && max_phys=$pbs
            LOGICAL_BS=$lbs

            wc=$(read_knob "$q/write_cache") || wc="?"
            wc_cur+="${wc_cur:+,}${pfx}${wc}"
        done
        emit disk.device "$list" "local NVMe/SSD" info "block device(s) behind $dir; the queue settings below are theirs"
        local sched_why
        case $sched_rec in
        none) sched_why="NVMe/virtio queues are deep and multi-queue (the host or drive orders requests); a kernel scheduler only adds a lock and queueing delay. mq-deadline is harmless on virtio" ;;
        *) sched_why="SATA/SAS: mq-deadline keeps reads from starving behind Weir's large sequential writes; bfq/kyber cost CPU or idle" ;;
        esac
        emit disk.scheduler "$sched_cur" "$sched_rec" "$sched_st" "$sched_why"
        emit disk.rotational "$rot_cur" 0 "$rot_st" "${rot_why:-solid-state: fdatasync cost is the flash/controller flush}"
        if [[ $nr_st == ok ]]; then
            emit disk.nr_requests "$nr_cur" ">= 128" ok "queue deeper than the writes Weir keeps in flight per device"
        else
            emit disk.nr_requests "$nr_cur" ">= 128" WARN "shallower than Weir's in-flight appends + reads: requests wait in the block layer"
        fi
        emit disk.block_size "$bs_cur" "${max_phys}-aligned writes" info \
            "O_DIRECT needs size, offset and buffer aligned to the logical block; Weir aligns to ${max_phys} (physical) so the device never read-modify-writes"
        if [[ $wc_cur == *"write back"* ]]; then
            emit disk.write_cache "$wc_cur" "write back + flush, or write through" info \
                "volatile cache: fdatasync sends a FLUSH, and that flush is most of the fdatasync latency (F_p50) Weir pays per group commit"
        else
            emit disk.write_cache "$wc_cur" "write back + flush, or write through" info \
                "write through: the device acks durable writes without a separate flush (battery/capacitor-backed)"
        fi
    fi

    # O_DIRECT probe: the authoritative answer for this filesystem + device.
    local r512="" r4096="" st why
    if [[ -d $dir && -w $dir ]]; then
        PROBE_FILE=$(mktemp -p "$dir" .weir-odirect-probe.XXXXXX 2>/dev/null) || PROBE_FILE=
    fi
    if [[ -z $PROBE_FILE ]]; then
        emit disk.o_direct "not probed" "4096 accepted" info "$dir is not writable by uid $(id -u): probe skipped"
        return
    fi
    dd if=/dev/zero of="$PROBE_FILE" bs=512 count=1 oflag=direct conv=notrunc status=none 2>/dev/null && r512=ok || r512=EINVAL
    dd if=/dev/zero of="$PROBE_FILE" bs=4096 count=1 oflag=direct conv=notrunc status=none 2>/dev/null && r4096=ok || r4096=EINVAL
    rm -f "$PROBE_FILE"
    PROBE_FILE=
    if [[ $r512 == ok ]]; then
        st=ok why="O_DIRECT works; alignment 512 applies (logical block ${LOGICAL_BS:-?}); Weir's 4096-aligned writes are always valid"
    elif [[ $r4096 == ok ]]; then
        st=ok why="O_DIRECT works with 4096 alignment (4Kn device or fs block); Weir aligns to 4096"
    else
        st=WARN why="O_DIRECT writes rejected in $dir: Weir's segment store cannot run here (tmpfs before 6.6, overlay, data=journal?)"
    fi
    emit disk.o_direct "512:$r512 4096:$r4096" "4096 accepted" "$st" "$why"
}

# ---------------------------------------------------------------- sysctls
check_sysctls() {
    local v n
    if v=$(read_sysctl fs.aio-max-nr); then
        if ((v >= 1048576)); then
            emit fs.aio-max-nr "$v" ">= 1048576" ok "ample system-wide AIO context headroom"
        else
            emit fs.aio-max-nr "$v" ">= 1048576" WARN \
                "system-wide cap on AIO events; when io_setup() finds it exhausted it fails with EAGAIN, and any AIO/io_uring-fallback user on the host (other tenants included) competes for it. Costs nothing until used"
        fi
    else
        emit fs.aio-max-nr "not exposed" ">= 1048576" info "no /proc/sys/fs/aio-max-nr"
    fi
    if n=$(read_sysctl fs.aio-nr); then
        local m=${v:-0}
        if ((m > 0 && n * 10 > m * 8)); then
            emit fs.aio-nr "$n" "< 80% of aio-max-nr" WARN "AIO contexts nearly exhausted ($n of $m): new io_setup() calls will fail"
        else
            emit fs.aio-nr "$n" "< 80% of aio-max-nr" ok "in use now, out of ${m}: headroom left"
        fi
    else
        emit fs.aio-nr "not exposed" "< 80% of aio-max-nr" info "no /proc/sys/fs/aio-nr"
    fi

    if v=$(read_sysctl vm.swappiness); then
        local swaps
        swaps=$(awk 'NR > 1' "$PROC/swaps" 2>/dev/null | wc -l)
        if ((swaps == 0)); then
            emit vm.swappiness "$v (no swap active)" 1 info "no swap device active, so the value has no effect today"
        elif ((v <= 10)); then
            emit vm.swappiness "$v" 1 ok "anonymous memory (Weir's cache) is swapped only under real pressure"
        else
            emit vm.swappiness "$v" 1 WARN \
                "Weir's cache is anonymous memory (O_DIRECT bypasses the page cache), so at $v the kernel may swap the cache out instead of dropping page cache; a shard touching a swapped page stalls for milliseconds"
        fi
    else
        emit vm.swappiness "not exposed" 1 info "no /proc/sys/vm/swappiness"
    fi

    if v=$(read_sysctl vm.max_map_count); then
        if ((v >= 262144)); then
            emit vm.max_map_count "$v" ">= 262144" ok "headroom for mapped index files and allocator arenas"
        elif ((v >= 65530)); then
            emit vm.max_map_count "$v" ">= 262144" info \
                "Weir writes segments with O_DIRECT (no mmap), so the default suffices for most brokers; raise it for tens of thousands of partitions, where mapped indexes and allocator arenas add up"
        else
            emit vm.max_map_count "$v" ">= 262144" WARN "below the kernel default: mmap may fail with ENOMEM under many partitions"
        fi
    else
        emit vm.max_map_count "not exposed" ">= 262144" info "no /proc/sys/vm/max_map_count"
    fi

    if v=$(read_sysctl net.core.somaxconn); then
        if ((v >= 4096)); then
            emit net.core.somaxconn "$v" ">= 4096" ok "accept backlog absorbs a reconnect storm after a broker restart"
        elif ((v >= 1024)); then
            emit net.core.somaxconn "$v" ">= 4096" info "caps Weir's listen backlog; thousands of clients reconnecting at once overflow it and retry after 1-3 s"
        else
            emit net.core.somaxconn "$v" ">= 4096" WARN "caps Weir's listen backlog; a reconnect storm after restart drops connections (client retry after 1-3 s)"
        fi
    else
        emit net.core.somaxconn "not exposed" ">= 4096" info "no /proc/sys/net/core/somaxconn (network namespace?)"
    fi

    if v=$(read_sysctl net.ipv4.tcp_max_syn_backlog); then
        if ((v >= 4096)); then
            emit net.ipv4.tcp_max_syn_backlog "$v" ">= 8192" ok "SYN queue holds a full reconnect storm"
        elif ((v >= 1024)); then
            emit net.ipv4.tcp_max_syn_backlog "$v" ">= 8192" info \
                "half-open connection queue; syncookies cover overflow, but cookie handshakes lose TCP options (window scaling) on some stacks"
        else
            emit net.ipv4.tcp_max_syn_backlog "$v" ">= 8192" WARN "SYN queue overflows when many producers connect at once"
        fi
    else
        emit net.ipv4.tcp_max_syn_backlog "not exposed" ">= 8192" info "no /proc/sys/net/ipv4/tcp_max_syn_backlog"
    fi
}

# ---------------------------------------------------------------- IRQs
# Summarise where the IRQs of one device land: "irq36->cpu1(6211)" per IRQ.
irq_summary() {
    local label=$1
    shift
    local irqs=("$@") i c aff counts s="" busy=0 cpus="" max=0
    local -A total=()
    for i in "${irqs[@]}"; do
        counts=$(irq_counts "$i")
        total[$i]=0
        for c in $counts; do total[$i]=$((total[$i] + c)); done
        ((total[$i] > max)) && max=${total[$i]}
    done
    for i in "${irqs[@]}"; do
        aff=$(irq_affinity "$i") || aff="?"
        s+="${s:+ }irq$i->cpu$aff(${total[$i]})"
        # "Busy" = carries real traffic (>= 1% of the busiest IRQ of this
        # device): config/admin vectors fire a handful of times and would
        # otherwise make a single-queue device look "funnelled".
        if ((total[$i] > 0 && total[$i] * 100 >= max)); then
            busy=$((busy + 1))
            cpus+="$aff"$'\n'
        fi
    done
    local distinct
    distinct=$(printf '%s' "$cpus" | sort -u | grep -c .)
    if ((${#irqs[@]} == 0)); then
        emit "$label" "no IRQs found" "spread over cores" info "device has no MSI/PCI IRQ visible in sysfs (virtual or container)"
    elif ((busy >= 2 && distinct == 1 && NPROC > 1)); then
        emit "$label" "$s" "spread over cores" WARN \
            "all busy queues interrupt one core: that core's shard does every completion's softirq work; spread them (apply.sh --only irq) and keep them off the busiest shard"
    else
        emit "$label" "$s" "spread over cores" ok \
            "completions are not funnelled into one shard's core (a single-queue device can only use one core)"
    fi
}

check_irqs() {
    local d irqs=() nic
    for d in "${DISKS[@]}"; do
        mapfile -t -O "${#irqs[@]}" irqs < <(disk_irqs "$d")
    done
    irq_summary irq.disk "${irqs[@]}"
    irqs=()
    if nic=$(data_nic); then
        mapfile -t irqs < <(nic_irqs "$nic")
        irq_summary irq.nic "${irqs[@]}"
        local last=$((${#names[@]} - 1))
        currents[last]="$nic: ${currents[last]}"
    else
        emit irq.nic "no NIC found" "spread over cores" info "no default-route interface"
    fi
    local ib="not running"
    pgrep -x irqbalance >/dev/null 2>&1 && ib="running"
    whys[${#whys[@]} - 1]+="; irqbalance $ib"
}

# ---------------------------------------------------------------- NUMA, clock
check_numa_clock() {
    local nodes=0 n
    for n in "$SYS"/devices/system/node/node[0-9]*; do [[ -d $n ]] && nodes=$((nodes + 1)); done
    if ((nodes == 0)); then
        emit numa.nodes "not exposed" "shards on the NIC/disk node" info "no NUMA information (kernel without NUMA): treat as one node"
    elif ((nodes == 1)); then
        emit numa.nodes 1 "shards on the NIC/disk node" ok "one memory node: no cross-node memory or DMA traffic"
    else
        local nn=""
        local nic
        nic=$(data_nic) && nn=$(read_knob "$SYS/class/net/$nic/device/numa_node") && nn=" ($nic on node $nn)"
        emit numa.nodes "$nodes$nn" "shards on the NIC/disk node" WARN \
            "a shard on the far node pays cross-node latency for every buffer the NIC/disk DMAs; pin Weir's shards to the local node's cores (or run one broker per node)"
    fi

    local cs avail
    cs=$(read_knob "$SYS/devices/system/clocksource/clocksource0/current_clocksource") || cs=
    avail=$(read_knob "$SYS/devices/system/clocksource/clocksource0/available_clocksource") || avail=
    case $cs in
    "") emit clocksource "not exposed" tsc info "no clocksource in sysfs" ;;
    tsc | kvm-clock | hyperv_clocksource_tsc_page | arch_sys_counter)
        emit clocksource "$cs (available: ${avail% })" tsc ok "vDSO clock_gettime (~20 ns): cheap enough to timestamp every batch and latency sample" ;;
    *) emit clocksource "$cs (available: ${avail% })" tsc WARN \
        "clock_gettime on $cs is a real syscall or slow MMIO read (~1 µs or more); Weir timestamps every batch, so this costs throughput and blurs latency histograms" ;;
    esac
}

DISKS=()
LOGICAL_BS=
check_kernel
check_limits
check_cpu
check_thp
check_disk
check_sysctls
check_irqs
check_numa_clock

# ---------------------------------------------------------------- output
n_ok=0 n_warn=0 n_info=0
for s in "${statuses[@]}"; do
    case $s in ok) n_ok=$((n_ok + 1)) ;; WARN) n_warn=$((n_warn + 1)) ;; *) n_info=$((n_info + 1)) ;; esac
done

jesc() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
}

host=$(uname -n)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if ((JSON)); then
    printf '{\n  "tool": "weir-tuning-check",\n  "host": %s,\n  "date": %s,\n  "kernel": %s,\n  "data_dir": %s,\n  "uid": %d,\n  "nproc": %d,\n' \
        "$(jesc "$host")" "$(jesc "$now")" "$(jesc "$(uname -r)")" "$(jesc "$DATA_DIR")" "$(id -u)" "$NPROC"
    printf '  "summary": {"ok": %d, "warn": %d, "info": %d},\n  "checks": [\n' "$n_ok" "$n_warn" "$n_info"
    for i in "${!names[@]}"; do
        printf '    {"name": %s, "current": %s, "recommended": %s, "status": %s, "why": %s}%s\n' \
            "$(jesc "${names[i]}")" "$(jesc "${currents[i]}")" "$(jesc "${recs[i]}")" \
            "$(jesc "${statuses[i]}")" "$(jesc "${whys[i]}")" "$( ((i + 1 < ${#names[@]})) && echo ,)"
    done
    printf '  ]\n}\n'
else
    printf '# weir tuning check: host %s, %s, kernel %s, %d CPUs, uid %d, data dir %s\n' \
        "$host" "$now" "$(uname -r)" "$NPROC" "$(id -u)" "$DATA_DIR"
    for i in "${!names[@]}"; do
        printf '%-30s current=%s  recommended=%s  [%s]  %s\n' \
            "${names[i]}" "${currents[i]}" "${recs[i]}" "${statuses[i]}" "${whys[i]}"
    done
    printf '# summary: %d ok, %d WARN, %d info\n' "$n_ok" "$n_warn" "$n_info"
fi

if ((STRICT && n_warn > 0)); then
    exit 1
fi
exit 0
