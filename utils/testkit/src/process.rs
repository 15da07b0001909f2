// SPDX-License-Identifier: MPL-2.0
//! What this process costs, from `/proc/self`: the figures every benchmark
//! prints beside its own (CPU, threads, fds, RSS).

/// The process's resources at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User + system CPU time since the process started.
    pub cpu_seconds: f64,
    pub rss_kb: u64,
    pub threads: u64,
    pub fds: u64,
    pub at: std::time::Instant,
}

impl Usage {
    pub fn now() -> Usage {
        Usage {
            cpu_seconds: cpu_seconds(),
            rss_kb: status("VmRSS:"),
            threads: status("Threads:"),
            fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            at: std::time::Instant::now(),
        }
    }

    /// CPU used since `earlier`, as a share (%) of all cores over the time
    /// between the two.
    pub fn cpu_share_since(&self, earlier: &Usage) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        100.0 * (self.cpu_seconds - earlier.cpu_seconds) / wall.max(1e-9) / cores()
    }
}

/// Says on stderr that a benchmark's measuring window starts, when
/// `BENCH_SAY_WINDOW` is set, so a profiler can be attached for it alone.
pub fn say_window_starts() {
    if std::env::var_os("BENCH_SAY_WINDOW").is_some() {
        eprintln!("window starts (pid {})", std::process::id());
    }
}

/// Waits (at most 5 s) for the threads of what was torn down to end, so
/// the next setup's figures per call start from rest.
pub fn settle() {
    let mut last = Usage::now().threads;
    let mut steady = 0;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = Usage::now().threads;
        steady = if now == last { steady + 1 } else { 0 };
        if steady >= 3 {
            return;
        }
        last = now;
    }
}

/// The cores this process may run on.
pub fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// User + system CPU time of this process, in seconds.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which may hold spaces and parentheses.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

/// The unit of `/proc`'s CPU times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// A `kB` or count field of `/proc/self/status`.
fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Both cores kept busy by other work while it lives, for tests of what a
/// loaded machine must still guarantee.
pub struct CpuLoad(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl CpuLoad {
    pub fn start() -> CpuLoad {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let burners = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuLoad(stop, burners)
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        self.1.drain(..).for_each(|b| b.join().unwrap());
    }
}
