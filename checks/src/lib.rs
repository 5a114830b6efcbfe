//! Checks of tapgate's deployment files.
//!
//! Deployment is configuration rather than code, so this crate turns each file into data and
//! holds it against the contract in `tapgate-protocol`, against the broker access policy of
//! `tapgate-broker-model` and against the other files. The tests in `tests/` run these checks on
//! the repository's files, and run the real services (mosquitto, the bridge) where this machine
//! has them.
//!
//! - [`repo`] — the repository root and reading files from it, with the path in every error.
//! - [`keys`] — every Redis key a dashboard may name: the protocol's keys and the EMQX rule
//!   engine counters (`tapgate_protocol::keys::EMQX_KEYS`).
//! - [`compose`] — `docker-compose.yml`: the Dockerfiles, variables and files it refers to.
//! - [`envfile`] — `.env` files (`NAME=value` lines).
//! - [`emqx`] — EMQX's files read into the static model of `tapgate-broker-model` (its HOCON
//!   reader, rule checks and authorization chain), with the file named in every finding.
//! - [`grafana`] — the Redis keys and Prometheus metrics the dashboards name.
//! - [`promtool`] — `promtool check metrics` and `promtool check config`, and the names a valid
//!   exposition holds.
//! - [`tool`] — running the real tools CI installs, failing with the package to install.

pub mod compose;
pub mod emqx;
pub mod envfile;
pub mod grafana;
pub mod keys;
pub mod promtool;
pub mod repo;
pub mod tool;

pub use repo::{CheckError, Finding};
