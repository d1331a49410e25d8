//! Publish, lease and complete over gRPC; the queue empties and the history tells the story.

use tandem_protocol::v1;

use crate::support::{TestNode, bounded, host_with_subscription, order_message, publish, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_lease_complete_over_grpc() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
        let results = publish(&node, vec![order_message("order-1", b"hello")]).await;
        assert_eq!(results.len(), 1);
        assert!(results[0].error.is_none(), "{:?}", results[0].error);
        assert_eq!(results[0].instances.len(), 1);
        assert_eq!(
            status(&node).await.hosts[0].depth.map(|depth| depth.ready),
            Some(1)
        );

        let mut message_box = node.message_box().await;
        let leased = message_box
            .lease(v1::LeaseRequest {
                host: "orders".into(),
                holder: "worker-1".into(),
                ..Default::default()
            })
            .await
            .expect("lease")
            .into_inner()
            .messages;
        assert_eq!(leased.len(), 1);
        let message = &leased[0];
        assert_eq!(message.message_id, "order-1");
        assert_eq!(message.body, b"hello");
        assert_eq!(message.publisher, "tests");
        assert_eq!(message.attempt, 1);
        assert!(
            message
                .properties
                .iter()
                .any(|property| property.name == b"MessageType")
        );

        message_box
            .complete(v1::SettleRequest {
                instance: message.instance,
                token: message.token,
            })
            .await
            .expect("complete");

        let after = status(&node).await;
        assert_eq!(after.data_dir, node.data_dir.path().display().to_string());
        let depth = after.hosts[0].depth.expect("depth");
        assert_eq!((depth.ready, depth.leased, depth.suspended), (0, 0, 0));
        assert_eq!(after.message_count, 0);

        let history = node
            .admin()
            .await
            .message_history(v1::MessageHistoryRequest {
                message_id: "order-1".into(),
            })
            .await
            .expect("history")
            .into_inner();
        let kinds: Vec<&str> = history
            .events
            .iter()
            .map(|event| event.kind.as_str())
            .collect();
        for expected in ["received", "leased", "completed"] {
            assert!(kinds.contains(&expected), "{kinds:?} lacks {expected}");
        }
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_stream_delivers_messages_as_they_arrive() {
    let node = TestNode::start(|_| {}).await;
    bounded(async {
        host_with_subscription(&node, "orders", r#"MessageType == "Order""#).await;
        let mut stream = node
            .message_box()
            .await
            .lease_stream(v1::LeaseRequest {
                host: "orders".into(),
                holder: "streamer".into(),
                ..Default::default()
            })
            .await
            .expect("stream opens")
            .into_inner();
        publish(&node, vec![order_message("streamed-1", b"a")]).await;
        publish(&node, vec![order_message("streamed-2", b"b")]).await;
        let first = stream
            .message()
            .await
            .expect("stream ok")
            .expect("a message");
        let second = stream
            .message()
            .await
            .expect("stream ok")
            .expect("a message");
        assert_eq!(first.message_id, "streamed-1");
        assert_eq!(second.message_id, "streamed-2");
    })
    .await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_reported_plainly() {
    let first = TestNode::start(|_| {}).await;
    let taken = first.node.grpc_address();
    let directory = tempfile::tempdir().expect("temporary directory");
    let config = tandem_server::NodeConfig {
        data_dir: directory.path().to_path_buf(),
        grpc_listen: taken,
        http_listen: "127.0.0.1:0".parse().expect("address"),
        raft_listen: "127.0.0.1:0".parse().expect("address"),
        ..Default::default()
    };
    let error = match tandem_server::Node::start(config).await {
        Ok(_) => panic!("a second node cannot bind the same port"),
        Err(error) => error.to_string(),
    };
    assert_eq!(error, format!("cannot listen on {taken}: address in use"));
    first.shutdown().await;
}
