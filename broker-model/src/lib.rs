//! What the MQTT broker must allow, and EMQX's configuration as a model that answers it, so the
//! policy is checked without a running broker.
//!
//! - [`policy`] — the broker access policy as a table of cases (who may publish or subscribe
//!   where), with the service logins; both brokers are held against it.
//! - [`hocon`] — a strict reader for the HOCON subset EMQX files use (`emqx.conf`, the rule
//!   engine file): anything outside it is refused with its line, never guessed.
//! - `conf` — [`check_broker`] and [`check_rules`]: the parsed files held against what tapgate
//!   needs (TLS, `use_username_as_clientid`, `no_match = deny`, one `HINCRBY` action per
//!   documented `tapgate:emqx:*` counter, ...).
//! - `erl` — [`consult`]: `acl.conf` read by Erlang itself (`file:consult/1`, as EMQX reads it)
//!   into [`Term`]s.
//! - `acl` — [`Acl`]: the file rules, evaluated as EMQX does (first match wins, placeholders
//!   substituted), and [`filter_matches`] for MQTT topic filters.
//! - `authz` — [`authorize`]: the whole chain, the built-in database's [`DbRule`]s first.
//! - `error` — [`ModelError`], the one error of this crate.

mod acl;
mod authz;
mod conf;
mod erl;
mod error;
pub mod hocon;
pub mod policy;

pub use acl::{filter_matches, Acl, Action};
pub use authz::{authorize, DbRule};
pub use conf::{check_broker, check_rules};
pub use erl::{consult, Term};
pub use error::ModelError;
