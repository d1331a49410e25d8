//! One simulation run: builds the turmoil world (nodes, clients, links), drives it step by
//! step while the nemesis applies and heals its faults, then checks the clients' history
//! against the active's inventory with the same checker as `tandem chaos`.
//!
//! Everything runs on the calling thread, and everything that could vary between two runs
//! is fixed by the seed: turmoil's network, the election timeouts, the fault schedule, the
//! clock (simulated, from a fixed epoch) and the order in which tasks run. So a seed
//! replays exactly, and two runs of a seed write the same history.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tandem_chaos::history::{self, History, HistoryReport};
use tandem_protocol::v1;

use crate::faults::{self, Step};
use crate::node::{self, NodePlan};
use crate::wire::{Inventory, node_name};
use crate::workload::{self, Inventories, Shared};

/// The simulated clock starts here (2026-01-01), whatever the real date.
const EPOCH_SECONDS: u64 = 1_767_225_600;
/// turmoil advances every host by this much per step.
const TICK: Duration = Duration::from_millis(1);
/// A message on a healthy link takes up to this long.
const NORMAL_MAX_LATENCY: Duration = Duration::from_millis(4);
/// After the faults stop, consumers drain the queue for this long.
const DRAIN: Duration = Duration::from_secs(10);
/// A run that has not finished this long after the faults stopped has hung (the checker
/// waits up to 150 s for the replicas to agree).
const RUN_LIMIT_AFTER_FAULTS: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub nodes: u64,
    /// How long faults are applied, in simulated time.
    pub fault_duration: Duration,
    pub publishers: usize,
    pub consumers: usize,
    pub batch_size: usize,
    /// Where the nodes' data and `history.jsonl` go; a temporary directory when `None`.
    pub out_dir: Option<PathBuf>,
}

impl SimOptions {
    pub fn new(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes: 3,
            fault_duration: Duration::from_secs(20),
            publishers: 2,
            consumers: 2,
            batch_size: 8,
            out_dir: None,
        }
    }
}

pub struct SimReport {
    pub seed: u64,
    pub steps: Vec<Step>,
    pub history: HistoryReport,
    /// Set when the replicas did not come to store the same messages after the faults.
    pub divergence: Option<String>,
    /// How long after the drain the replicas agreed.
    pub agreed_after: Option<Duration>,
    /// The history, one operation per line; equal for two runs of one seed.
    pub history_jsonl: String,
    pub simulated: Duration,
}

impl SimReport {
    pub fn passed(&self) -> bool {
        self.violations().is_empty()
    }

    /// The history checker's violations, and the replicas' divergence if any.
    pub fn violations(&self) -> Vec<String> {
        let mut violations = self.history.violations();
        violations.extend(self.divergence.clone());
        violations
    }
}

/// Runs one seed to the end and checks its history.
pub fn run(options: &SimOptions) -> Result<SimReport, String> {
    let scratch = scratch_directory()?;
    let root = match &options.out_dir {
        Some(out_dir) => fresh_directory(out_dir)?,
        None => scratch.path().to_path_buf(),
    };
    tandem_cluster::runtime::seed_election_timers_on_this_thread(options.seed);
    tandem_cluster::clock::simulate_wall_clock_on_this_thread(simulated_clock_ms);
    let steps = faults::schedule(options.seed, options.nodes, options.fault_duration);
    let shared = Shared {
        history: Arc::new(History::with_clock(simulated_clock_ms)),
        stop_publishing: Rc::new(Cell::new(false)),
        stop_consuming: Rc::new(Cell::new(false)),
        node_count: options.nodes,
    };
    let inventory = Rc::new(RefCell::new(None));
    let mut sim = build_world(options, &root, &shared, &inventory)?;
    let hosts = host_names(options);
    drive(&mut sim, options, &steps, &hosts, &shared)?;
    let simulated = sim.elapsed();
    drop(sim);
    let inventories = inventory
        .take()
        .ok_or("the checker finished without an inventory")?;
    let active = inventories
        .active()
        .cloned()
        .ok_or("no node answered as the active at the end")?;
    let divergence = inventories
        .agreed_after
        .is_none()
        .then(|| describe_divergence(&inventories));
    let report = check(&shared.history, active);
    let history_jsonl = history_lines(&shared.history, &root)?;
    Ok(SimReport {
        seed: options.seed,
        steps,
        history: report,
        divergence,
        agreed_after: inventories.agreed_after,
        history_jsonl,
        simulated,
    })
}

