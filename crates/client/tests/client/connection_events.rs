//! Connected → FailingOver → Reconnected, each reported once.

use std::time::Duration;

use tandem_client::{ConnectionEvent, ConnectionState, TandemClient};
use tokio::sync::broadcast;

use crate::support::{Answer, FakeNode, Script, settle_request};

fn received(events: &mut broadcast::Receiver<ConnectionEvent>) -> Vec<ConnectionEvent> {
    std::iter::from_fn(|| events.try_recv().ok()).collect()
}

#[tokio::test]
async fn a_failover_is_reported_once_with_its_outage() {
    let mut first = FakeNode::start(Script::always(Answer::Serve));
    // The next node is still electing for a few attempts.
    let second = FakeNode::start(Script::then(
        vec![Answer::Refuse("unavailable"), Answer::Refuse("unavailable")],
        Answer::Serve,
    ));
    let client =
        TandemClient::open(&format!("{},{}", first.address, second.address)).expect("open");
    let mut events = client.connection_events();
    assert_eq!(client.connection_state(), ConnectionState::Connecting);
    client.complete(settle_request()).await.expect("first node");
    client.complete(settle_request()).await.expect("first node");

    first.kill();
    // Concurrent calls, as a host instance's tasks make them, all see the failover.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.complete(settle_request()).await })
        })
        .collect();
    for call in calls {
        call.await.expect("call task").expect("failed over");
    }
    client
        .complete(settle_request())
        .await
        .expect("second node");

    let events = received(&mut events);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[0],
        ConnectionEvent::Connected {
            address: first.address.clone()
        }
    );
    let ConnectionEvent::FailingOver {
        from_address,
        reason,
    } = &events[1]
    else {
        panic!("expected failing over, got {events:?}");
    };
    assert_eq!(*from_address, first.address);
    assert!(reason.contains(&first.address), "{reason}");
    let ConnectionEvent::Reconnected { address, outage } = &events[2] else {
        panic!("expected reconnected, got {events:?}");
    };
    assert_eq!(*address, second.address);
    // Two election answers mean at least one pause.
    assert!(
        *outage > Duration::ZERO && *outage < Duration::from_secs(3),
        "{outage:?}"
    );
    assert_eq!(
        client.connection_state(),
        ConnectionState::Connected {
            address: second.address.clone()
        }
    );
}
