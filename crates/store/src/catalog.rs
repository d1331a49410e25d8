//! A read-only view of the catalog (hosts with queue depths, subscriptions, counters and
//! settings), published by the committer after every commit, and before it answers a batch
//! early (see [`crate::committer`]), so readers never wait for it.

use std::sync::{Arc, RwLock};

use tandem_core::MessageBox;
use tandem_core::host::Host;
use tandem_core::machine::MachineState;
use tandem_core::subscription::Subscription;

#[derive(Clone, Debug)]
pub struct Catalog {
    pub hosts: Vec<Host>,
    pub subscriptions: Arc<Vec<Subscription>>,
    pub state: MachineState,
    pub throttled: bool,
}

impl Catalog {
    /// Reuses `subscriptions` when the caller knows they did not change (they can be many).
    pub fn from_machine(
        machine: &MessageBox,
        subscriptions: Option<Arc<Vec<Subscription>>>,
    ) -> Catalog {
        Catalog {
            hosts: machine.hosts().cloned().collect(),
            subscriptions: subscriptions
                .unwrap_or_else(|| Arc::new(machine.subscriptions().cloned().collect())),
            state: machine.state().clone(),
            throttled: machine.throttled(),
        }
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.name == name)
    }
}

/// The latest published catalog.
pub struct CatalogCell {
    current: RwLock<Arc<Catalog>>,
}

impl CatalogCell {
    pub fn new(catalog: Catalog) -> CatalogCell {
        CatalogCell {
            current: RwLock::new(Arc::new(catalog)),
        }
    }

    pub fn current(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn publish(&self, catalog: Catalog) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
    }
}
