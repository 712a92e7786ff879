//! CPU accounting for the report: a process's user+system CPU time from `/proc/<pid>/stat`
//! (the broker's "CPU-seconds per GB"), and the whole machine's busy share from `/proc/stat`
//! (was the machine saturated during a phase?).
//!
//! The parsers are pure and take the file's text; the readers are thin wrappers. Times are in
//! clock ticks (`sysconf(_SC_CLK_TCK)`, 100 on Linux) and converted to seconds here.

use std::path::Path;

use super::units::BYTES_PER_GB;

/// User and system CPU time of one process (all its threads, not its children).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct ProcessCpu {
    pub user_seconds: f64,
    pub system_seconds: f64,
}

impl ProcessCpu {
    pub fn total_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }

    /// CPU spent between `earlier` and `self`.
    pub fn since(&self, earlier: &ProcessCpu) -> ProcessCpu {
        ProcessCpu {
            user_seconds: self.user_seconds - earlier.user_seconds,
            system_seconds: self.system_seconds - earlier.system_seconds,
        }
    }
}

/// Clock ticks per second for `/proc` times.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Parses `utime` and `stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name
/// (field 2) is in parentheses and may itself contain spaces and parentheses, so fields are
/// counted from the *last* `)`.
pub fn parse_process_stat(text: &str, ticks_per_second: f64) -> Result<ProcessCpu, String> {
    let after_name = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| "no ')' after the command name".to_string())?;
    // After the name: field 3 (state) is index 0, so utime (14) is index 11, stime (15) is 12.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize, name: &str| -> Result<f64, String> {
        fields
            .get(index)
            .ok_or_else(|| format!("stat line has no {name} field"))?
            .parse::<u64>()
            .map(|ticks| ticks as f64 / ticks_per_second)
            .map_err(|_| format!("{name} is not a number"))
    };
    Ok(ProcessCpu {
        user_seconds: field(11, "utime")?,
        system_seconds: field(12, "stime")?,
    })
}

/// The CPU time of process `pid` now.
pub fn read_process(pid: u32) -> Result<ProcessCpu, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("reading {path}: {e} (is the broker running with that pid, on this machine?)")
    })?;
    parse_process_stat(&text, clock_ticks_per_second()).map_err(|e| format!("{path}: {e}"))
}

/// Aggregate time of all CPUs from the first line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MachineCpu {
    pub busy_ticks: u64,
    pub total_ticks: u64,
}

impl MachineCpu {
    /// Share of CPU time that was busy between `earlier` and `self` (0..=1), over all CPUs.
    pub fn busy_share_since(&self, earlier: &MachineCpu) -> f64 {
        let total = self.total_ticks.saturating_sub(earlier.total_ticks);
        if total == 0 {
            return 0.0;
        }
        self.busy_ticks.saturating_sub(earlier.busy_ticks) as f64 / total as f64
    }
}

/// Parses the `cpu ` line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already inside user). Idle and iowait count as not busy.
pub fn parse_machine_stat(text: &str) -> Result<MachineCpu, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| "/proc/stat has no aggregate 'cpu' line".to_string())?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse::<u64>().map_err(|_| format!("'{v}' in /proc/stat")))
        .collect::<Result<_, _>>()?;
    if values.len() < 4 {
        return Err("the 'cpu' line of /proc/stat has fewer than 4 fields".into());
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Ok(MachineCpu {
        busy_ticks: total - idle,
        total_ticks: total,
    })
}

pub fn read_machine() -> Result<MachineCpu, String> {
    let text = std::fs::read_to_string(Path::new("/proc/stat"))
        .map_err(|e| format!("reading /proc/stat: {e}"))?;
    parse_machine_stat(&text)
}

/// CPU-seconds per GB (10^9 bytes); `None` when no bytes moved.
pub fn cpu_seconds_per_gb(cpu_seconds: f64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| cpu_seconds / (bytes as f64 / BYTES_PER_GB))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (weir) S 1 4242 4242 0 -1 4194560 2381 0 0 0 1234 567 0 0 20 0 5 0 \
                        99 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn reads_utime_and_stime_in_seconds() {
        let cpu = parse_process_stat(STAT, 100.0).unwrap();
        assert_eq!(cpu.user_seconds, 12.34);
        assert_eq!(cpu.system_seconds, 5.67);
        assert!((cpu.total_seconds() - 18.01).abs() < 1e-9);
    }

    #[test]
    fn a_command_name_with_spaces_and_parens_does_not_shift_fields() {
        let tricky = STAT.replace("(weir)", "(we ir) (x) S 9)");
        let cpu = parse_process_stat(&tricky, 100.0).unwrap();
        assert_eq!(cpu.user_seconds, 12.34);
    }

    #[test]
    fn truncated_or_garbage_stat_is_an_error() {
        assert!(parse_process_stat("4242 (weir) S 1 2", 100.0).is_err());
        assert!(parse_process_stat("no parens here", 100.0).is_err());
        let garbage = STAT.replace(" 1234 ", " x ");
        assert!(parse_process_stat(&garbage, 100.0).is_err());
    }

    #[test]
    fn difference_of_two_samples() {
        let a = ProcessCpu {
            user_seconds: 1.0,
            system_seconds: 2.0,
        };
        let b = ProcessCpu {
            user_seconds: 4.0,
            system_seconds: 2.5,
        };
        assert_eq!(
            b.since(&a),
            ProcessCpu {
                user_seconds: 3.0,
                system_seconds: 0.5
            }
        );
    }

    #[test]
    fn this_process_has_a_readable_stat() {
        let cpu = read_process(std::process::id()).unwrap();
        assert!(cpu.total_seconds() >= 0.0);
        assert!(read_process(u32::MAX).is_err());
    }

    #[test]
    fn machine_busy_share_counts_idle_and_iowait_as_idle() {
        let before =
            parse_machine_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(before.total_ticks, 1000);
        assert_eq!(before.busy_ticks, 200);
        let after = parse_machine_stat("cpu  250 0 150 800 100 0 0 0 0 0\n").unwrap();
        assert!((after.busy_share_since(&before) - 200.0 / 300.0).abs() < 1e-12);
        assert_eq!(after.busy_share_since(&after), 0.0);
        assert!(parse_machine_stat("intr 1 2 3").is_err());
    }

    #[test]
    fn cpu_per_gb() {
        assert_eq!(cpu_seconds_per_gb(3.0, 2_000_000_000), Some(1.5));
        assert_eq!(cpu_seconds_per_gb(3.0, 0), None);
    }
}
