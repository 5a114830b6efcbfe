//! The tapgate wire contract.
//!
//! Everything two tapgate components must agree on lives here, and only here:
//!
//! - [`broker`]: the broker URL every component is configured with.
//! - [`ids`]: validated identifiers (device, card, message id) and device kinds.
//! - [`topic`]: MQTT topic names, subscription filters and topic parsing.
//! - [`message`]: device → bridge payloads (taps, button presses) and bridge → device decisions.
//! - [`validate`]: turning raw device payloads into typed messages, or a specific refusal.
//! - [`fares`]: the operator's fare catalogue: products, prices, validity, service days.
//! - [`payg`]: pay as you go: a card's balance, the fare at an entry, daily and weekly caps.
//! - [`rules`]: the pass rules as a pure function, the reference model of the bridge's script.
//! - [`event`]: events the bridge publishes for monitors and appends to the event stream.
//! - [`status`]: device presence (status, last will and heartbeat, sent unretained).
//! - [`keys`]: Redis key names that other tools (monitor, Grafana) read.
//! - [`fields`]: the field names of those keys' hashes.
//! - [`stream`]: events as entries of the event stream, a stream field per event field.
//! - [`text`]: escaping untrusted device text before it reaches a log, an event or a terminal.
//!
//! `docs/protocol.md` at the repository root documents the same contract with examples.

#![warn(missing_docs)]

pub mod broker;
pub mod event;
pub mod fares;
pub mod fields;
pub mod ids;
pub mod keys;
pub mod message;
pub mod pass_record;
pub mod payg;
pub mod rules;
pub mod status;
pub mod stream;
pub mod text;
pub mod topic;
pub mod validate;

pub use event::{Event, EventKind, Notice};
pub use fares::{Catalogue, Currency, Terms, Validity};
pub use ids::{CardId, DeviceId, DeviceKind, IdError, MessageId, ProductId};
pub use message::{
    Button, ClockSource, Decision, DenyReason, Offer, Outcome, PassInfo, Stamp, Stamped, Tap,
    TapMode,
};
pub use topic::{InboundTopic, MessageKind, TopicError, Topics};
pub use validate::{RejectReason, Rejection, MAX_PAYLOAD_BYTES};
