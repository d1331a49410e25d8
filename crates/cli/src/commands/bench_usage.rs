//! What `tandem bench` accounts each process for in each phase, per message: the CPU time and
//! the bytes written to storage of every node process it started (the active first, then
//! the passives) and of its own clients. Throughput alone hides where a machine's cores and
//! its disk go; with a replica set on one machine, every node's share and the clients' count
//! against the same cores and the same disk, and the passives' share is what each extra
//! replica costs.
//!
//! Read from `/proc/PID/stat` (user and system time of every thread of a process) and
//! `/proc/PID/io` (`write_bytes`: the pages a process dirtied for the storage layer, so a
//! WAL frame that dirties a page counts the page), so there are figures on Linux only, and
//! none for a `--target` node (its process is not ours). Bytes are left out, and the CPU
//! figures kept, where the kernel does not account I/O per process.

use std::time::Duration;

/// Who spent the CPU time and wrote the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessRole {
    /// The node the benchmark's clients talk to (the only one without `--nodes`).
    Active,
    /// A node that replicates and applies every entry without serving the clients.
    Passive,
    /// The benchmark's own process: its publishers and consumers.
    Clients,
}

impl ProcessRole {
    fn label(self) -> &'static str {
        match self {
            ProcessRole::Active => "active",
            ProcessRole::Passive => "passive",
            ProcessRole::Clients => "clients",
        }
    }
}

/// What one process spent per message in each phase.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UsagePerMessage {
    pub role: ProcessRole,
    pub publish_us_per_message: f64,
    pub end_to_end_us_per_message: f64,
    /// `None` where the kernel does not account bytes written per process.
    pub publish_bytes_written_per_message: Option<f64>,
    pub end_to_end_bytes_written_per_message: Option<f64>,
}

/// The processes one run accounts for.
pub struct UsageAccount {
    processes: Vec<(ProcessRole, u32)>,
}

/// One process's totals so far.
#[derive(Clone, Copy, Debug)]
struct ProcessUsage {
    cpu: Duration,
    bytes_written: Option<u64>,
}

/// Each process's totals so far, in the account's order; `None` where they could not be
/// read.
pub struct UsageReading(Vec<Option<ProcessUsage>>);

impl UsageAccount {
    /// The nodes by process id, the active's first, and this process for the clients.
    pub fn new(active: u32, passives: impl IntoIterator<Item = u32>) -> UsageAccount {
        let mut processes = vec![(ProcessRole::Active, active)];
        processes.extend(passives.into_iter().map(|pid| (ProcessRole::Passive, pid)));
        processes.push((ProcessRole::Clients, std::process::id()));
        UsageAccount { processes }
    }

    /// No processes: a `--target` node is not ours, and without it the clients' share
    /// means nothing.
    pub fn nothing() -> UsageAccount {
        UsageAccount {
            processes: Vec::new(),
        }
    }

    pub fn read(&self) -> UsageReading {
        UsageReading(
            self.processes
                .iter()
                .map(|&(_, pid)| process_usage(pid))
                .collect(),
        )
    }

    /// What each process spent per message in the publish phase (from `start` to
    /// `published`) and in the end-to-end phase (from `published` to `finished`); empty when
    /// any reading is missing.
    pub fn per_message(
        &self,
        [start, published, finished]: [&UsageReading; 3],
        messages: usize,
    ) -> Vec<UsagePerMessage> {
        let messages = messages.max(1) as f64;
        let cpu = |from: ProcessUsage, to: ProcessUsage| {
            to.cpu.saturating_sub(from.cpu).as_secs_f64() * 1e6 / messages
        };
        let bytes = |from: ProcessUsage, to: ProcessUsage| {
            let written = to.bytes_written?.saturating_sub(from.bytes_written?);
            Some(written as f64 / messages)
        };
        let mut figures = Vec::new();
        for (index, &(role, _)) in self.processes.iter().enumerate() {
            let readings = (start.0[index], published.0[index], finished.0[index]);
            let (Some(start), Some(published), Some(finished)) = readings else {
                return Vec::new();
            };
            figures.push(UsagePerMessage {
                role,
                publish_us_per_message: cpu(start, published),
                end_to_end_us_per_message: cpu(published, finished),
                publish_bytes_written_per_message: bytes(start, published),
                end_to_end_bytes_written_per_message: bytes(published, finished),
            });
        }
        figures
    }
}

