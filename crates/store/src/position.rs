//! [`PositionCell`]: the replicated log position the store has applied up to, as saved with
//! the last committed batch (opaque bytes that the cluster layer encodes).

use std::sync::Mutex;

#[derive(Default)]
pub struct PositionCell {
    current: Mutex<Option<Vec<u8>>>,
}

impl PositionCell {
    pub fn new(position: Option<Vec<u8>>) -> PositionCell {
        PositionCell {
            current: Mutex::new(position),
        }
    }

    pub fn get(&self) -> Option<Vec<u8>> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set(&self, position: Option<Vec<u8>>) {
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = position;
    }
}
