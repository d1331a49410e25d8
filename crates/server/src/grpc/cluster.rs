//! [`ClusterService`]: the replica set over gRPC: a node's status and failover history,
//! forming a replica set, adding and removing members, switchover, and the probe members
//! send each other (clock and room on disk).

use std::collections::BTreeMap;

use tandem_cluster::{FailoverRecord, Member, MemberStatus, ReplicaStatus};
use tandem_core::Error;
use tandem_protocol::v1;
use tandem_protocol::v1::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use crate::disk_space::DiskGuard;
use crate::errors::to_status;
use crate::grpc::GrpcBackend;
use crate::state::SharedState;

pub struct ClusterService {
    backend: GrpcBackend,
}

impl ClusterService {
    pub fn new(state: SharedState) -> ClusterService {
        ClusterService {
            backend: GrpcBackend::new(state),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn node_status(
        &self,
        _request: Request<v1::NodeStatusRequest>,
    ) -> Result<Response<v1::NodeStatusResponse>, Status> {
        self.backend.count("node_status");
        let view = self
            .backend
            .cluster_view()
            .await
            .map_err(|error| to_status(&error))?;
        let this_node = MemberStatus {
            node_id: self.backend.replica.node_id(),
            member: self.backend.replica.member().clone(),
            voter: view
                .status
                .members
                .iter()
                .any(|member| member.node_id == view.status.node_id && member.voter),
            matched_index: None,
            lag: None,
            acknowledged_ms_ago: None,
        };
        Ok(Response::new(node_status(
            &view.status,
            &this_node,
            &view.failovers,
            &self.backend.disk,
            self.backend.replica.time().own_offset_ms(),
        )))
    }

    async fn member_probe(
        &self,
        _request: Request<v1::MemberProbeRequest>,
    ) -> Result<Response<v1::MemberProbeResponse>, Status> {
        self.backend.count("member_probe");
        let disk = &self.backend.disk;
        Ok(Response::new(v1::MemberProbeResponse {
            wall_clock_ms: tandem_cluster::wall_clock_ms(),
            disk_room_bytes: disk.room_bytes(),
            min_free_disk_bytes: disk.min_free_bytes(),
            disk_low: disk.is_low(),
        }))
    }

    async fn initialize(
        &self,
        request: Request<v1::InitializeRequest>,
    ) -> Result<Response<v1::InitializeResponse>, Status> {
        self.backend.count("initialize");
        let members = request
            .into_inner()
            .members
            .into_iter()
            .map(|member| (member.node_id, member_from_wire(member)))
            .collect::<BTreeMap<_, _>>();
        self.backend
            .replica
            .initialize(members)
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(v1::InitializeResponse {}))
    }

    async fn add_member(
        &self,
        request: Request<v1::AddMemberRequest>,
    ) -> Result<Response<v1::AddMemberResponse>, Status> {
        self.backend.count("add_member");
        let member = request
            .into_inner()
            .member
            .ok_or_else(|| to_status(&Error::invalid("the member to add is missing")))?;
        let node_id = member.node_id;
        self.backend
            .replica
            .add_member(node_id, member_from_wire(member))
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(v1::AddMemberResponse {}))
    }

    async fn remove_member(
        &self,
        request: Request<v1::RemoveMemberRequest>,
    ) -> Result<Response<v1::RemoveMemberResponse>, Status> {
        self.backend.count("remove_member");
        self.backend
            .replica
            .remove_member(request.into_inner().node_id)
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(v1::RemoveMemberResponse {}))
    }

    async fn switchover(
        &self,
        request: Request<v1::SwitchoverRequest>,
    ) -> Result<Response<v1::SwitchoverResponse>, Status> {
        self.backend.count("switchover");
        let active_node = self
            .backend
            .replica
            .switchover(request.into_inner().to_node)
            .await
            .map_err(|error| to_status(&error))?;
        Ok(Response::new(v1::SwitchoverResponse { active_node }))
    }
}

fn node_status(
    status: &ReplicaStatus,
    this_node: &MemberStatus,
    failovers: &[FailoverRecord],
    disk: &DiskGuard,
    clock_offset_ms: Option<i64>,
) -> v1::NodeStatusResponse {
    v1::NodeStatusResponse {
        node: Some(member_to_wire(this_node)),
        role: status.role.as_str().to_string(),
        term: status.term,
        last_log_index: status.last_log_index,
        committed_index: status.committed_index,
        applied_index: status.applied_index,
        snapshot_index: status.snapshot_index,
        purged_index: status.purged_index,
        active_node: status.active,
        members: status.members.iter().map(member_to_wire).collect(),
        failovers: failovers.iter().map(failover_to_wire).collect(),
        initialized: status.initialized,
        disk_room_bytes: disk.room_bytes(),
        min_free_disk_bytes: disk.min_free_bytes(),
        disk_low: disk.is_low(),
        clock_offset_ms,
        quorum_acknowledged_ms_ago: status.quorum_acknowledged_ms_ago,
    }
}

fn member_to_wire(member: &MemberStatus) -> v1::Member {
    v1::Member {
        node_id: member.node_id,
        raft_address: member.member.raft_address.clone(),
        grpc_address: member.member.grpc_address.clone(),
        http_address: member.member.http_address.clone(),
        voter: member.voter,
        matched_index: member.matched_index,
        lag: member.lag,
        acknowledged_ms_ago: member.acknowledged_ms_ago,
    }
}

fn member_from_wire(member: v1::Member) -> Member {
    Member {
        raft_address: member.raft_address,
        grpc_address: member.grpc_address,
        http_address: member.http_address,
    }
}

fn failover_to_wire(record: &FailoverRecord) -> v1::FailoverEvent {
    v1::FailoverEvent {
        term: record.term,
        at_ms: record.at_ms,
        from_node: record.from,
        to_node: record.to,
        reason: record.reason.clone(),
        unavailable_ms: record.unavailable_ms,
    }
}
