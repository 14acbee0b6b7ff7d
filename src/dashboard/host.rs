//! Host figures for `/metrics/realtime`, sampled in the background from `/proc` and `statvfs`
//! (never on a request): CPU busy percent since the previous sample, memory, the disk that holds
//! the state (or `/`), and the load average.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::HostMetrics;

/// CPU time counters from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Busy percent between two samples.
fn cpu_percent(before: CpuTimes, after: CpuTimes) -> f64 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
}

/// `(used, total)` bytes of memory from `/proc/meminfo` (used = total - available).
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:").or_else(|| field("MemFree:"))?;
    Some((total.saturating_sub(available), total))
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `(used, total)` bytes of the filesystem holding `path`.
fn disk(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    let total = s.blocks() as u64 * frag;
    let free = s.blocks_free() as u64 * frag;
    Some((total.saturating_sub(free), total))
}

/// Samples the host every `interval` into a shared cell the dashboard reads.
pub struct HostSampler {
    disk_path: PathBuf,
    last_cpu: Option<CpuTimes>,
    cell: Arc<RwLock<Option<HostMetrics>>>,
}

impl HostSampler {
    pub(super) fn new(disk_path: PathBuf, cell: Arc<RwLock<Option<HostMetrics>>>) -> HostSampler {
        HostSampler {
            disk_path,
            last_cpu: None,
            cell,
        }
    }

    /// Takes one sample and stores it. The first sample has no CPU figure yet (it needs two).
    pub fn sample(&mut self) {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpu = parse_cpu(&read("/proc/stat"));
        let cpu_percent = match (self.last_cpu, cpu) {
            (Some(before), Some(after)) => Some(cpu_percent(before, after)),
            _ => None,
        };
        self.last_cpu = cpu;
        let (memory_used_bytes, memory_total_bytes) =
            parse_meminfo(&read("/proc/meminfo")).unwrap_or_default();
        let (disk_used_bytes, disk_total_bytes) = disk(&self.disk_path).unwrap_or_default();
        let sample = HostMetrics {
            cpu_percent,
            memory_used_bytes,
            memory_total_bytes,
            disk_used_bytes,
            disk_total_bytes,
            disk_path: self.disk_path.display().to_string(),
            load_average: parse_loadavg(&read("/proc/loadavg")).unwrap_or_default(),
            sampled_at: k8s_openapi::jiff::Timestamp::now().to_string(),
        };
        if let Ok(mut cell) = self.cell.write() {
            *cell = Some(sample);
        }
    }

    /// Samples forever, every `interval` (run it as a task; it ends with the runtime).
    pub async fn run(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let a = parse_cpu("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("cpu");
        let b = parse_cpu("cpu  200 0 100 850 50 0 0 0 0 0\n").expect("cpu");
        assert_eq!(
            a,
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        // 100 busy ticks of 200 between them: 75 %.
        assert!((cpu_percent(a, b) - 75.0).abs() < 1e-9);
        assert_eq!(cpu_percent(b, b), 0.0);
        assert_eq!(parse_cpu("intr 1 2 3"), None);

        let mem = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(parse_meminfo(mem), Some((600 * 1024, 1000 * 1024)));
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 1/123 4567"),
            Some([0.5, 1.25, 2.0])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn a_real_sample_has_plausible_figures() {
        let cell = Arc::new(RwLock::new(None));
        let mut sampler = HostSampler::new(PathBuf::from("/"), cell.clone());
        sampler.sample();
        sampler.sample();
        let s = cell.read().expect("cell").clone().expect("a sample");
        assert!(s.memory_total_bytes > 0 && s.memory_used_bytes <= s.memory_total_bytes);
        assert!(s.disk_total_bytes > 0 && s.disk_used_bytes <= s.disk_total_bytes);
        let cpu = s.cpu_percent.expect("the second sample has a CPU figure");
        assert!((0.0..=100.0).contains(&cpu));
    }
}
