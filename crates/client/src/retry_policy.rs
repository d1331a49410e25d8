//! [`RetryPolicy`]: how long, and at what pace, a call is sent again after a failure that
//! is worth another attempt (a node that cannot be reached, an election, `no_quorum`,
//! `throttled`).

use std::time::Duration;

/// The first pause before a call is tried again.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The pause doubles after each attempt up to this.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long a call keeps retrying by default before it reports the last failure.
pub const DEFAULT_RETRY_DEADLINE: Duration = Duration::from_secs(5);

/// How a [`crate::TandemClient`] retries a call: pauses that start at `first_pause`, double
/// up to `max_pause` (each jittered between half and all of it), and stop once `deadline`
/// has passed since the call began, or never (`deadline: None`).
///
/// The deadline bounds the retrying, not one attempt: an attempt may take the client's call
/// timeout, and a new attempt never starts after the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first_pause: Duration,
    pub max_pause: Duration,
    /// How long after the first attempt a call may still be tried again; `None` retries
    /// until the call gets an answer (what a host instance that must never give up wants).
    pub deadline: Option<Duration>,
}

impl RetryPolicy {
    /// Retries for up to `deadline`, with the default pauses.
    pub fn until(deadline: Duration) -> RetryPolicy {
        RetryPolicy {
            deadline: Some(deadline),
            ..RetryPolicy::default()
        }
    }

    /// Retries until the call gets an answer, with the default pauses.
    pub fn indefinitely() -> RetryPolicy {
        RetryPolicy {
            deadline: None,
            ..RetryPolicy::default()
        }
    }

    /// One attempt: a failure is reported at once. A passive's redirect to the active is
    /// still followed, since the passive did nothing with the call.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy::until(Duration::ZERO)
    }

    /// The same policy with other pauses.
    pub fn with_pauses(self, first_pause: Duration, max_pause: Duration) -> RetryPolicy {
        RetryPolicy {
            first_pause,
            max_pause,
            ..self
        }
    }
}

impl Default for RetryPolicy {
    /// Retries for [`DEFAULT_RETRY_DEADLINE`], pausing [`FIRST_RETRY_PAUSE`] up to
    /// [`MAX_RETRY_PAUSE`].
    fn default() -> RetryPolicy {
        RetryPolicy {
            first_pause: FIRST_RETRY_PAUSE,
            max_pause: MAX_RETRY_PAUSE,
            deadline: Some(DEFAULT_RETRY_DEADLINE),
        }
    }
}
