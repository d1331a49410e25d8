//! The nemesis: a seeded random schedule of faults, and how each is applied to and healed
//! in a [`ChaosCluster`].
//!
//! The schedule is a pure function of the seed and the run's length ([`schedule`]), so a
//! seed names a run. Which node a fault hits is decided when it is applied ("the active",
//! "a passive"), because that depends on what the cluster did before.

use std::fmt;
use std::time::Duration;

use crate::cluster::ChaosCluster;
use crate::proxy::Direction;

/// The kinds of fault, by name (for `--faults`).
pub const FAULT_KINDS: [&str; 8] = [
    "kill",
    "pause",
    "partition",
    "one-way",
    "delay",
    "drop",
    "client-cut",
    "switchover",
];

/// Which node a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Whichever node is active when the fault starts.
    Active,
    /// The `n`-th passive (modulo their number) when the fault starts.
    Passive(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, restarted when the fault ends.
    Kill(Target),
    /// SIGSTOP, SIGCONT when the fault ends.
    Pause(Target),
    /// Every replication link to and from the node cut.
    Partition(Target),
    /// The node's replication traffic to one peer cut, the other way flowing.
    OneWayCut(Target, Direction),
    /// Every replication link of the node slowed by this much per chunk.
    Delay(Target, Duration),
    /// Every connection of the node (replication and clients) reset at once.
    DropConnections(Target),
    /// Clients cut off from the node (the replica set itself unharmed).
    ClientCut(Target),
    /// A planned switchover to a passive.
    Switchover(Target),
}

impl Fault {
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Pause(_) => "pause",
            Fault::Partition(_) => "partition",
            Fault::OneWayCut(..) => "one-way",
            Fault::Delay(..) => "delay",
            Fault::DropConnections(_) => "drop",
            Fault::ClientCut(_) => "client-cut",
            Fault::Switchover(_) => "switchover",
        }
    }

    pub fn target(&self) -> Target {
        match *self {
            Fault::Kill(target)
            | Fault::Pause(target)
            | Fault::Partition(target)
            | Fault::OneWayCut(target, _)
            | Fault::Delay(target, _)
            | Fault::DropConnections(target)
            | Fault::ClientCut(target)
            | Fault::Switchover(target) => target,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target() {
            Target::Active => "the active".to_string(),
            Target::Passive(_) => "a passive".to_string(),
        };
        match self {
            Fault::OneWayCut(_, Direction::ToTarget) => {
                write!(formatter, "one-way cut of {target}'s outbound replication")
            }
            Fault::OneWayCut(_, Direction::FromTarget) => {
                write!(
                    formatter,
                    "one-way cut of {target}'s inbound replication answers"
                )
            }
            Fault::Delay(_, delay) => {
                write!(formatter, "delay {} ms on {target}", delay.as_millis())
            }
            other => write!(formatter, "{} {target}", other.kind()),
        }
    }
}

/// One step of the schedule: after `pause`, apply `fault` and hold it for `hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub pause: Duration,
    pub fault: Fault,
    pub hold: Duration,
}

/// The steps for a run of `length` from `seed`, with faults of the `allowed` kinds.
pub fn schedule(seed: u64, length: Duration, allowed: &[&str]) -> Vec<Step> {
    let mut random = SplitMix64(seed);
    let mut steps = Vec::new();
    let mut planned = Duration::ZERO;
    let kinds: Vec<&str> = FAULT_KINDS
        .iter()
        .copied()
        .filter(|kind| allowed.contains(kind))
        .collect();
    if kinds.is_empty() {
        return steps;
    }
    loop {
        let pause = Duration::from_millis(random.between(300, 1_500));
        let hold = Duration::from_millis(random.between(200, 2_500));
        if planned + pause + hold > length {
            return steps;
        }
        planned += pause + hold;
        let kind = kinds[random.below(kinds.len() as u64) as usize];
        let target = if random.below(2) == 0 {
            Target::Active
        } else {
            Target::Passive(random.below(8) as usize)
        };
        let fault = match kind {
            "kill" => Fault::Kill(target),
            "pause" => Fault::Pause(target),
            "partition" => Fault::Partition(target),
            "one-way" => {
                let direction = if random.below(2) == 0 {
                    Direction::ToTarget
                } else {
                    Direction::FromTarget
                };
                Fault::OneWayCut(target, direction)
            }
            "delay" => Fault::Delay(target, Duration::from_millis(random.between(5, 120))),
            "drop" => Fault::DropConnections(target),
            "client-cut" => Fault::ClientCut(target),
            _ => Fault::Switchover(Target::Passive(random.below(8) as usize)),
        };
        steps.push(Step { pause, fault, hold });
    }
}

