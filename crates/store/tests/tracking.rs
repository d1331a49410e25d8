//! Tracking events record each message's history, answer history queries by message id
//! (also past the dedupe window, and for every message published under the same id), and
//! are purged oldest first, only when older than the cut-off; deleted messages' rows go
//! with their history.

mod common;

use tandem_core::command::Command;
use tandem_core::outcome::Outcome;
use tandem_core::settings::Settings;
use tandem_store::StoreHandle;
use tandem_store::integrity;

use common::{
    DELIVERED, configure, create_catalog, history_kinds, lease, leased, open, publish, runtime,
};

#[test]
fn history_shows_each_step_and_purge_removes_only_old_events() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open(directory.path());
    let handle = store.handle();
    runtime().block_on(async {
        create_catalog(&handle).await;
        for index in 0..3 {
            handle
                .execute(publish(&format!("t{index}"), "b"))
                .await
                .expect("publish");
        }
        let leases = leased(handle.execute(lease("h0", 1)).await);
        let complete = Command::Complete {
            instance: leases[0].instance,
            token: leases[0].token,
        };
        assert_eq!(handle.execute(complete).await, Ok(Outcome::Completed));

        assert_eq!(
            history_kinds(&handle, leases[0].message_id.as_str()).await,
            DELIVERED
        );

        let nothing_old = handle
            .execute(Command::PurgeTracking { before_ms: 0 })
            .await;
        assert_eq!(nothing_old, Ok(Outcome::TrackingPurged { events: 0 }));
        let history = handle.message_history("t1".to_string()).await.unwrap();
        assert_eq!(
            history.events.len(),
            1,
            "a purge with an old cut-off keeps everything"
        );

        let everything = handle
            .execute(Command::PurgeTracking {
                before_ms: i64::MAX,
            })
            .await;
        assert_eq!(everything, Ok(Outcome::TrackingPurged { events: 5 }));
        let history = handle.message_history("t1".to_string()).await.unwrap();
        assert!(history.events.is_empty(), "{:?}", history.events);
        assert_eq!(
            history.instances.len(),
            1,
            "purging tracking leaves messages alone"
        );
    });
    store.close();
    let report = integrity::check(directory.path()).expect("check");
    assert!(report.is_healthy(), "{:?}", report.problems);
    assert_eq!(report.tracking_events, 0);
}

#[test]
fn the_tick_purges_events_past_their_retention() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open(directory.path());
    let handle = store.handle();
    runtime().block_on(async {
        create_catalog(&handle).await;
        let retention = Settings {
            tracking_retention_ms: 50,
            ..Settings::default()
        };
        configure(&handle, retention).await;
        handle.execute(publish("old", "b")).await.expect("publish");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        handle.execute(publish("new", "b")).await.expect("publish");
        let Ok(Outcome::Ticked(report)) = handle.execute(Command::Tick).await else {
            panic!("tick failed");
        };
        assert_eq!(report.tracking_events_purged, 1, "{report:?}");
        assert!(
            handle
                .message_history("old".into())
                .await
                .unwrap()
                .events
                .is_empty()
        );
        assert_eq!(
            handle
                .message_history("new".into())
                .await
                .unwrap()
                .events
                .len(),
            1
        );
    });
    store.close();
}

/// Publishes `message_id`, then leases and completes it (its only instance is on h0).
async fn deliver(handle: &StoreHandle, message_id: &str) {
    handle
        .execute(publish(message_id, "b"))
        .await
        .expect("publish");
    let leases = leased(handle.execute(lease("h0", 1)).await);
    assert_eq!(leases[0].message_id.as_str(), message_id);
    let complete = Command::Complete {
        instance: leases[0].instance,
        token: leases[0].token,
    };
    assert_eq!(handle.execute(complete).await, Ok(Outcome::Completed));
}

/// A message's events are found from its seq, and its seq from its `messages` row: the row
/// of a deleted message stays past the dedupe window while the message's history is kept,
/// and leads to the history of every message published under the id; once the history is
/// purged, the rows go too.
#[test]
fn a_deleted_message_row_stays_with_its_history_and_leads_to_every_message_under_its_id() {
    let directory = tempfile::tempdir().expect("temp dir");
    let store = open(directory.path());
    let handle = store.handle();
    let id = "5f0c6a4e-93b1-4d2e-a7c8-1e9b0d3f2a64";
    runtime().block_on(async {
        create_catalog(&handle).await;
        let short_window = Settings {
            dedupe_window_ms: 1,
            ..Settings::default()
        };
        let tick = || async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            match handle.execute(Command::Tick).await {
                Ok(Outcome::Ticked(report)) => report,
                other => panic!("tick failed: {other:?}"),
            }
        };
        configure(&handle, short_window.clone()).await;
        deliver(&handle, id).await;
        let report = tick().await;
        assert_eq!(report.dedupe_entries_forgotten, 0, "{report:?}");
        assert_eq!(history_kinds(&handle, id).await, DELIVERED);

        deliver(&handle, id).await;
        assert_eq!(
            history_kinds(&handle, id).await,
            [DELIVERED, DELIVERED].concat(),
            "the history of both messages published under the id"
        );

        let short_retention = Settings {
            tracking_retention_ms: 1,
            ..short_window
        };
        configure(&handle, short_retention).await;
        let report = tick().await;
        assert_eq!(
            (
                report.tracking_events_purged,
                report.dedupe_entries_forgotten
            ),
            (6, 2),
            "{report:?}"
        );
        assert!(history_kinds(&handle, id).await.is_empty());
    });
    store.close();
    let rows: i64 = common::database(directory.path())
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE message_id = ?1",
            [id],
            |row| row.get(0),
        )
        .expect("count rows");
    assert_eq!(rows, 0, "no row is left of a message without history");
}