/// The median of every figure over several runs' accounts, process by process; empty unless
/// every run accounted for the same processes. A byte figure missing from any run is
/// missing from the median.
pub fn median_usage(runs: &[&[UsagePerMessage]]) -> Vec<UsagePerMessage> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let same_processes = runs.iter().all(|run| {
        run.len() == first.len() && run.iter().zip(*first).all(|(a, b)| a.role == b.role)
    });
    if !same_processes {
        return Vec::new();
    }
    let median_of = |index: usize, field: fn(&UsagePerMessage) -> f64| {
        super::bench::median(runs.iter().map(|run| field(&run[index])).collect())
    };
    let median_of_bytes = |index: usize, field: fn(&UsagePerMessage) -> Option<f64>| {
        let values: Option<Vec<f64>> = runs.iter().map(|run| field(&run[index])).collect();
        values.map(super::bench::median)
    };
    first
        .iter()
        .enumerate()
        .map(|(index, process)| UsagePerMessage {
            role: process.role,
            publish_us_per_message: median_of(index, |figure| figure.publish_us_per_message),
            end_to_end_us_per_message: median_of(index, |figure| figure.end_to_end_us_per_message),
            publish_bytes_written_per_message: median_of_bytes(index, |figure| {
                figure.publish_bytes_written_per_message
            }),
            end_to_end_bytes_written_per_message: median_of_bytes(index, |figure| {
                figure.end_to_end_bytes_written_per_message
            }),
        })
        .collect()
}

/// The report's lines: the CPU time of each process, then the nodes' total when there are
/// several; then the same for the bytes the nodes wrote, where they were accounted (the
/// clients write nothing to disk).
pub fn usage_lines(figures: &[UsagePerMessage]) -> Vec<String> {
    let cpu_rows = figures
        .iter()
        .map(|figure| {
            (
                figure.role,
                figure.publish_us_per_message,
                figure.end_to_end_us_per_message,
            )
        })
        .collect();
    let mut lines = table("CPU per message :", Some(cpu_rows), |value| {
        format!("{value:>6.1} µs")
    });
    let byte_rows = figures
        .iter()
        .filter(|figure| figure.role != ProcessRole::Clients)
        .map(|figure| {
            Some((
                figure.role,
                figure.publish_bytes_written_per_message?,
                figure.end_to_end_bytes_written_per_message?,
            ))
        })
        .collect();
    lines.extend(table("Disk per message:", byte_rows, |bytes| {
        format!("{:>6.1} KiB", bytes / 1024.0)
    }));
    lines
}

/// One line per process and a line for all nodes together when there are several; no lines
/// when any process's figures are missing.
fn table(
    heading: &str,
    rows: Option<Vec<(ProcessRole, f64, f64)>>,
    unit: impl Fn(f64) -> String,
) -> Vec<String> {
    let Some(rows) = rows else {
        return Vec::new();
    };
    let mut labelled: Vec<(&str, f64, f64)> = rows
        .iter()
        .map(|&(role, publish, end_to_end)| (role.label(), publish, end_to_end))
        .collect();
    let nodes: Vec<&(ProcessRole, f64, f64)> = rows
        .iter()
        .filter(|(role, ..)| *role != ProcessRole::Clients)
        .collect();
    if nodes.len() > 1 {
        labelled.push((
            "all nodes",
            nodes.iter().map(|(_, publish, _)| publish).sum(),
            nodes.iter().map(|(_, _, end_to_end)| end_to_end).sum(),
        ));
    }
    labelled
        .iter()
        .enumerate()
        .map(|(index, &(label, publish, end_to_end))| {
            let heading = if index == 0 { heading } else { "" };
            format!(
                "{heading:<17} {label:<9} durable publish {}, end to end {}",
                unit(publish),
                unit(end_to_end)
            )
        })
        .collect()
}