/// The node a target names now; None when there is no such node (no active known).
pub async fn resolve(cluster: &ChaosCluster, target: Target) -> Option<u64> {
    let active = cluster.active().await?.node_id;
    match target {
        Target::Active => Some(active),
        Target::Passive(index) => {
            let passives: Vec<u64> = cluster
                .node_ids()
                .into_iter()
                .filter(|&node_id| node_id != active && cluster.is_running(node_id))
                .collect();
            (!passives.is_empty()).then(|| passives[index % passives.len()])
        }
    }
}

/// Applies `fault` to `node`; what it did, for the log.
pub async fn apply(cluster: &mut ChaosCluster, fault: Fault, node: u64) -> Result<String, String> {
    match fault {
        Fault::Kill(_) => cluster.kill(node),
        Fault::Pause(_) => cluster.pause(node),
        Fault::Partition(_) => {
            for link in cluster
                .links()
                .iter()
                .filter(|link| link.from == node || link.to == node)
            {
                link.proxy.cut();
            }
        }
        Fault::OneWayCut(_, direction) => {
            for link in cluster.links().iter().filter(|link| link.from == node) {
                link.proxy.cut_one_way(direction);
            }
        }
        Fault::Delay(_, delay) => {
            for link in cluster
                .links()
                .iter()
                .filter(|link| link.from == node || link.to == node)
            {
                link.proxy.delay(delay);
            }
        }
        Fault::DropConnections(_) => {
            for link in cluster
                .links()
                .iter()
                .filter(|link| link.from == node || link.to == node)
            {
                link.proxy.drop_connections();
            }
            cluster.client_link(node).drop_connections();
        }
        Fault::ClientCut(_) => cluster.client_link(node).cut(),
        Fault::Switchover(_) => {
            let chosen = cluster.switchover(node).await?;
            return Ok(format!("switchover to node {chosen}"));
        }
    }
    Ok(format!("{fault} (node {node})"))
}

/// Ends every fault: links healed, paused nodes resumed, killed nodes restarted.
pub fn heal(cluster: &mut ChaosCluster) -> Result<(), String> {
    cluster.heal_everything()
}

/// SplitMix64: a tiny, well-mixed generator, so a seed gives the same schedule everywhere
/// (here and in the deterministic simulation's nemesis).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound` (`0` when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule() {
        let length = Duration::from_secs(60);
        let first = schedule(42, length, &FAULT_KINDS);
        assert_eq!(first, schedule(42, length, &FAULT_KINDS));
        assert_ne!(first, schedule(43, length, &FAULT_KINDS));
        let planned: Duration = first.iter().map(|step| step.pause + step.hold).sum();
        assert!(planned <= length, "{planned:?}");
        assert!(
            first.len() >= 10,
            "a minute holds many faults: {}",
            first.len()
        );
    }

    #[test]
    fn only_the_allowed_kinds_are_scheduled() {
        let steps = schedule(7, Duration::from_secs(60), &["kill", "pause"]);
        assert!(!steps.is_empty());
        assert!(
            steps
                .iter()
                .all(|step| matches!(step.fault, Fault::Kill(_) | Fault::Pause(_)))
        );
        assert!(schedule(7, Duration::from_secs(60), &[]).is_empty());
    }
}
