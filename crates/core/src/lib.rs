//! # Tandem core
//!
//! The pure, deterministic heart of a MessageBox: no I/O, no clock, no randomness, no
//! hash-map iteration order. The one place that mutates state is
//! [`MessageBox::apply`]`(tables, command, timestamp)`; the large tables it works on are
//! behind the [`Tables`] trait, which the store implements on SQLite.
//!
//! # Layout
//!
//! - [`value`]: typed property values and typed comparison.
//! - [`timestamp`]: RFC 3339 <-> epoch milliseconds, pure arithmetic.
//! - [`duration`]: durations as people write them (`500ms`, `30s`, `5m`), for the CLI and
//!   configuration files; [`byte_size`]: byte counts as people read them.
//! - [`context`]: a message's promoted and written properties.
//! - [`filter`]: the subscription filter language (parser, evaluator) and the routing index.
//! - [`ids`], [`message`], [`host`], [`subscription`], [`instance`], [`tracking`]: vocabulary.
//! - [`settings`]: replicated settings that `apply` depends on.
//! - [`command`] and [`outcome`]: what `apply` takes and answers.
//! - [`error`]: error codes with messages a person understands; [`condition`]: conditions
//!   an operator is told about once when they start and once when they end.
//! - [`limits`]: every limit and default, named.
//! - [`validate`]: input checks shared by the commands.
//! - [`tables`]: the storage interface; [`memory_tables`]: its in-memory reference.
//! - [`machine`]: the MessageBox state machine and its command handlers.

pub mod byte_size;
pub mod command;
pub mod condition;
pub mod context;
pub mod duration;
pub mod error;
pub mod filter;
pub mod host;
pub mod ids;
pub mod instance;
pub mod limits;
pub mod machine;
pub mod memory_tables;
pub mod message;
pub mod outcome;
pub mod settings;
pub mod subscription;
pub mod tables;
pub mod timestamp;
pub mod tracking;
pub mod validate;
pub mod value;

pub use command::Command;
pub use context::{Context, Property};
pub use error::{Error, ErrorCode};
pub use ids::MessageId;
pub use machine::{MachineState, MessageBox};
pub use memory_tables::MemoryTables;
pub use outcome::Outcome;
pub use tables::Tables;
pub use value::{Value, ValueType};
