//! Random setups and command sequences. Steps name their targets abstractly ("some leased
//! instance", "a stale token"); `resolve` turns them into concrete commands against the
//! model's current state.

use proptest::prelude::*;
use tandem_core::command::Command;
use tandem_core::context::Property;
use tandem_core::ids::MessageId;
use tandem_core::message::NewMessage;
use tandem_core::value::Value;

use super::reference::{HOSTS, Model, PUBLISHER, RetrySpec, Setup, State, SubscriptionSpec};

/// An instance id that is never created in a case.
pub const MISSING_INSTANCE: u64 = 999_999;

#[derive(Clone, Debug)]
pub struct MessageSpec {
    /// 0..6 pick ids from a small pool (so duplicates happen); 6 is empty, 7 has a space.
    pub id: u8,
    /// 0 none, 1..=3 promoted "a", "b", "c" ("c" matches nothing), 4 written (not promoted) "a".
    pub kind: u8,
    pub body_len: usize,
}

#[derive(Clone, Copy, Debug)]
pub enum Pick {
    /// Some instance in this state if there is one, else any instance ever created.
    In(State, usize),
    /// Any instance ever created (possibly gone now), or the missing one.
    Any(usize),
}

#[derive(Clone, Copy, Debug)]
pub enum TokenChoice {
    Current,
    /// A token this instance held before, if it was leased more than once.
    Stale,
    Wrong(u64),
}

#[derive(Clone, Debug)]
pub enum Op {
    Publish(Vec<MessageSpec>),
    Lease {
        /// 0 and 1 are the hosts; 2 is an unknown host.
        host: usize,
        valid_holder: bool,
        max_messages: u32,
        duration_ms: u64,
    },
    Renew(Pick, TokenChoice, u64),
    Complete(Pick, TokenChoice),
    Abandon(Pick, TokenChoice),
    Fail(Pick, TokenChoice),
    Resume(Pick),
    Terminate(Pick),
    Tick,
    /// Rebuild the machine from what it flushed to its tables, as the store does on open.
    Reload,
}

#[derive(Clone, Copy, Debug)]
pub enum Clock {
    Stay,
    Forward(i64),
    /// A stamp behind the clock: the machine must not let time run backwards.
    Backward(i64),
    /// Exactly to the next lease expiry or retry time, to hit the boundaries.
    ToNextDeadline,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub clock: Clock,
    pub op: Op,
}

fn retry_spec() -> impl Strategy<Value = RetrySpec> {
    (
        0..=2_u32,
        prop_oneof![Just(0_u64), Just(10), Just(50)],
        any::<bool>(),
    )
        .prop_map(
            |(retry_count, retry_interval_ms, exponential_backoff)| RetrySpec {
                retry_count,
                retry_interval_ms,
                exponential_backoff,
            },
        )
}

fn subscription_spec() -> impl Strategy<Value = SubscriptionSpec> {
    (
        prop_oneof![Just(vec!["a"]), Just(vec!["b"]), Just(vec!["a", "b"])],
        0..HOSTS.len(),
        1..=3_u8,
        retry_spec(),
        prop_oneof![2 => Just(None), 1 => retry_spec().prop_map(Some)],
    )
        .prop_map(|(kinds, host, priority, retry, backup)| SubscriptionSpec {
            kinds,
            host,
            priority,
            retry,
            backup,
        })
}

pub fn setup() -> impl Strategy<Value = Setup> {
    (
        prop::collection::vec(subscription_spec(), 3),
        prop_oneof![Just(0_u64), Just(150), Just(1_000), Just(600_000)],
        2..=12_u64,
    )
        .prop_map(
            |(subscriptions, dedupe_window_ms, throttle_message_count)| Setup {
                subscriptions,
                dedupe_window_ms,
                throttle_message_count,
                max_body_bytes: 8,
            },
        )
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    (
        prop_oneof![20 => 0..6_u8, 1 => 6..8_u8],
        prop_oneof![1 => Just(0_u8), 8 => 1..=2_u8, 1 => Just(3_u8), 1 => Just(4_u8)],
        prop_oneof![9 => 0..=8_usize, 1 => 9..=12_usize],
    )
        .prop_map(|(id, kind, body_len)| MessageSpec { id, kind, body_len })
}

fn token_choice() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        6 => Just(TokenChoice::Current),
        2 => Just(TokenChoice::Stale),
        1 => (0..40_u64).prop_map(TokenChoice::Wrong),
    ]
}

