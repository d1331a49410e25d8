//! [`RetryingCall`]: one call's way through its attempts: where the next attempt goes
//! (the active a passive named, the next address in the list, the same node), when (at
//! once, or after a [`Backoff`] pause), and what to report when there is no next attempt.

use crate::attempt_failure::{AttemptFailure, FailureKind};
use crate::client::MAX_REDIRECTS;
use crate::connection::{Connection, MAX_ADDRESSES, NodeChannel};
use crate::error::ClientError;
use crate::retry::Backoff;
use crate::retry_policy::RetryPolicy;

/// The state of one call across its attempts.
pub(crate) struct RetryingCall<'a> {
    connection: &'a Connection,
    backoff: Backoff,
    redirects_since_pause: usize,
    failovers_since_pause: usize,
    /// The nodes this call could not reach, with why, for the final error.
    unreachable_nodes: Vec<(String, String)>,
    /// An attempt before the latest may have taken effect.
    earlier_outcome_unknown: bool,
    /// Report, rather than resend, an attempt whose outcome is unknown.
    stop_at_unknown_outcome: bool,
}

impl<'a> RetryingCall<'a> {
    pub fn new(connection: &'a Connection, policy: &RetryPolicy) -> RetryingCall<'a> {
        RetryingCall {
            connection,
            backoff: Backoff::new(policy),
            redirects_since_pause: 0,
            failovers_since_pause: 0,
            unreachable_nodes: Vec::new(),
            earlier_outcome_unknown: false,
            stop_at_unknown_outcome: false,
        }
    }

    /// For calls that must not take effect twice: an attempt whose outcome is unknown is
    /// reported, not sent again. (Attempts the node refused untouched are still resent.)
    pub fn without_resending_unknown_outcomes(mut self) -> RetryingCall<'a> {
        self.stop_at_unknown_outcome = true;
        self
    }

    /// After `failure` of an attempt on `node`: points the connection where the next
    /// attempt goes and pauses if it must. False when there is no next attempt: the
    /// failure is the node's answer, or the deadline has passed.
    pub async fn prepare_next_attempt(
        &mut self,
        node: &NodeChannel,
        failure: &AttemptFailure,
    ) -> bool {
        self.note_unreachable(node, &failure.kind);
        let outcome_unknown = failure.kind.outcome_unknown();
        if outcome_unknown && self.stop_at_unknown_outcome {
            return false;
        }
        let retrying = match &failure.kind {
            FailureKind::Answer => false,
            FailureKind::Redirected { active_address } => {
                self.follow_redirect(node, active_address).await
            }
            FailureKind::Throttled { retry_after } => {
                self.reset_hops();
                self.backoff.pause_at_least(*retry_after).await
            }
            FailureKind::Unreachable { .. } | FailureKind::NoActive | FailureKind::Unconfirmed => {
                self.fail_over(node).await
            }
        };
        self.earlier_outcome_unknown |= retrying && outcome_unknown;
        retrying
    }

    /// The error to report after the last attempt's `failure`: when several nodes could
    /// not be reached, it names each.
    pub fn final_error(&self, failure: AttemptFailure) -> ClientError {
        let several_unreachable = self.unreachable_nodes.len() > 1;
        let mut error = match failure.kind {
            FailureKind::Unreachable { .. } if several_unreachable => {
                ClientError::unreachable_nodes(&self.unreachable_nodes)
            }
            _ => failure.error,
        };
        error.after_retry = self.earlier_outcome_unknown;
        error
    }

    /// Keeps the list of nodes this call could not reach up to date (a node that answered
    /// leaves it), and tells the connection of a node it could not reach.
    fn note_unreachable(&mut self, node: &NodeChannel, kind: &FailureKind) {
        self.unreachable_nodes
            .retain(|(address, _)| *address != node.address);
        let FailureKind::Unreachable { reason, .. } = kind else {
            return;
        };
        self.connection.node_unreachable(node);
        if self.unreachable_nodes.len() < MAX_ADDRESSES {
            self.unreachable_nodes
                .push((node.address.clone(), reason.clone()));
        }
    }

    /// Moves to the active at once (or, when it could not be reached a moment ago, asks
    /// `node` to relay to it), unless [`MAX_REDIRECTS`] redirects came in a row: then after
    /// a pause.
    async fn follow_redirect(&mut self, node: &NodeChannel, active_address: &str) -> bool {
        if self.redirects_since_pause >= MAX_REDIRECTS && !self.pause().await {
            return false;
        }
        self.redirects_since_pause += 1;
        if self.connection.relay_through(node, active_address) {
            return true;
        }
        match self.connection.move_to(active_address) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "a passive named an active that is no address");
                self.fail_over(node).await
            }
        }
    }

    /// Moves to the next address: at once while the list has addresses not tried since the
    /// last pause, otherwise after a pause.
    async fn fail_over(&mut self, node: &NodeChannel) -> bool {
        self.connection.fail_over_from(node);
        let other_addresses = self.connection.addresses().len() - 1;
        if self.failovers_since_pause < other_addresses {
            self.failovers_since_pause += 1;
            return true;
        }
        self.pause().await
    }

    async fn pause(&mut self) -> bool {
        self.reset_hops();
        self.backoff.pause().await
    }

    fn reset_hops(&mut self) {
        self.redirects_since_pause = 0;
        self.failovers_since_pause = 0;
    }
}
