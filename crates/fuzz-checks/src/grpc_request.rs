//! [`grpc_request`]: protobuf request bodies as the gRPC server decodes them (prost, from
//! `tandem_protocol::v1`), then converts and checks what was decoded with the same code the
//! server and the state machine use: wire properties to core properties
//! (`Property::try_from`), verdicts, names, filters, and core's validation of a new message.
//!
//! The first byte chooses the request (modulo 4): 0 `PublishRequest`, 1
//! `SettleBatchRequest`, 2 `CreateSubscriptionRequest`, 3 `CreateHostRequest`; the rest is
//! the encoded message.

use prost::Message;
use tandem_core::filter::Filter;
use tandem_core::message::NewMessage;
use tandem_core::settings::Settings;
use tandem_core::{MessageId, Property, validate};
use tandem_protocol::message_id::new_message_id;
use tandem_protocol::v1;

use crate::{Verdict, clear};

/// Decodes `data[1..]` as the request `data[0]` names; accepted when it decodes and every
/// part of it converts and passes validation.
pub fn grpc_request(data: &[u8]) -> Verdict {
    let Some((kind, body)) = data.split_first() else {
        return Verdict::Refused;
    };
    let checked = match kind % 4 {
        0 => decode(body).and_then(publish),
        1 => decode(body).and_then(settle_batch),
        2 => decode(body).and_then(create_subscription),
        _ => decode(body).and_then(|request: v1::CreateHostRequest| name("host", &request.name)),
    };
    match checked {
        Ok(()) => Verdict::Accepted,
        Err(message) => clear(&message, "a gRPC request"),
    }
}

fn decode<T: Message + Default>(body: &[u8]) -> Result<T, String> {
    T::decode(body).map_err(|error| error.to_string())
}

/// As the server converts a publish (an empty message id gets a new one), then as the state
/// machine validates each message.
fn publish(request: v1::PublishRequest) -> Result<(), String> {
    for message in request.messages {
        let properties = message
            .properties
            .into_iter()
            .map(Property::try_from)
            .collect::<Result<Vec<Property>, _>>()
            .map_err(|error| error.to_string())?;
        let message_id = if message.message_id.is_empty() {
            new_message_id()
        } else {
            message.message_id
        };
        let message = NewMessage {
            message_id: MessageId(message_id),
            body: message.body,
            properties,
        };
        validate::new_message(&message, &Settings::default()).map_err(|error| error.message)?;
    }
    Ok(())
}

fn settle_batch(request: v1::SettleBatchRequest) -> Result<(), String> {
    for settlement in request.settlements {
        let verdict = v1::Verdict::try_from(settlement.verdict)
            .map_err(|_| format!("unknown verdict {}", settlement.verdict))?;
        if verdict == v1::Verdict::Fail {
            validate::reason(&settlement.reason).map_err(|error| error.message)?;
        }
    }
    Ok(())
}

fn create_subscription(request: v1::CreateSubscriptionRequest) -> Result<(), String> {
    name("subscription", &request.name)?;
    name("host", &request.host)?;
    Filter::parse(&request.filter).map_err(|error| error.to_string())?;
    Ok(())
}

fn name(kind: &str, text: &str) -> Result<(), String> {
    validate::name(kind, text).map_err(|error| error.message)
}
