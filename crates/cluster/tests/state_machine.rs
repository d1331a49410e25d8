//! The state machine applies committed entries to the store in log order, however many it
//! is given at once, and remembers how far it got.

use futures_util::stream;
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::storage::RaftStateMachine;
use tandem_cluster::state_machine::StateMachine;
use tandem_cluster::types::{Entry, LogId, Proposal};
use tandem_core::Command;
use tandem_store::Store;

/// More entries than one scheduling budget: a reordering of the store's queue shows here.
const ENTRIES: u64 = 600;

fn create_host_entry(index: u64) -> Entry {
    let log_id = LogId::new(
        LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    );
    Entry::new_normal(
        log_id,
        Proposal::Commands {
            timestamp_ms: 1_700_000_000_000 + index as i64,
            commands: vec![Command::CreateHost {
                name: format!("h{index}"),
            }]
            .into(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_entries_applied_at_once_reach_the_store_in_log_order() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = {
        let path = directory.path().to_path_buf();
        tokio::task::spawn_blocking(move || Store::open(&path))
            .await
            .expect("open task")
            .expect("store opens")
    };
    let mut state_machine =
        StateMachine::open(store.handle(), directory.path().join("snapshots")).expect("opens");
    let entries = (1..=ENTRIES).map(|index| Ok((create_host_entry(index), None)));
    state_machine
        .apply(stream::iter(entries))
        .await
        .expect("entries apply");

    let catalog = store.handle().catalog();
    assert_eq!(catalog.hosts.len() as u64, ENTRIES);
    for host in &catalog.hosts {
        // Host ids are handed out in apply order: entry i must have created host i.
        assert_eq!(
            host.name,
            format!("h{}", host.id),
            "applied out of log order"
        );
    }
    let (applied, _) = state_machine.applied_state().await.expect("applied state");
    assert_eq!(applied.map(|log_id| log_id.index()), Some(ENTRIES));
    drop(state_machine);
    tokio::task::spawn_blocking(move || store.close())
        .await
        .expect("close");
}
