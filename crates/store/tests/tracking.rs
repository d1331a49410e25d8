//! Tracking events record each message's history, answer history queries by message id,
//! and are purged oldest first, only when older than the cut-off.

mod common;

use tandem_core::command::Command;
use tandem_core::outcome::Outcome;
use tandem_core::settings::Settings;
use tandem_core::tracking::TrackingKind;
use tandem_store::integrity;

use common::{create_catalog, lease, leased, open, publish, runtime};

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

        let history = handle
            .message_history(leases[0].message_id.to_string())
            .await
            .unwrap();
        let kinds: Vec<TrackingKind> = history.events.iter().map(|event| event.kind).collect();
        assert_eq!(
            kinds,
            [
                TrackingKind::Received,
                TrackingKind::Leased,
                TrackingKind::Completed
            ]
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
        assert_eq!(
            handle.execute(Command::Configure(retention)).await,
            Ok(Outcome::Configured)
        );
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
