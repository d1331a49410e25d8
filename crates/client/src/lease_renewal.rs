//! [`TandemClient::renew_while`]: keeps a lease alive while its handler runs, and
//! [`LeaseStatus`], whether it held.

use std::future::Future;
use std::time::Duration;

use tandem_protocol::v1;

use crate::client::TandemClient;
use crate::error::ClientError;

/// How many renewals fall in one lease duration: renewing at a third of it leaves two
/// renewals' worth of time for one to ride through a failover.
pub const RENEWALS_PER_LEASE: u32 = 3;
/// The shortest pause between renewals, whatever the lease duration.
pub const MIN_RENEWAL_INTERVAL: Duration = Duration::from_millis(10);

/// Whether a lease held while its handler ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Every renewal was acknowledged (or none was due): settling can succeed.
    Held,
    /// A renewal was refused because the lease is gone (`lease_expired`,
    /// `lease_mismatch`, `not_found`): completing will be fenced, and the message is, or
    /// will be, delivered again (possibly to another host instance). Renewing stopped.
    Lost(ClientError),
    /// The last renewal failed otherwise (no node reachable within the retry policy, or an
    /// invalid request): the lease may run out before settling.
    AtRisk(ClientError),
}

impl TandemClient {
    /// Runs `handler` while renewing the lease (`instance`, `token`) for `lease_duration`
    /// every third of it, through failovers (each renewal retries under the client's
    /// [`crate::RetryPolicy`]). Renewing stops when the handler ends, or when the lease is
    /// lost; the handler always runs to its end. Returns its output and whether the lease
    /// held: a [`LeaseStatus::Lost`] lease means the completion will be fenced.
    pub async fn renew_while<F: Future>(
        &self,
        instance: u64,
        token: u64,
        lease_duration: Duration,
        handler: F,
    ) -> (F::Output, LeaseStatus) {
        let request = v1::RenewLeaseRequest {
            instance,
            token,
            lease_duration_ms: u64::try_from(lease_duration.as_millis()).unwrap_or(u64::MAX),
        };
        let every = (lease_duration / RENEWALS_PER_LEASE).max(MIN_RENEWAL_INTERVAL);
        let mut status = LeaseStatus::Held;
        let output = {
            let renewing = self.keep_renewing(request, every, &mut status);
            let mut handler = std::pin::pin!(handler);
            tokio::select! {
                output = &mut handler => output,
                () = renewing => handler.await,
            }
        };
        (output, status)
    }

    /// Renews every `every` until the lease is lost, keeping `status` up to date.
    async fn keep_renewing(
        &self,
        request: v1::RenewLeaseRequest,
        every: Duration,
        status: &mut LeaseStatus,
    ) {
        let instance = request.instance;
        loop {
            tokio::time::sleep(every).await;
            match self.renew_lease(request).await {
                Ok(_) => *status = LeaseStatus::Held,
                Err(error) if is_lease_gone(&error) => {
                    tracing::warn!(instance, %error, "lease lost; its completion will be fenced");
                    *status = LeaseStatus::Lost(error);
                    return;
                }
                Err(error) => {
                    tracing::warn!(instance, %error, "lease renewal failed; trying again");
                    *status = LeaseStatus::AtRisk(error);
                }
            }
        }
    }
}

/// The node's answers that say the lease no longer exists.
fn is_lease_gone(error: &ClientError) -> bool {
    ["lease_expired", "lease_mismatch", "not_found"]
        .iter()
        .any(|code| error.is_code(code))
}
