//! In-memory storage for tests that run real `openraft::Raft` nodes, standing in for the
//! SQLite log and state machine.

pub mod memory_log;
pub mod memory_state_machine;