fn build_world<'a>(
    options: &SimOptions,
    root: &Path,
    shared: &Shared,
    inventory: &Rc<RefCell<Option<Inventories>>>,
) -> Result<turmoil::Sim<'a>, String> {
    let run_limit = options.fault_duration + DRAIN + RUN_LIMIT_AFTER_FAULTS;
    let mut sim = turmoil::Builder::new()
        .rng_seed(options.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECONDS))
        .simulation_duration(run_limit)
        .tick_duration(TICK)
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(NORMAL_MAX_LATENCY)
        .build();
    for node_id in 1..=options.nodes {
        let plan = NodePlan {
            node_id,
            node_count: options.nodes,
            data_dir: root.join(node_name(node_id)),
        };
        std::fs::create_dir_all(&plan.data_dir)
            .map_err(|error| format!("cannot create {}: {error}", plan.data_dir.display()))?;
        sim.host(node_name(node_id), move || node::run(plan.clone()));
    }
    sim.client("route", workload::declare_route(shared.clone()));
    for publisher in 1..=options.publishers {
        let prefix = format!("s{}-p{publisher}", options.seed);
        let client = workload::publish(shared.clone(), prefix, options.batch_size);
        sim.client(format!("publisher{publisher}"), client);
    }
    for consumer in 1..=options.consumers {
        let client = workload::consume(shared.clone(), format!("consumer{consumer}"));
        sim.client(format!("consumer{consumer}"), client);
    }
    let (checker_shared, taken) = (shared.clone(), inventory.clone());
    sim.client("checker", async move {
        while !checker_shared.stop_consuming.get() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let inventories = workload::take_inventories(checker_shared.node_count).await;
        taken.replace(Some(inventories));
        Ok(())
    });
    Ok(sim)
}

fn host_names(options: &SimOptions) -> Vec<String> {
    let nodes = (1..=options.nodes).map(node_name);
    let publishers = (1..=options.publishers).map(|n| format!("publisher{n}"));
    let consumers = (1..=options.consumers).map(|n| format!("consumer{n}"));
    nodes
        .chain(publishers)
        .chain(consumers)
        .chain(["route".to_string(), "checker".to_string()])
        .collect()
}

/// Steps the world until every client has finished, applying and healing faults on time.
fn drive(
    sim: &mut turmoil::Sim<'_>,
    options: &SimOptions,
    steps: &[Step],
    hosts: &[String],
    shared: &Shared,
) -> Result<(), String> {
    let mut next_fault = 0;
    let mut active: Option<Step> = None;
    loop {
        let now = sim.elapsed();
        if let Some(step) = active.filter(|step| step.healed_at <= now) {
            faults::heal(sim, step.fault, hosts, NORMAL_MAX_LATENCY);
            active = None;
        }
        if active.is_none() && steps.get(next_fault).is_some_and(|step| step.at <= now) {
            let step = steps[next_fault];
            faults::apply(sim, step.fault, hosts);
            active = Some(step);
            next_fault += 1;
        }
        if now >= options.fault_duration {
            shared.stop_publishing.set(true);
        }
        if now >= options.fault_duration + DRAIN {
            shared.stop_consuming.set(true);
        }
        let finished = sim
            .step()
            .map_err(|error| format!("seed {}: the simulation failed: {error}", options.seed))?;
        if finished {
            return Ok(());
        }
    }
}

fn describe_divergence(inventories: &Inventories) -> String {
    let counts: Vec<String> = inventories
        .answers
        .iter()
        .map(|answer| {
            let role = if answer.active { "active" } else { "passive" };
            format!(
                "node{} ({role}, term {}, log {}, applied {}) {} messages",
                answer.node_id,
                answer.term,
                answer.last_log_index,
                answer.applied_index,
                answer.message_ids.len()
            )
        })
        .collect();
    format!(
        "the replicas did not come to store the same messages: {}",
        counts.join(", ")
    )
}

fn check(history: &History, inventory: Inventory) -> HistoryReport {
    let remaining = inventory.message_ids.into_iter().collect();
    let failovers: Vec<v1::FailoverEvent> = inventory
        .failovers
        .into_iter()
        .map(|(term, at_ms)| v1::FailoverEvent {
            term,
            at_ms,
            ..v1::FailoverEvent::default()
        })
        .collect();
    history::check(history, &remaining, &failovers)
}

/// Writes `history.jsonl` under `root` and returns its text.
fn history_lines(history: &History, root: &Path) -> Result<String, String> {
    let path = root.join("history.jsonl");
    history
        .write_jsonl(&path)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    std::fs::read_to_string(&path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// The simulated time, on the simulated epoch, in ms. Outside a host (never while the
/// world runs) it answers the epoch itself.
fn simulated_clock_ms() -> i64 {
    let since_epoch = turmoil::since_epoch().unwrap_or(Duration::from_secs(EPOCH_SECONDS));
    since_epoch.as_millis() as i64
}

/// `directory`, which must be missing or empty: nodes that found an earlier run's data would
/// not replay the seed.
fn fresh_directory(directory: &Path) -> Result<PathBuf, String> {
    let in_use = std::fs::read_dir(directory).is_ok_and(|mut entries| entries.next().is_some());
    if in_use {
        return Err(format!(
            "{} is not empty: give a new directory, so that the nodes start with no data",
            directory.display()
        ));
    }
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    Ok(directory.to_path_buf())
}

/// A temporary directory for the nodes' data, in memory when the machine has /dev/shm:
/// fsync is real work on disk and nothing in a simulation needs it to reach the platter.
fn scratch_directory() -> Result<tempfile::TempDir, String> {
    let in_memory = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("tandem-sim-")
        .tempdir_in(in_memory);
    builder
        .or_else(|_| tempfile::Builder::new().prefix("tandem-sim-").tempdir())
        .map_err(|error| format!("cannot create a temporary directory: {error}"))
}