/// The CPU time and bytes written of process `pid` so far; `None` when its CPU time cannot
/// be read.
fn process_usage(pid: u32) -> Option<ProcessUsage> {
    Some(ProcessUsage {
        cpu: process_cpu_time(pid)?,
        bytes_written: process_bytes_written(pid),
    })
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

/// The bytes every thread of process `pid` has sent to the storage layer so far.
#[cfg(target_os = "linux")]
fn process_bytes_written(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    bytes_written(&io)
}

#[cfg(not(target_os = "linux"))]
fn process_bytes_written(_pid: u32) -> Option<u64> {
    None
}

/// `write_bytes` from a `/proc/PID/io` text (`wchar`, by contrast, counts every `write`
/// call, page cache or not, and sockets too).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn bytes_written(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes:"))
        .and_then(|value| value.trim().parse().ok())
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
    use std::io::Write;

    use super::*;

    #[test]
    fn cpu_ticks_are_counted_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tandem (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 2000000 500";
        assert_eq!(cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(cpu_ticks("4242 (tandem) S 1"), None);
    }

    #[test]
    fn bytes_written_are_read_from_their_own_line() {
        let io = "rchar: 100\nwchar: 9000\nsyscr: 3\nsyscw: 4\nread_bytes: 0\n\
                  write_bytes: 8192\ncancelled_write_bytes: 4096\n";
        assert_eq!(bytes_written(io), Some(8192));
        assert_eq!(bytes_written("rchar: 100\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_cpu_time_grows_while_it_computes() {
        let account = UsageAccount::new(std::process::id(), []);
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

    /// Bytes reach the account when they are written and fsynced, not when they are read
    /// back (where the kernel accounts I/O per process at all).
    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_bytes_written_grow_with_a_synced_file() {
        let account = UsageAccount::new(std::process::id(), []);
        let before = account.read();
        if before.0[0].and_then(|usage| usage.bytes_written).is_none() {
            eprintln!("this kernel does not account bytes written per process");
            return;
        }
        let directory = tempfile::tempdir().expect("a temporary directory");
        let mut file = std::fs::File::create(directory.path().join("written")).expect("a file");
        file.write_all(&vec![7_u8; 256 * 1024]).expect("written");
        file.sync_all().expect("synced");
        let after = account.read();
        let figures = account.per_message([&before, &after, &after], 1);
        let written = figures[1]
            .publish_bytes_written_per_message
            .expect("accounted, as before");
        assert!(written >= 256.0 * 1024.0, "256 KiB written: {figures:?}");
        assert_eq!(figures[1].end_to_end_bytes_written_per_message, Some(0.0));
    }

    fn usage(role: ProcessRole, publish: f64, bytes: Option<f64>) -> UsagePerMessage {
        UsagePerMessage {
            role,
            publish_us_per_message: publish,
            end_to_end_us_per_message: 2.0 * publish,
            publish_bytes_written_per_message: bytes,
            end_to_end_bytes_written_per_message: bytes.map(|bytes| 2.0 * bytes),
        }
    }

    #[test]
    fn medians_are_taken_process_by_process() {
        let run = |publish: f64| {
            vec![
                usage(ProcessRole::Active, publish, Some(100.0 * publish)),
                usage(ProcessRole::Clients, 1.0, Some(0.0)),
            ]
        };
        let runs = [run(10.0), run(30.0), run(20.0)];
        let median = median_usage(&runs.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(median[0].publish_us_per_message, 20.0);
        assert_eq!(median[0].end_to_end_us_per_message, 40.0);
        assert_eq!(median[0].publish_bytes_written_per_message, Some(2000.0));
        assert_eq!(median[0].end_to_end_bytes_written_per_message, Some(4000.0));
        assert_eq!(median[1].role, ProcessRole::Clients);
        let other_layout = [run(10.0), run(10.0)[..1].to_vec()];
        let refs: Vec<&[UsagePerMessage]> = other_layout.iter().map(Vec::as_slice).collect();
        assert!(median_usage(&refs).is_empty(), "runs of different layouts");
        let one_run_without_bytes = [run(10.0), vec![usage(ProcessRole::Active, 30.0, None)]];
        let refs: Vec<&[UsagePerMessage]> =
            one_run_without_bytes.iter().map(|run| &run[..1]).collect();
        let median = median_usage(&refs);
        assert_eq!(median[0].publish_us_per_message, 20.0);
        assert_eq!(median[0].publish_bytes_written_per_message, None);
    }

    #[test]
    fn lines_total_the_nodes_and_leave_out_bytes_not_accounted() {
        let figures = [
            usage(ProcessRole::Active, 20.0, Some(6144.0)),
            usage(ProcessRole::Passive, 15.0, Some(5120.0)),
            usage(ProcessRole::Clients, 2.0, Some(0.0)),
        ];
        let lines = usage_lines(&figures);
        assert_eq!(lines.len(), 7, "no disk line for the clients: {lines:#?}");
        assert!(
            lines[0].starts_with("CPU per message : active "),
            "{lines:#?}"
        );
        assert!(
            lines[3].contains("all nodes durable publish   35.0 µs, end to end   70.0 µs"),
            "{lines:#?}"
        );
        assert!(
            lines[4].starts_with("Disk per message: active    durable publish    6.0 KiB"),
            "{lines:#?}"
        );
        assert!(
            lines[6].contains("all nodes durable publish   11.0 KiB, end to end   22.0 KiB"),
            "{lines:#?}"
        );
        let without_bytes = [
            usage(ProcessRole::Active, 20.0, Some(6144.0)),
            usage(ProcessRole::Passive, 15.0, None),
            usage(ProcessRole::Clients, 2.0, Some(0.0)),
        ];
        assert_eq!(usage_lines(&without_bytes).len(), 4, "CPU lines only");
    }
}
