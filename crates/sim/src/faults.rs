//! The simulation's nemesis: a schedule of faults that the seed fixes, applied to turmoil's
//! hosts and links between steps, each healed after its hold.
//!
//! - **crash**: the node's software is dropped (kill -9), and started again on its data
//!   directory when healed;
//! - **isolate**: every link of the node is cut, both ways (a partition);
//! - **one-way**: the node can no longer send to another node, but still receives from it;
//! - **hold**: the node's links hold every message until healed, then deliver them at once
//!   (a paused process, or a stalled network);
//! - **slow**: a message on the node's links may take up to 300 ms;
//! - **lossy**: each of the node's links drops what it carries for a millisecond now and
//!   then (1 % of milliseconds); a connection that lost a segment stalls until the caller's
//!   timeout gives up on it.

use std::fmt;
use std::time::Duration;

use tandem_chaos::nemesis::SplitMix64;
use turmoil::Sim;

use crate::wire::node_name;

/// Faults start after the replica set has formed and the route is declared.
const FIRST_FAULT_AT: Duration = Duration::from_secs(2);
const SLOW_LINK_LATENCY: Duration = Duration::from_millis(300);
/// The chance, each simulated millisecond, that a lossy link drops what it carries.
const LOSSY_LINK_FAIL_RATE: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Crash { node: u64 },
    Isolate { node: u64 },
    OneWay { from: u64, to: u64 },
    Hold { node: u64 },
    Slow { node: u64 },
    Lossy { node: u64 },
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash { node } => write!(formatter, "crash node{node}"),
            Fault::Isolate { node } => write!(formatter, "isolate node{node}"),
            Fault::OneWay { from, to } => write!(formatter, "cut node{from} -> node{to}"),
            Fault::Hold { node } => write!(formatter, "hold node{node}'s links"),
            Fault::Slow { node } => write!(formatter, "slow node{node}'s links"),
            Fault::Lossy { node } => write!(formatter, "lossy node{node}'s links"),
        }
    }
}

/// A fault, when it starts and when it is healed (simulated time since the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    pub at: Duration,
    pub healed_at: Duration,
}

/// The faults of a run: one at a time, each held 0.3–3 s, with 0.2–2 s between them, until
/// `until`.
pub fn schedule(seed: u64, node_count: u64, until: Duration) -> Vec<Step> {
    let mut random = SplitMix64(seed ^ 0x5eed_fa17);
    let mut steps = Vec::new();
    let mut at = FIRST_FAULT_AT;
    loop {
        let held = Duration::from_millis(300 + random.below(2_700));
        if at + held > until {
            return steps;
        }
        let node = 1 + random.below(node_count);
        let fault = match random.below(6) {
            0 => Fault::Crash { node },
            1 => Fault::Isolate { node },
            2 => Fault::OneWay {
                from: node,
                to: node % node_count + 1,
            },
            3 => Fault::Hold { node },
            4 => Fault::Slow { node },
            _ => Fault::Lossy { node },
        };
        steps.push(Step {
            fault,
            at,
            healed_at: at + held,
        });
        at += held + Duration::from_millis(200 + random.below(1_800));
    }
}

/// Every host the node talks to: the other nodes and the clients.
fn peers_of(node: u64, hosts: &[String]) -> Vec<String> {
    let name = node_name(node);
    hosts
        .iter()
        .filter(|host| **host != name)
        .cloned()
        .collect()
}

pub fn apply(sim: &mut Sim<'_>, fault: Fault, hosts: &[String]) {
    match fault {
        Fault::Crash { node } => sim.crash(node_name(node)),
        Fault::Isolate { node } => {
            for peer in peers_of(node, hosts) {
                sim.partition(node_name(node), peer);
            }
        }
        Fault::OneWay { from, to } => sim.partition_oneway(node_name(from), node_name(to)),
        Fault::Hold { node } => {
            for peer in peers_of(node, hosts) {
                sim.hold(node_name(node), peer);
            }
        }
        Fault::Slow { node } => {
            for peer in peers_of(node, hosts) {
                sim.set_link_max_message_latency(node_name(node), peer, SLOW_LINK_LATENCY);
            }
        }
        Fault::Lossy { node } => {
            for peer in peers_of(node, hosts) {
                sim.set_link_fail_rate(node_name(node), peer, LOSSY_LINK_FAIL_RATE);
            }
        }
    }
}

/// Undoes `fault`; `normal_latency` is the links' usual maximum latency.
pub fn heal(sim: &mut Sim<'_>, fault: Fault, hosts: &[String], normal_latency: Duration) {
    match fault {
        Fault::Crash { node } => sim.bounce(node_name(node)),
        Fault::Isolate { node } => {
            for peer in peers_of(node, hosts) {
                sim.repair(node_name(node), peer);
            }
        }
        Fault::OneWay { from, to } => sim.repair_oneway(node_name(from), node_name(to)),
        Fault::Hold { node } => {
            for peer in peers_of(node, hosts) {
                sim.release(node_name(node), peer);
            }
        }
        Fault::Slow { node } => {
            for peer in peers_of(node, hosts) {
                sim.set_link_max_message_latency(node_name(node), peer, normal_latency);
            }
        }
        Fault::Lossy { node } => {
            for peer in peers_of(node, hosts) {
                sim.set_link_fail_rate(node_name(node), peer.clone(), 0.0);
                sim.repair(node_name(node), peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_schedule_and_faults_do_not_overlap() {
        let until = Duration::from_secs(30);
        let first = schedule(7, 3, until);
        assert_eq!(schedule(7, 3, until), first);
        assert_ne!(schedule(8, 3, until), first);
        assert!(first.len() >= 5, "{first:?}");
        for pair in first.windows(2) {
            assert!(pair[0].healed_at < pair[1].at, "{pair:?}");
        }
        assert!(first.iter().all(|step| step.healed_at <= until));
    }
}