fn pick(preferred: State) -> impl Strategy<Value = Pick> {
    prop_oneof![
        5 => any::<usize>().prop_map(move |index| Pick::In(preferred, index)),
        1 => any::<usize>().prop_map(Pick::Any),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let leased = || (pick(State::Leased), token_choice());
    prop_oneof![
        8 => prop::collection::vec(message_spec(), 1..=3).prop_map(Op::Publish),
        6 => (
            prop_oneof![8 => 0..2_usize, 1 => Just(2_usize)],
            prop_oneof![15 => Just(true), 1 => Just(false)],
            prop_oneof![15 => 1..=3_u32, 1 => Just(0_u32)],
            prop_oneof![5 => 100..=300_u64, 10 => 1_000..=3_000_u64, 1 => Just(50_u64)],
        )
            .prop_map(|(host, valid_holder, max_messages, duration_ms)| Op::Lease {
                host,
                valid_holder,
                max_messages,
                duration_ms,
            }),
        5 => leased().prop_map(|(pick, token)| Op::Complete(pick, token)),
        2 => leased().prop_map(|(pick, token)| Op::Abandon(pick, token)),
        4 => leased().prop_map(|(pick, token)| Op::Fail(pick, token)),
        2 => (leased(), prop_oneof![9 => 100..=300_u64, 1 => Just(10_u64)])
            .prop_map(|((pick, token), duration)| Op::Renew(pick, token, duration)),
        2 => pick(State::Suspended).prop_map(Op::Resume),
        1 => pick(State::Ready).prop_map(Op::Terminate),
        3 => Just(Op::Tick),
        1 => Just(Op::Reload),
    ]
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        4 => Just(Clock::Stay),
        5 => (1..=60_i64).prop_map(Clock::Forward),
        2 => (100..=400_i64).prop_map(Clock::Forward),
        1 => (1_000..=4_000_i64).prop_map(Clock::Forward),
        1 => (1..=50_i64).prop_map(Clock::Backward),
        2 => Just(Clock::ToNextDeadline),
    ]
}

/// Moves the clock for a step and returns the stamp to apply the step's command at.
pub fn advance(clock: Clock, clock_ms: &mut i64, model: &Model) -> i64 {
    match clock {
        Clock::Stay => {}
        Clock::Forward(by) => *clock_ms += by,
        Clock::Backward(by) => return *clock_ms - by,
        Clock::ToNextDeadline => {
            if let Some(deadline) = model.next_deadline(*clock_ms) {
                *clock_ms = deadline;
            }
        }
    }
    *clock_ms
}

pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (clock(), op()).prop_map(|(clock, op)| Step { clock, op }),
        1..=max,
    )
}

fn message(spec: &MessageSpec) -> NewMessage {
    let id = match spec.id {
        6 => String::new(),
        7 => "bad id".to_string(),
        n => format!("m{n}"),
    };
    let kind = |value: &str, promoted: bool| Property {
        name: "Kind".to_string(),
        value: Value::String(value.to_string()),
        promoted,
    };
    let properties = match spec.kind {
        1 => vec![kind("a", true)],
        2 => vec![kind("b", true)],
        3 => vec![kind("c", true)],
        4 => vec![kind("a", false)],
        _ => Vec::new(),
    };
    NewMessage {
        message_id: MessageId(id),
        body: vec![spec.id; spec.body_len],
        properties,
    }
}

fn resolve_pick(model: &Model, pick: Pick) -> u64 {
    let everything: Vec<u64> = model
        .fates
        .keys()
        .copied()
        .chain([MISSING_INSTANCE])
        .collect();
    match pick {
        Pick::In(state, index) => {
            let candidates = model.ids_in(state);
            if candidates.is_empty() {
                everything[index % everything.len()]
            } else {
                candidates[index % candidates.len()]
            }
        }
        Pick::Any(index) => everything[index % everything.len()],
    }
}

fn resolve_token(model: &Model, instance: u64, choice: TokenChoice) -> u64 {
    match choice {
        TokenChoice::Current => model.current_token(instance),
        TokenChoice::Stale => model
            .stale_token(instance)
            .unwrap_or_else(|| model.current_token(instance).saturating_sub(1)),
        TokenChoice::Wrong(offset) => 1_000_000 + offset,
    }
}

/// The concrete command for a step, or `None` for `Reload` (which is not a command).
pub fn resolve(model: &Model, op: &Op) -> Option<Command> {
    let target = |pick: Pick, token: TokenChoice| {
        let instance = resolve_pick(model, pick);
        (instance, resolve_token(model, instance, token))
    };
    Some(match op {
        Op::Publish(messages) => Command::Publish {
            publisher: PUBLISHER.to_string(),
            messages: messages.iter().map(message).collect(),
        },
        Op::Lease {
            host,
            valid_holder,
            max_messages,
            duration_ms,
        } => Command::Lease {
            host: HOSTS.get(*host).unwrap_or(&"nowhere").to_string(),
            holder: if *valid_holder {
                "worker-1"
            } else {
                "bad holder"
            }
            .to_string(),
            max_messages: *max_messages,
            lease_duration_ms: *duration_ms,
        },
        Op::Renew(pick, token, duration) => {
            let (instance, token) = target(*pick, *token);
            Command::RenewLease {
                instance,
                token,
                lease_duration_ms: *duration,
            }
        }
        Op::Complete(pick, token) => {
            let (instance, token) = target(*pick, *token);
            Command::Complete { instance, token }
        }
        Op::Abandon(pick, token) => {
            let (instance, token) = target(*pick, *token);
            Command::Abandon { instance, token }
        }
        Op::Fail(pick, token) => {
            let (instance, token) = target(*pick, *token);
            Command::Fail {
                instance,
                token,
                reason: "send port refused".to_string(),
            }
        }
        Op::Resume(pick) => Command::Resume {
            instance: resolve_pick(model, *pick),
        },
        Op::Terminate(pick) => Command::Terminate {
            instance: resolve_pick(model, *pick),
            reason: "operator".to_string(),
        },
        Op::Tick => Command::Tick,
        Op::Reload => return None,
    })
}
