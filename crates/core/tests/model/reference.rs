//! A tiny, independent reference model of the MessageBox's delivery semantics, written from
//! the design (publish, dedupe, throttle, routing by equality, leases, retries, the backup
//! transport, suspension) and not from the machine's code. It interprets the same
//! `Command`s as plain data.

use std::collections::BTreeMap;

use tandem_core::command::Command;
use tandem_core::error::ErrorCode;
use tandem_core::limits;
use tandem_core::message::NewMessage;
use tandem_core::outcome::TickReport;
use tandem_core::value::Value;

pub const HOSTS: [&str; 2] = ["h0", "h1"];
pub const PUBLISHER: &str = "p";

/// How often, and how far apart, one transport retries.
#[derive(Clone, Copy, Debug)]
pub struct RetrySpec {
    pub retry_count: u32,
    pub retry_interval_ms: u64,
    pub exponential_backoff: bool,
}

impl RetrySpec {
    /// The wait before this transport's next delivery after its `failures`-th failure.
    fn delay_ms(&self, failures: u32) -> u64 {
        if !self.exponential_backoff {
            return self.retry_interval_ms;
        }
        let factor = 1_u64 << failures.saturating_sub(1).min(40);
        (self.retry_interval_ms * factor).min(limits::MAX_RETRY_INTERVAL_MS)
    }
}

/// One subscription of the setup: `Kind == "a" [or Kind == "b"]` into one host, with its
/// primary transport's retries and maybe a backup transport's.
#[derive(Clone, Debug)]
pub struct SubscriptionSpec {
    pub kinds: Vec<&'static str>,
    pub host: usize,
    pub priority: u8,
    pub retry: RetrySpec,
    pub backup: Option<RetrySpec>,
}

impl SubscriptionSpec {
    pub fn filter(&self) -> String {
        let predicates: Vec<String> = self
            .kinds
            .iter()
            .map(|kind| format!("Kind == \"{kind}\""))
            .collect();
        predicates.join(" or ")
    }

    fn primary_deliveries(&self) -> u32 {
        self.retry.retry_count + 1
    }

    /// Every delivery both transports allow together.
    fn deliveries(&self) -> u32 {
        let backup = self.backup.map_or(0, |backup| backup.retry_count + 1);
        self.primary_deliveries() + backup
    }

    fn is_backup_delivery(&self, attempt: u32) -> bool {
        self.backup.is_some() && attempt > self.primary_deliveries()
    }

    /// The wait before the next delivery after delivery `attempt` failed, if there is one:
    /// the primary's interval, none when switching to the backup, then the backup's.
    fn retry_delay_ms(&self, attempt: u32) -> Option<u64> {
        if attempt >= self.deliveries() {
            return None;
        }
        let primary = self.primary_deliveries();
        Some(if attempt < primary {
            self.retry.delay_ms(attempt)
        } else if attempt == primary {
            0
        } else {
            self.backup
                .expect("deliveries beyond the primary's")
                .delay_ms(attempt - primary)
        })
    }
}

#[derive(Clone, Debug)]
pub struct Setup {
    pub subscriptions: Vec<SubscriptionSpec>,
    pub dedupe_window_ms: u64,
    pub throttle_message_count: u64,
    pub max_body_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Ready,
    Delayed,
    Leased,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInstance {
    pub id: u64,
    pub message_seq: u64,
    pub message_id: String,
    /// Index into `Setup::subscriptions`; the machine's id is this plus one.
    pub subscription: usize,
    pub host: usize,
    pub priority: u8,
    pub state: State,
    pub attempts: u32,
    pub lease_token: u64,
    pub lease_expires_at_ms: i64,
    pub visible_at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct ModelMessage {
    pub message_id: String,
    pub body: Vec<u8>,
}

/// What became of every instance ever created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Present,
    Completed { token: u64 },
    Terminated,
}

/// What a command observably did. Both the model and the machine's outcomes map to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// The code and, for throttling, the retry-after hint.
    Error(ErrorCode, Option<u64>),
    Published(Vec<Result<Receipt, (ErrorCode, Option<u64>)>>),
    Leased(Vec<Lease>),
    Renewed {
        expires_at_ms: i64,
    },
    Completed,
    Abandoned,
    Failed {
        suspended: bool,
    },
    Resumed,
    Terminated,
    Ticked(TickReport),
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: String,
    pub duplicate: bool,
    pub instances: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub instance: u64,
    pub message_id: String,
    pub token: u64,
    pub attempt: u32,
    pub expires_at_ms: i64,
    pub subscription: u64,
    pub priority: u8,
    pub body: Vec<u8>,
    pub backup_transport: bool,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub setup: Setup,
    pub last_ms: i64,
    pub next_message_seq: u64,
    pub next_instance_id: u64,
    pub next_lease_token: u64,
    pub messages: BTreeMap<u64, ModelMessage>,
    pub instances: BTreeMap<u64, ModelInstance>,
    /// The latest publish time of every message id within the window: what de-duplicates.
    pub dedupe: BTreeMap<String, i64>,
    /// What the tables must hold for deleted messages: one entry per deleted message, by
    /// deletion time and seq (a stored message is its own entry).
    pub tombstones: BTreeMap<(i64, u64), String>,
    pub fates: BTreeMap<u64, Fate>,
    /// Every token ever granted per instance, oldest first.
    pub tokens: BTreeMap<u64, Vec<u64>>,
}

