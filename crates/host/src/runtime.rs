//! One host instance: runs its host's receive locations and send ports until told to
//! stop, and never stops because the message box is away.
//!
//! Every call to the message box goes through a client that retries indefinitely, over
//! every node address given, so an outage (a failover, a restart of the whole replica
//! set) only pauses the work: FILE pickup stops, deliveries wait to be completed, and all
//! of it resumes by itself once an active node answers again. The HTTP receive endpoints
//! use the same connection with a short deadline instead, so that a sender gets `503` and
//! `Retry-After` rather than a hanging request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tandem_client::{ConnectionEvent, RetryPolicy, TandemClient};
use tandem_core::limits;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bindings::{Bindings, ReceiveEndpoint};
use crate::receive;
use crate::receive::http::HttpEndpoint;
use crate::send::{self, SendPorts, SendSide};

/// Who this instance is and where the message box is.
#[derive(Clone, Debug)]
pub struct InstanceOptions {
    /// Node addresses, comma-separated (`127.0.0.1:7400,127.0.0.1:7410`).
    pub servers: String,
    pub host: String,
    /// Recorded as the lease holder.
    pub instance: String,
    pub lease_duration: Duration,
}

/// What a started instance serves, for its ready line.
#[derive(Clone, Debug, Default)]
pub struct Started {
    pub receive_locations: Vec<String>,
    pub http_endpoints: Vec<(String, SocketAddr)>,
    pub send_ports: Vec<String>,
}

/// A running host instance.
pub struct HostInstance {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    started: Started,
}

impl HostInstance {
    /// Starts the receive locations and send ports of `options.host` from `bindings`.
    /// Fails only on what an operator must fix: a host the bindings do not declare, an
    /// HTTP listen address in use, addresses that cannot be parsed.
    pub async fn start(
        options: InstanceOptions,
        bindings: &Bindings,
    ) -> Result<HostInstance, String> {
        if !bindings.hosts.contains(&options.host) {
            return Err(format!(
                "host '{}' is not declared in the bindings (declared: {})",
                options.host,
                bindings.hosts.join(", ")
            ));
        }
        let patient = TandemClient::open(&options.servers)
            .map_err(|error| error.to_string())?
            .with_retry_policy(RetryPolicy::indefinitely())
            .with_call_timeout(Duration::from_millis(limits::HOST_CALL_TIMEOUT_MS))
            .with_publisher(options.instance.clone());
        let (shutdown, stopped) = watch::channel(false);
        let mut instance = HostInstance {
            shutdown,
            tasks: JoinSet::new(),
            started: Started::default(),
        };
        instance.watch_connection(&patient, &options);
        instance
            .start_receive_locations(&options, bindings, &patient, &stopped)
            .await?;
        instance.start_send_ports(&options, bindings, &patient, &stopped);
        Ok(instance)
    }

    pub fn started(&self) -> &Started {
        &self.started
    }

    /// Stops taking new work, lets work under way finish, and returns.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    async fn start_receive_locations(
        &mut self,
        options: &InstanceOptions,
        bindings: &Bindings,
        patient: &TandemClient,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), String> {
        let prompt = patient
            .clone()
            .with_retry_policy(RetryPolicy::until(Duration::from_millis(
                limits::HOST_HTTP_RECEIVE_DEADLINE_MS,
            )));
        for location in bindings.receive_locations_of(&options.host) {
            if !location.enabled {
                continue;
            }
            let stopped = stopped.clone();
            match &location.endpoint {
                ReceiveEndpoint::File(file) => {
                    let (location, file, client) =
                        (location.clone(), file.clone(), patient.clone());
                    self.tasks.spawn(async move {
                        receive::file::run(&location, &file, &client, stopped).await;
                    });
                }
                ReceiveEndpoint::Http(http) => {
                    let endpoint = HttpEndpoint::bind(location, http, prompt.clone())
                        .await
                        .map_err(|error| error.to_string())?;
                    let address = endpoint
                        .local_address()
                        .map_err(|error| error.to_string())?;
                    self.started
                        .http_endpoints
                        .push((location.name.clone(), address));
                    self.tasks.spawn(endpoint.serve(stopped));
                }
            }
            self.started.receive_locations.push(location.name.clone());
        }
        Ok(())
    }

    fn start_send_ports(
        &mut self,
        options: &InstanceOptions,
        bindings: &Bindings,
        patient: &TandemClient,
        stopped: &watch::Receiver<bool>,
    ) {
        let ports = SendPorts::new(bindings.send_ports_of(&options.host).cloned());
        if ports.is_empty() {
            return;
        }
        self.started.send_ports = bindings
            .send_ports_of(&options.host)
            .filter(|port| port.enabled)
            .map(|port| port.name.clone())
            .collect();
        let side = Arc::new(SendSide {
            client: patient.clone(),
            host: options.host.clone(),
            instance: options.instance.clone(),
            lease_duration: options.lease_duration,
            ports,
        });
        self.tasks.spawn(send::run(side, stopped.clone()));
    }

    /// Logs the outage and the recovery once each: receive locations pause and send ports
    /// hold their deliveries meanwhile.
    fn watch_connection(&mut self, client: &TandemClient, options: &InstanceOptions) {
        let mut events = client.connection_events();
        let mut stopped = self.shutdown.subscribe();
        let instance = options.instance.clone();
        self.tasks.spawn(async move {
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = stopped.changed() => return,
                };
                // The client logs each event with its details; this says what it means
                // for the host instance's work.
                match event {
                    Ok(ConnectionEvent::FailingOver { .. }) => tracing::warn!(
                        %instance,
                        "receive locations paused, deliveries held until an active node answers"
                    ),
                    Ok(ConnectionEvent::Reconnected { .. }) => {
                        tracing::info!(%instance, "receive locations and send ports resume")
                    }
                    Ok(ConnectionEvent::Connected { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}
