//! The tapgate monitor: what operators see.
//!
//! - `stream`: reading the `tapgate:events` stream: history, and following it across Redis
//!   restarts without gaps or repeats.
//! - `text`: untrusted text made inert: controls and bidi characters escaped, length capped.
//! - `format`: stream entries as coloured terminal lines or JSON lines (pure functions).
//! - [`tail`]: `tapgate-monitor tail`, replay then follow, into any writer.
//! - `audit`: the audit trail of operator actions (`tapgate:monitor:audit`), shown by the
//!   dashboard and `tail --audit`.
//! - [`config`]: settings of the web dashboard.
//! - [`password`]: argon2 hashes of operator passwords.
//! - [`report`]: `tapgate-monitor report`, a service day's takings (pass sales, top-ups) and fares
//!   paid as you go from the stream, checked against the revenue counters.
//! - [`replace`]: replacing a lost card: its pass, wallet and recent events move to the new card
//!   and it is blocked, in one script (the dashboard's and `tapgate-admin`'s).
//! - [`web`]: `tapgate-monitor serve`, the live dashboard: counters, feed, charts, card lookup,
//!   deny list, logins.
//!
//! The public modules and items are what the `tapgate-monitor` binary, `tapgate-admin` and the
//! tests use; everything else is `pub(crate)`, and `unreachable_pub` keeps it so.

#![warn(unreachable_pub)]

mod audit;
pub mod config;
mod format;
pub mod password;
pub mod replace;
pub mod report;
mod stream;
pub mod tail;
mod text;
pub mod web;

pub use config::{ConfigError, Operator, ServeConfig};
pub use stream::{BadStreamId, StreamError, StreamId};
pub use tail::{TailConfig, TailError};