fn error(code: ErrorCode) -> Observed {
    Observed::Error(code, None)
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= limits::MAX_NAME_BYTES
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn valid_message_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= limits::MAX_MESSAGE_ID_BYTES
        && !text.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn valid_lease_duration(duration_ms: u64) -> bool {
    (limits::MIN_LEASE_DURATION_MS..=limits::MAX_LEASE_DURATION_MS).contains(&duration_ms)
}

impl Model {
    /// The model after the setup commands: hosts 1 and 2, subscriptions 1.. in order.
    pub fn new(setup: Setup) -> Model {
        Model {
            setup,
            last_ms: 0,
            next_message_seq: 1,
            next_instance_id: 1,
            next_lease_token: 1,
            messages: BTreeMap::new(),
            instances: BTreeMap::new(),
            dedupe: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            fates: BTreeMap::new(),
            tokens: BTreeMap::new(),
        }
    }

    pub fn ids_in(&self, state: State) -> Vec<u64> {
        self.instances
            .values()
            .filter(|instance| instance.state == state)
            .map(|instance| instance.id)
            .collect()
    }

    /// Instances of `host` per state: (ready, delayed, leased, suspended).
    pub fn depth(&self, host: usize) -> [u64; 4] {
        let mut depth = [0; 4];
        for instance in self.instances.values().filter(|i| i.host == host) {
            depth[instance.state as usize] += 1;
        }
        depth
    }

    /// The earliest lease expiry or retry time at or after `now`.
    pub fn next_deadline(&self, now: i64) -> Option<i64> {
        self.instances
            .values()
            .filter_map(|instance| match instance.state {
                State::Leased => Some(instance.lease_expires_at_ms),
                State::Delayed => Some(instance.visible_at_ms),
                _ => None,
            })
            .filter(|deadline| *deadline >= now)
            .min()
    }

    /// The token a well-behaved holder of `id` would present (0 if none was ever granted).
    pub fn current_token(&self, id: u64) -> u64 {
        self.tokens
            .get(&id)
            .and_then(|tokens| tokens.last())
            .copied()
            .unwrap_or(0)
    }

    /// An older token of `id`, if it had more than one lease.
    pub fn stale_token(&self, id: u64) -> Option<u64> {
        self.tokens
            .get(&id)
            .filter(|tokens| tokens.len() > 1)
            .map(|tokens| tokens[0])
    }

    pub fn apply(&mut self, command: &Command, timestamp_ms: i64) -> Observed {
        let now = timestamp_ms.max(self.last_ms);
        self.last_ms = now;
        match command {
            Command::Publish { messages, .. } => Observed::Published(
                messages
                    .iter()
                    .map(|message| self.publish_one(message, now))
                    .collect(),
            ),
            Command::Lease {
                host,
                holder,
                max_messages,
                lease_duration_ms,
            } => self.lease(host, holder, *max_messages, *lease_duration_ms, now),
            Command::RenewLease {
                instance,
                token,
                lease_duration_ms,
            } => {
                if !valid_lease_duration(*lease_duration_ms) {
                    return error(ErrorCode::InvalidArgument);
                }
                match self.current_lease(*instance, *token, now) {
                    Err(code) => error(code),
                    Ok(leased) => {
                        leased.lease_expires_at_ms = now + *lease_duration_ms as i64;
                        Observed::Renewed {
                            expires_at_ms: leased.lease_expires_at_ms,
                        }
                    }
                }
            }
            Command::Complete { instance, token } => {
                if let Err(code) = self.current_lease(*instance, *token, now) {
                    return error(code);
                }
                self.remove(*instance, Fate::Completed { token: *token });
                Observed::Completed
            }
            Command::Abandon { instance, token } => {
                match self.current_lease(*instance, *token, now) {
                    Err(code) => error(code),
                    Ok(leased) => {
                        leased.attempts = leased.attempts.saturating_sub(1);
                        leased.state = State::Ready;
                        Observed::Abandoned
                    }
                }
            }
            Command::Fail {
                instance, token, ..
            } => {
                if let Err(code) = self.current_lease(*instance, *token, now) {
                    return error(code);
                }
                let suspended = self.retry_or_suspend(*instance, now);
                Observed::Failed { suspended }
            }
            Command::Resume { instance } => match self.instances.get_mut(instance) {
                None => error(ErrorCode::NotFound),
                Some(found) if found.state != State::Suspended => error(ErrorCode::InvalidState),
                Some(found) => {
                    found.state = State::Ready;
                    found.attempts = 0;
                    Observed::Resumed
                }
            },
            Command::Terminate { instance, .. } => {
                if !self.instances.contains_key(instance) {
                    return error(ErrorCode::NotFound);
                }
                self.remove(*instance, Fate::Terminated);
                Observed::Terminated
            }
            Command::Tick => Observed::Ticked(self.tick(now)),
            other => panic!("the model does not interpret {other:?}"),
        }
    }

    fn publish_one(
        &mut self,
        message: &NewMessage,
        now: i64,
    ) -> Result<Receipt, (ErrorCode, Option<u64>)> {
        let id = message.message_id.as_str();
        if !valid_message_id(id) {
            return Err((ErrorCode::InvalidArgument, None));
        }
        if message.body.len() as u64 > self.setup.max_body_bytes {
            return Err((ErrorCode::TooLarge, None));
        }
        let window = self.setup.dedupe_window_ms as i64;
        if self.dedupe.get(id).is_some_and(|at| now - at < window) {
            return Ok(Receipt {
                message_id: id.to_string(),
                duplicate: true,
                instances: Vec::new(),
            });
        }
        if self.messages.len() as u64 >= self.setup.throttle_message_count {
            return Err((ErrorCode::Throttled, Some(limits::THROTTLE_RETRY_AFTER_MS)));
        }
        let kind = message
            .properties
            .iter()
            .rev()
            .find(|property| property.name == "Kind")
            .filter(|property| property.promoted)
            .map(|property| property.value.clone());
        let matching: Vec<usize> = (0..self.setup.subscriptions.len())
            .filter(|&index| {
                self.setup.subscriptions[index]
                    .kinds
                    .iter()
                    .any(|k| kind == Some(Value::String(k.to_string())))
            })
            .collect();
        if matching.is_empty() {
            return Err((ErrorCode::NoRoute, None));
        }
        let seq = self.next_message_seq;
        self.next_message_seq += 1;
        self.messages.insert(
            seq,
            ModelMessage {
                message_id: id.to_string(),
                body: message.body.clone(),
            },
        );
        self.dedupe.insert(id.to_string(), now);
        let mut created = Vec::new();
        for index in matching {
            let spec = &self.setup.subscriptions[index];
            let instance = ModelInstance {
                id: self.next_instance_id,
                message_seq: seq,
                message_id: id.to_string(),
                subscription: index,
                host: spec.host,
                priority: spec.priority,
                state: State::Ready,
                attempts: 0,
                lease_token: 0,
                lease_expires_at_ms: 0,
                visible_at_ms: 0,
            };
            self.next_instance_id += 1;
            self.fates.insert(instance.id, Fate::Present);
            created.push(instance.id);
            self.instances.insert(instance.id, instance);
        }
        Ok(Receipt {
            message_id: id.to_string(),
            duplicate: false,
            instances: created,
        })
    }

    fn lease(
        &mut self,
        host: &str,
        holder: &str,
        max_messages: u32,
        duration_ms: u64,
        now: i64,
    ) -> Observed {
        let Some(host) = HOSTS.iter().position(|name| *name == host) else {
            return error(ErrorCode::NotFound);
        };
        if !valid_name(holder)
            || max_messages == 0
            || max_messages > limits::MAX_LEASE_BATCH
            || !valid_lease_duration(duration_ms)
        {
            return error(ErrorCode::InvalidArgument);
        }
        let mut ready: Vec<(u8, u64)> = self
            .instances
            .values()
            .filter(|i| i.host == host && i.state == State::Ready)
            .map(|i| (i.priority, i.id))
            .collect();
        ready.sort();
        let mut leases = Vec::new();
        for (_, id) in ready.into_iter().take(max_messages as usize) {
            let token = self.next_lease_token;
            self.next_lease_token += 1;
            self.tokens.entry(id).or_default().push(token);
            let instance = self.instances.get_mut(&id).expect("listed above");
            instance.attempts += 1;
            let spec = &self.setup.subscriptions[instance.subscription];
            instance.lease_token = token;
            instance.lease_expires_at_ms = now + duration_ms as i64;
            instance.state = State::Leased;
            leases.push(Lease {
                instance: id,
                message_id: instance.message_id.clone(),
                token,
                attempt: instance.attempts,
                expires_at_ms: instance.lease_expires_at_ms,
                subscription: instance.subscription as u64 + 1,
                priority: instance.priority,
                body: self.messages[&instance.message_seq].body.clone(),
                backup_transport: spec.is_backup_delivery(instance.attempts),
            });
        }
        Observed::Leased(leases)
    }

    /// The lease check every verdict (renew, complete, abandon, fail) starts with.
    fn current_lease(
        &mut self,
        id: u64,
        token: u64,
        now: i64,
    ) -> Result<&mut ModelInstance, ErrorCode> {
        let instance = self.instances.get_mut(&id).ok_or(ErrorCode::NotFound)?;
        if instance.lease_token != token {
            return Err(ErrorCode::LeaseMismatch);
        }
        if instance.state != State::Leased || instance.lease_expires_at_ms <= now {
            return Err(ErrorCode::LeaseExpired);
        }
        Ok(instance)
    }

    /// Returns whether the instance was suspended.
    fn retry_or_suspend(&mut self, id: u64, now: i64) -> bool {
        let instance = self.instances.get_mut(&id).expect("checked by the caller");
        let spec = &self.setup.subscriptions[instance.subscription];
        let Some(delay) = spec.retry_delay_ms(instance.attempts) else {
            instance.state = State::Suspended;
            return true;
        };
        if delay == 0 {
            instance.state = State::Ready;
        } else {
            instance.state = State::Delayed;
            instance.visible_at_ms = now + delay as i64;
        }
        false
    }

    fn tick(&mut self, now: i64) -> TickReport {
        let mut report = TickReport::default();
        for instance in self.instances.values_mut() {
            if instance.state == State::Leased && instance.lease_expires_at_ms <= now {
                report.leases_expired += 1;
                let deliveries = self.setup.subscriptions[instance.subscription].deliveries();
                if instance.attempts < deliveries {
                    instance.state = State::Ready;
                } else {
                    instance.state = State::Suspended;
                    report.suspended += 1;
                }
            } else if instance.state == State::Delayed && instance.visible_at_ms <= now {
                instance.state = State::Ready;
                report.retries_released += 1;
            }
        }
        let forget_before = now - self.setup.dedupe_window_ms as i64;
        self.dedupe.retain(|_, at| *at >= forget_before);
        let before = self.tombstones.len();
        self.tombstones.retain(|(at, _), _| *at >= forget_before);
        report.dedupe_entries_forgotten = (before - self.tombstones.len()) as u64;
        report
    }

    /// Removes an instance, and its message with its last instance.
    fn remove(&mut self, id: u64, fate: Fate) {
        let instance = self.instances.remove(&id).expect("checked by the caller");
        self.fates.insert(id, fate);
        let seq = instance.message_seq;
        if !self.instances.values().any(|i| i.message_seq == seq) {
            let message = self
                .messages
                .remove(&seq)
                .expect("an instance's message is stored");
            // Keyed by deletion time: the command being applied is the latest.
            self.tombstones
                .insert((self.last_ms, seq), message.message_id);
        }
    }
}
