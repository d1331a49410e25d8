//! `Execution::Inline` starts no OS thread: a store and a Raft log opened, written, read,
//! snapshotted and closed on a current-thread runtime leave the process with the threads it
//! had. The process's threads are counted, so this file holds a single test: cargo runs each
//! test file in its own process, and the tests of one file on threads of their own.

use openraft::entry::RaftEntry;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use tandem_cluster::log_store::LogStore;
use tandem_cluster::types::{Entry, Vote, log_id};
use tandem_core::Command;
use tandem_store::{Batch, Execution, InstanceQuery, Store};

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("list this process's threads")
        .count()
}

fn entries(first: u64, last: u64) -> Vec<Entry> {
    (first..=last)
        .map(|index| Entry::new_blank(log_id(1, 1, index)))
        .collect()
}

fn batch(index: u8, commands: Vec<Command>) -> Batch {
    Batch {
        timestamp_ms: 1_700_000_000_000 + i64::from(index),
        commands,
        event: None,
        position: Some(vec![index]),
    }
}

fn publish(id: &str) -> Command {
    Command::Publish {
        publisher: "test".to_string(),
        messages: vec![tandem_core::message::NewMessage {
            message_id: tandem_core::ids::MessageId(id.to_string()),
            body: id.as_bytes().to_vec(),
            properties: vec![tandem_core::context::Property {
                name: "Kind".to_string(),
                value: tandem_core::value::Value::String("a".to_string()),
                promoted: true,
            }],
        }],
    }
}

/// Everything a simulated node asks of its storage, on `runtime`'s thread.
async fn use_storage(directory: &std::path::Path, execution: Execution) {
    let store = Store::open_with(&directory.join("store"), execution).expect("open the store");
    let mut log =
        LogStore::open_with(&directory.join("raft"), execution).expect("open the raft log");
    let handle = store.handle();

    log.blocking_append(entries(0, 9)).await.expect("append");
    log.save_vote(&Vote::new_committed(1, 1))
        .await
        .expect("save the vote");
    log.truncate_after(Some(entries(7, 7)[0].log_id()))
        .await
        .expect("truncate");
    log.purge(entries(2, 2)[0].log_id()).await.expect("purge");
    let mut reader = log.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(0..10).await.expect("read").len(),
        5
    );
    assert!(reader.read_vote().await.expect("vote").is_some());
    log.get_log_state().await.expect("log state");

    let catalog = vec![
        Command::CreateHost {
            name: "h0".to_string(),
        },
        Command::CreateSubscription {
            name: "s0".to_string(),
            host: "h0".to_string(),
            filter: "Kind == \"a\"".to_string(),
            priority: 1,
            retry: Default::default(),
            backup: None,
        },
    ];
    handle.apply(batch(1, catalog)).await.expect("catalog");
    let mut answers = Vec::new();
    for index in 2..10 {
        let answer = handle
            .submit(batch(index, vec![publish(&format!("m{index}"))]))
            .await
            .expect("submit");
        answers.push(answer);
    }
    for answer in answers {
        let outcomes = answer.await.expect("commit");
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
    }
    let query = InstanceQuery {
        limit: 100,
        ..InstanceQuery::default()
    };
    assert_eq!(handle.instances(query).await.expect("instances").len(), 8);
    assert!(
        handle
            .message_body("m5".to_string())
            .await
            .expect("body")
            .is_some()
    );
    handle
        .message_history("m5".to_string())
        .await
        .expect("history");
    handle.cluster_events(10).await.expect("events");
    let snapshot = directory.join("snapshot.sqlite");
    let position = handle
        .write_snapshot(snapshot.clone())
        .await
        .expect("write a snapshot");
    assert_eq!(position, Some(vec![9]));
    handle
        .install_snapshot(snapshot)
        .await
        .expect("install the snapshot");

    drop(log);
    store.shutdown().await;
}

#[test]
fn inline_storage_runs_on_the_runtime_thread_alone() {
    let directory = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let before = thread_count();
        use_storage(directory.path(), Execution::Inline).await;
        let after = thread_count();
        assert_eq!(after, before, "inline storage started threads");
    });

    // The count does see storage threads: the committer, the log writer and the blocking
    // pool's.
    let directory = tempfile::tempdir().expect("temp dir");
    runtime.block_on(async {
        let before = thread_count();
        use_storage(directory.path(), Execution::Threads).await;
        let after = thread_count();
        assert!(after > before, "{before} threads before, {after} after");
    });
}
