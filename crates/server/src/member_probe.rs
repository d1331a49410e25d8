//! Every node asks each other voting member, every [`limits::MEMBER_PROBE_INTERVAL_MS`], for
//! its clock and its room on disk (gRPC `MemberProbe`):
//!
//! - **Clock.** Each answer, less half the round trip, is a reading of that member's clock,
//!   which [`ReplicaSetTime`] keeps; while this node is the active it stamps the median of
//!   the voters' clocks into entries. Passives probe too, so that a passive made active
//!   already has the readings. A node whose own clock is more than
//!   [`limits::CLOCK_OFFSET_WARNING_MS`] from the replica set's time says so in its log.
//! - **Disk.** The disk guard ([`crate::disk_space`]) measures this node's own disk; a
//!   passive with a smaller or fuller disk would otherwise run out first and stop (its writes
//!   fail), leaving the replica set a node short, with no sign on the active. So the active
//!   holds publishes back while a voter reports its room below its own floor (`disk_low`).
//!
//! A member that does not answer within [`PROBE_TIMEOUT`] is left out of that round: a node
//! that is down writes nothing, and its last clock reading stays (see [`ReplicaSetTime`]).

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_cluster::{NodeId, ReplicaSetTime};
use tandem_core::condition::Change;
use tandem_core::duration::format_approximately;
use tandem_core::limits;
use tandem_protocol::v1;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::disk_space::LowMember;
use crate::state::SharedState;

/// A member that takes longer than this to answer is left out of the round.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes the voting members until shutdown begins.
pub async fn probe_members(state: SharedState) {
    let mut rounds = tokio::time::interval(Duration::from_millis(limits::MEMBER_PROBE_INTERVAL_MS));
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients = MemberClients::default();
    let mut clock_warning = ClockWarning::default();
    loop {
        tokio::select! {
            _ = rounds.tick() => {}
            () = state.shutdown_begun() => return,
        }
        let answers = probe_round(&state, &mut clients).await;
        let time = state.replica.time();
        for answer in &answers {
            time.record_reading(
                answer.node_id,
                answer.probe.wall_clock_ms,
                answer.round_trip,
            );
        }
        let low = if state.replica.is_active() {
            lowest_member_short_of_room(&answers)
        } else {
            None
        };
        state.disk.set_low_member(low);
        clock_warning.report(time);
    }
}

/// One member's answer to a probe, and how long it took.
struct ProbeAnswer {
    node_id: NodeId,
    round_trip: Duration,
    probe: v1::MemberProbeResponse,
}

/// Probes every other voter at once; forgets the clocks of nodes that are no longer voters.
async fn probe_round(state: &SharedState, clients: &mut MemberClients) -> Vec<ProbeAnswer> {
    let status = state.replica.status();
    let voters: Vec<NodeId> = status
        .members
        .iter()
        .filter(|member| member.voter)
        .map(|member| member.node_id)
        .collect();
    state.replica.time().keep_voters(&voters);
    let mut probes = JoinSet::new();
    for member in status
        .members
        .iter()
        .filter(|member| member.voter && member.node_id != status.node_id)
    {
        let Some(mut client) = clients.get(member.node_id, &member.member.grpc_address) else {
            continue;
        };
        let node_id = member.node_id;
        probes.spawn(async move {
            let asked = Instant::now();
            let answer = tokio::time::timeout(
                PROBE_TIMEOUT,
                client.member_probe(v1::MemberProbeRequest {}),
            )
            .await;
            let probe = answer.ok()?.ok()?.into_inner();
            Some(ProbeAnswer {
                node_id,
                round_trip: asked.elapsed(),
                probe,
            })
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = probes.join_next().await {
        answers.extend(answer.ok().flatten());
    }
    answers
}

/// The member with the least room among those below their floor, if any.
fn lowest_member_short_of_room(answers: &[ProbeAnswer]) -> Option<LowMember> {
    answers
        .iter()
        .filter_map(|answer| {
            let (true, Some(room_bytes)) = (answer.probe.disk_low, answer.probe.disk_room_bytes)
            else {
                return None;
            };
            Some(LowMember {
                node_id: answer.node_id,
                room_bytes,
                min_free_bytes: answer.probe.min_free_disk_bytes,
            })
        })
        .min_by_key(|low| low.room_bytes)
}

/// Says once when this node's clock goes more than [`limits::CLOCK_OFFSET_WARNING_MS`] from
/// the replica set's time, and once when it comes back.
#[derive(Default)]
struct ClockWarning {
    warned: bool,
}

impl ClockWarning {
    fn report(&mut self, time: &ReplicaSetTime) {
        let Some(offset_ms) = time.own_offset_ms() else {
            return;
        };
        let off = offset_ms.unsigned_abs() > limits::CLOCK_OFFSET_WARNING_MS;
        match Change::between(self.warned, off) {
            Some(Change::Starts) => eprintln!(
                "tandem: this node's clock is {} {} the replica set's time (the median of its \
                 voters' clocks); entries are stamped with the replica set's time, but fix \
                 this machine's clock (NTP)",
                format_approximately(offset_ms.unsigned_abs()),
                if offset_ms > 0 { "ahead of" } else { "behind" },
            ),
            Some(Change::Ends) => {
                eprintln!("tandem: this node's clock agrees with the replica set's time again")
            }
            None => {}
        }
        self.warned = off;
    }
}

/// One lazily connected client per member, made again when its address changes.
#[derive(Default)]
struct MemberClients {
    by_node: BTreeMap<u64, (String, ClusterClient<Channel>)>,
}

impl MemberClients {
    fn get(&mut self, node_id: u64, address: &str) -> Option<ClusterClient<Channel>> {
        let stale = self
            .by_node
            .get(&node_id)
            .is_none_or(|(known, _)| known != address);
        if stale {
            let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
            let channel = endpoint.connect_timeout(PROBE_TIMEOUT).connect_lazy();
            self.by_node
                .insert(node_id, (address.to_string(), ClusterClient::new(channel)));
        }
        self.by_node.get(&node_id).map(|(_, client)| client.clone())
    }
}
