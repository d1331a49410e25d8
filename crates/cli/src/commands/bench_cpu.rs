//! The CPU time `tandem bench` accounts for each phase: every node process it started (the
//! active first, then the passives) and its own clients, per message. Throughput alone hides
//! where a machine's cores go; with a replica set on one machine, every node's share and the
//! clients' count against the same cores, and the passives' share is what each extra replica
//! costs. Read from `/proc/PID/stat` (user and system time of every thread of a process), so
//! there are figures on Linux only, and none for a `--target` node (its process is not ours).

use std::time::Duration;

/// Who spent the CPU time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuRole {
    /// The node the benchmark's clients talk to (the only one without `--nodes`).
    Active,
    /// A node that replicates and applies every entry without serving the clients.
    Passive,
    /// The benchmark's own process: its publishers and consumers.
    Clients,
}

impl CpuRole {
    fn label(self) -> &'static str {
        match self {
            CpuRole::Active => "active",
            CpuRole::Passive => "passive",
            CpuRole::Clients => "clients",
        }
    }
}

/// One process's CPU time per message in each phase, in microseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuPerMessage {
    pub role: CpuRole,
    pub publish_us_per_message: f64,
    pub end_to_end_us_per_message: f64,
}

/// The processes one run accounts for.
pub struct CpuAccount {
    processes: Vec<(CpuRole, u32)>,
}

/// Each process's CPU time so far, in the account's order; `None` where it could not be read.
pub struct CpuReading(Vec<Option<Duration>>);

impl CpuAccount {
    /// The nodes by process id, the active's first, and this process for the clients.
    pub fn new(active: u32, passives: impl IntoIterator<Item = u32>) -> CpuAccount {
        let mut processes = vec![(CpuRole::Active, active)];
        processes.extend(passives.into_iter().map(|pid| (CpuRole::Passive, pid)));
        processes.push((CpuRole::Clients, std::process::id()));
        CpuAccount { processes }
    }

    /// No processes: a `--target` node is not ours, and without it the clients' share
    /// means nothing.
    pub fn nothing() -> CpuAccount {
        CpuAccount {
            processes: Vec::new(),
        }
    }

    pub fn read(&self) -> CpuReading {
        CpuReading(
            self.processes
                .iter()
                .map(|&(_, pid)| process_cpu_time(pid))
                .collect(),
        )
    }

    /// What each process spent per message in the publish phase (from `start` to
    /// `published`) and in the end-to-end phase (from `published` to `finished`); empty when
    /// any reading is missing.
    pub fn per_message(
        &self,
        [start, published, finished]: [&CpuReading; 3],
        messages: usize,
    ) -> Vec<CpuPerMessage> {
        let per_message = |from: Duration, to: Duration| {
            to.saturating_sub(from).as_secs_f64() * 1e6 / messages.max(1) as f64
        };
        let mut figures = Vec::new();
        for (index, &(role, _)) in self.processes.iter().enumerate() {
            let readings = (start.0[index], published.0[index], finished.0[index]);
            let (Some(start), Some(published), Some(finished)) = readings else {
                return Vec::new();
            };
            figures.push(CpuPerMessage {
                role,
                publish_us_per_message: per_message(start, published),
                end_to_end_us_per_message: per_message(published, finished),
            });
        }
        figures
    }
}

/// The median of every figure over several runs' accounts, process by process; empty unless
/// every run accounted for the same processes.
pub fn median_cpu(runs: &[&[CpuPerMessage]]) -> Vec<CpuPerMessage> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let same_processes = runs.iter().all(|run| {
        run.len() == first.len() && run.iter().zip(*first).all(|(a, b)| a.role == b.role)
    });
    if !same_processes {
        return Vec::new();
    }
    let median_of = |index: usize, field: fn(&CpuPerMessage) -> f64| {
        super::bench::median(runs.iter().map(|run| field(&run[index])).collect())
    };
    first
        .iter()
        .enumerate()
        .map(|(index, process)| CpuPerMessage {
            role: process.role,
            publish_us_per_message: median_of(index, |figure| figure.publish_us_per_message),
            end_to_end_us_per_message: median_of(index, |figure| figure.end_to_end_us_per_message),
        })
        .collect()
}

/// The report's lines: one per process, then the nodes' total when there are several.
pub fn cpu_lines(figures: &[CpuPerMessage]) -> Vec<String> {
    let mut rows: Vec<(&str, f64, f64)> = figures
        .iter()
        .map(|figure| {
            (
                figure.role.label(),
                figure.publish_us_per_message,
                figure.end_to_end_us_per_message,
            )
        })
        .collect();
    let nodes: Vec<&CpuPerMessage> = figures
        .iter()
        .filter(|figure| figure.role != CpuRole::Clients)
        .collect();
    if nodes.len() > 1 {
        let total = |field: fn(&CpuPerMessage) -> f64| nodes.iter().map(|&n| field(n)).sum::<f64>();
        rows.push((
            "all nodes",
            total(|figure| figure.publish_us_per_message),
            total(|figure| figure.end_to_end_us_per_message),
        ));
    }
    rows.iter()
        .enumerate()
        .map(|(index, (label, publish, end_to_end))| {
            let heading = if index == 0 { "CPU per message :" } else { "" };
            format!(
                "{heading:<17} {label:<9} durable publish {publish:>6.1} µs, end to end \
                 {end_to_end:>6.1} µs"
            )
        })
        .collect()
}

/// User plus system time of every thread of process `pid` so far.
#[cfg(target_os = "linux")]
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks(&stat)?;
    // SAFETY: sysconf only reads its integer argument.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks_per_second = u64::try_from(ticks_per_second).ok().filter(|&hz| hz > 0)?;
    Some(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second as f64,
    ))
}

#[cfg(not(target_os = "linux"))]
fn process_cpu_time(_pid: u32) -> Option<Duration> {
    None
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces, so the fields are counted from its closing one:
/// `state` is the first after it, `utime` and `stime` the twelfth and thirteenth.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tandem (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 2000000 500";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("4242 (tandem) S 1"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_cpu_time_grows_while_it_computes() {
        let account = CpuAccount::new(std::process::id(), []);
        let before = account.read();
        let started = std::time::Instant::now();
        let mut spin = 0_u64;
        while started.elapsed() < Duration::from_millis(200) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let after = account.read();
        let figures = account.per_message([&before, &before, &after], 1);
        assert_eq!(figures.len(), 2, "the active and the clients");
        assert!(
            figures[1].end_to_end_us_per_message > 0.0,
            "200 ms of spinning shows: {figures:?}"
        );
        assert_eq!(figures[1].publish_us_per_message, 0.0);
    }

    #[test]
    fn medians_are_taken_process_by_process() {
        let run = |publish: f64| {
            vec![
                CpuPerMessage {
                    role: CpuRole::Active,
                    publish_us_per_message: publish,
                    end_to_end_us_per_message: 2.0 * publish,
                },
                CpuPerMessage {
                    role: CpuRole::Clients,
                    publish_us_per_message: 1.0,
                    end_to_end_us_per_message: 1.0,
                },
            ]
        };
        let runs = [run(10.0), run(30.0), run(20.0)];
        let median = median_cpu(&runs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(median[0].publish_us_per_message, 20.0);
        assert_eq!(median[0].end_to_end_us_per_message, 40.0);
        assert_eq!(median[1].role, CpuRole::Clients);
        let other_layout = [run(10.0), run(10.0)[..1].to_vec()];
        let refs: Vec<&[CpuPerMessage]> = other_layout.iter().map(Vec::as_slice).collect();
        assert!(median_cpu(&refs).is_empty(), "runs of different layouts");
    }
}
