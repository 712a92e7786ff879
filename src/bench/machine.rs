//! Facts about the machine a bench ran on, for the report: CPU count and model, kernel, memory,
//! and the filesystem and block device under the data directory (from `/proc/mounts` and
//! `/sys/block`). Also a snapshot of what else was running (load average, busiest processes),
//! because the benchmarks share their machine.
//!
//! Parsers are pure and take file text; `collect` reads the files and never fails (a fact that
//! cannot be read is reported as such).

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct MachineFacts {
    pub hostname: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
    pub data_dir: String,
    pub filesystem: String,
    pub device: String,
    pub mount_options: String,
    /// Facts from /sys/block/<dev>/queue (logical block, rotational flag, scheduler, cache).
    pub device_queue: String,
}

/// The model name of the first CPU in `/proc/cpuinfo`.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// MemTotal of `/proc/meminfo` in GiB.
pub fn parse_mem_total_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0 / 1024.0)
}

/// The mount (device, mount point, fs type, options) holding `path` (absolute, canonical):
/// the entry of `/proc/mounts` with the longest mount point that is a path prefix; later
/// entries win ties (they are mounted over earlier ones).
pub fn find_mount(mounts: &str, path: &Path) -> Option<(String, String, String, String)> {
    let mut best: Option<(usize, (String, String, String, String))> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 4 {
            continue;
        }
        let mount_point = fields[1].replace("\\040", " ");
        if !path.starts_with(&mount_point) {
            continue;
        }
        let depth = mount_point.len();
        if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((
                depth,
                (
                    fields[0].to_string(),
                    mount_point,
                    fields[2].to_string(),
                    fields[3].to_string(),
                ),
            ));
        }
    }
    best.map(|(_, m)| m)
}

/// `vda` for `/dev/vda`, `nvme0n1` for `/dev/nvme0n1p2`, `sda` for `/dev/sda1`.
pub fn block_device_name(device: &str) -> Option<String> {
    let name = device.strip_prefix("/dev/")?;
    if name.starts_with("nvme") || name.starts_with("mmcblk") {
        return Some(match name.rfind('p') {
            Some(i) if i > 4 && name[i + 1..].chars().all(|c| c.is_ascii_digit()) => {
                name[..i].to_string()
            }
            _ => name.to_string(),
        });
    }
    Some(
        name.trim_end_matches(|c: char| c.is_ascii_digit())
            .to_string(),
    )
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Collects the facts for a run whose data lives in `data_dir`.
pub fn collect(data_dir: &Path) -> MachineFacts {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mount = read("/proc/mounts").and_then(|m| find_mount(&m, &canonical));
    let (device, filesystem, mount_options) = match &mount {
        Some((device, point, fs, options)) => {
            (format!("{device} on {point}"), fs.clone(), options.clone())
        }
        None => ("unknown".into(), "unknown".into(), String::new()),
    };
    let device_queue = mount
        .as_ref()
        .and_then(|(device, ..)| block_device_name(device))
        .map(|dev| {
            let q = |f: &str| {
                read(&format!("/sys/block/{dev}/queue/{f}")).unwrap_or_else(|| "?".into())
            };
            format!(
                "{dev}: logical block {}, physical block {}, rotational {}, scheduler {}, write cache {}",
                q("logical_block_size"),
                q("physical_block_size"),
                q("rotational"),
                q("scheduler"),
                q("write_cache")
            )
        })
        .unwrap_or_default();
    MachineFacts {
        hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model: read("/proc/cpuinfo")
            .and_then(|c| parse_cpu_model(&c))
            .unwrap_or_else(|| "unknown".into()),
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        memory_gib: read("/proc/meminfo")
            .and_then(|m| parse_mem_total_gib(&m))
            .unwrap_or(0.0),
        data_dir: canonical.display().to_string(),
        filesystem,
        device,
        mount_options,
        device_queue,
    }
}

/// Load average and the busiest other processes right now, one line each.
pub fn load_snapshot() -> String {
    let load = read("/proc/loadavg").unwrap_or_default();
    let busiest = std::process::Command::new("ps")
        .args(["-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .take(5)
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("loadavg {load}; busiest (%CPU since start): {busiest}")
}

/// Human-readable block.
pub fn render(facts: &MachineFacts) -> String {
    format!(
        "machine: {} — {} CPUs ({}), kernel {}, {:.1} GiB\n\
         data dir: {} — {} ({}, {})\n\
         {}\n",
        facts.hostname,
        facts.cpus,
        facts.cpu_model,
        facts.kernel,
        facts.memory_gib,
        facts.data_dir,
        facts.filesystem,
        facts.device,
        facts.mount_options,
        facts.device_queue
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_and_memory() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R45\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 9R45"));
        assert_eq!(parse_cpu_model("nothing"), None);
        let meminfo = "MemTotal:       25165824 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_mem_total_gib(meminfo), Some(24.0));
    }

    #[test]
    fn the_longest_matching_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw,relatime 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      /dev/vdb1 /work/data xfs rw,noatime 0 0\n\
                      /dev/vdc /work/data-other ext4 rw 0 0\n";
        let m = find_mount(mounts, Path::new("/work/data/weir")).unwrap();
        assert_eq!(m.0, "/dev/vdb1");
        assert_eq!(m.2, "xfs");
        // A sibling whose name merely starts the same is not a parent.
        let m = find_mount(mounts, Path::new("/work/data-otherx")).unwrap();
        assert_eq!(m.0, "/dev/vda");
        let m = find_mount(mounts, Path::new("/tmp/x")).unwrap();
        assert_eq!(m.2, "tmpfs");
    }

    #[test]
    fn block_device_names_drop_partition_numbers() {
        assert_eq!(block_device_name("/dev/vda").as_deref(), Some("vda"));
        assert_eq!(block_device_name("/dev/sda1").as_deref(), Some("sda"));
        assert_eq!(
            block_device_name("/dev/nvme0n1p2").as_deref(),
            Some("nvme0n1")
        );
        assert_eq!(
            block_device_name("/dev/nvme0n1").as_deref(),
            Some("nvme0n1")
        );
        assert_eq!(block_device_name("tmpfs"), None);
    }

    #[test]
    fn collect_never_fails() {
        let facts = collect(Path::new("."));
        assert!(facts.cpus >= 1);
        assert!(render(&facts).contains("CPUs"));
    }
}
