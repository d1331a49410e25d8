//! On the active: which other voting member is short of room on its disk. The disk guard
//! ([`crate::disk_space`]) measures this node's own disk; a passive with a smaller or
//! fuller disk would otherwise run out first and stop (its writes fail), leaving the replica
//! set a node short, with no sign on the active. Every
//! [`limits::DISK_ROOM_SAMPLE_INTERVAL_MS`] the active asks each voting member for its node
//! status and holds publishes back while one reports its room below its own floor
//! (`disk_low`). A member that does not answer in time is left out of that round: a node
//! that is down writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use tandem_core::limits;
use tandem_protocol::v1;
use tandem_protocol::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use crate::disk_space::LowMember;
use crate::state::SharedState;

/// A member that takes longer than this to answer is left out of the round.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Polls the voting members while this node is the active, until shutdown begins.
pub async fn watch_member_disks(state: SharedState) {
    let mut rounds =
        tokio::time::interval(Duration::from_millis(limits::DISK_ROOM_SAMPLE_INTERVAL_MS));
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients = MemberClients::default();
    loop {
        tokio::select! {
            _ = rounds.tick() => {}
            () = state.shutdown_begun() => return,
        }
        let low = if state.replica.is_active() {
            lowest_member_short_of_room(&state, &mut clients).await
        } else {
            None
        };
        state.disk.set_low_member(low);
    }
}

/// The voting member other than this node with the least room among those below their
/// floor, if any.
async fn lowest_member_short_of_room(
    state: &SharedState,
    clients: &mut MemberClients,
) -> Option<LowMember> {
    let status = state.replica.status();
    let mut lowest: Option<LowMember> = None;
    for member in status
        .members
        .iter()
        .filter(|member| member.voter && member.node_id != status.node_id)
    {
        let Some(client) = clients.get(member.node_id, &member.member.grpc_address) else {
            continue;
        };
        let answer = tokio::time::timeout(
            MEMBER_STATUS_TIMEOUT,
            client.node_status(v1::NodeStatusRequest {}),
        )
        .await;
        let Ok(Ok(answer)) = answer else {
            continue;
        };
        let answer = answer.into_inner();
        let (true, Some(room_bytes)) = (answer.disk_low, answer.disk_room_bytes) else {
            continue;
        };
        if lowest
            .as_ref()
            .is_none_or(|low| room_bytes < low.room_bytes)
        {
            lowest = Some(LowMember {
                node_id: member.node_id,
                room_bytes,
                min_free_bytes: answer.min_free_disk_bytes,
            });
        }
    }
    lowest
}

/// One lazily connected client per member, made again when its address changes.
#[derive(Default)]
struct MemberClients {
    by_node: BTreeMap<u64, (String, ClusterClient<Channel>)>,
}

impl MemberClients {
    fn get(&mut self, node_id: u64, address: &str) -> Option<&mut ClusterClient<Channel>> {
        let stale = self
            .by_node
            .get(&node_id)
            .is_none_or(|(known, _)| known != address);
        if stale {
            let endpoint = Endpoint::from_shared(format!("http://{address}")).ok()?;
            let channel = endpoint
                .connect_timeout(MEMBER_STATUS_TIMEOUT)
                .connect_lazy();
            self.by_node
                .insert(node_id, (address.to_string(), ClusterClient::new(channel)));
        }
        self.by_node.get_mut(&node_id).map(|(_, client)| client)
    }
}
