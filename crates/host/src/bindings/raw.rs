//! The bindings file as TOML gives it: every value keeps its place in the file (a
//! [`Spanned`]) so that a problem found later can name its line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBindings {
    #[serde(default)]
    pub host: Vec<RawHost>,
    #[serde(default)]
    pub receive_location: Vec<RawReceiveLocation>,
    #[serde(default)]
    pub send_port: Vec<RawSendPort>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub name: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReceiveLocation {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    pub adapter: Spanned<String>,
    pub address: Spanned<String>,
    pub pattern: Option<Spanned<String>>,
    pub archive: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub promote: Vec<RawPromotion>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPromotion {
    pub property: Spanned<String>,
    pub from: Spanned<String>,
    #[serde(rename = "type")]
    pub value_type: Option<Spanned<String>>,
    /// Carried with the message but not usable in filters.
    pub written: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSendPort {
    pub name: Spanned<String>,
    pub host: Spanned<String>,
    pub filter: Spanned<String>,
    pub priority: Option<Spanned<i64>>,
    pub enabled: Option<bool>,
    pub adapter: Spanned<String>,
    pub address: Spanned<String>,
    pub file_name: Option<Spanned<String>>,
    pub retry_count: Option<Spanned<i64>>,
    pub retry_interval: Option<Spanned<String>>,
    pub exponential_backoff: Option<bool>,
    pub backup: Option<Spanned<RawTransport>>,
}

/// A send port's backup transport: the same settings as the port's own transport.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    pub adapter: Spanned<String>,
    pub address: Spanned<String>,
    pub file_name: Option<Spanned<String>>,
    pub retry_count: Option<Spanned<i64>>,
    pub retry_interval: Option<Spanned<String>>,
    pub exponential_backoff: Option<bool>,
}
