//! Test harness for tapgate: real servers, never mocks.
//!
//! - [`server`]: the process guard shared by both servers (free port, log file, kill on drop).
//! - `servers`: where Redis and mosquitto run (`TAPGATE_TEST_SERVERS`: installed binaries, or
//!   containers through testcontainers).
//! - `container`: a server in a container, behind the same guard.
//! - [`redis`]: [`RedisServer`], a real `redis-server` on a free port.
//! - [`mosquitto`]: [`Mosquitto`], a real `mosquitto` broker on a free port.
//! - [`probe`]: [`MqttProbe`], an MQTT client that publishes and collects messages in tests.
//! - [`nats`]: [`NatsMqtt`], `nats-server`'s MQTT gateway, a second real broker.
//! - [`sentinel`]: [`SentinelGroup`], a primary, a replica and three `redis-server --sentinel`.
//! - [`netns`]: [`netns::Lab`], nodes in network namespaces the test creates, cut apart and
//!   healed by a router namespace's firewall (root only; removed on drop).
//! - [`redis_users`]: a Redis with the deployment's ACL users (`docker/redis-users.sh`).
//!
//! A missing server is a test failure that names the package to install (and, for Redis and
//! mosquitto, the image to run instead), never a silent skip.

#![warn(missing_docs)]

mod container;
pub mod mosquitto;
pub mod nats;
pub mod netns;
pub mod probe;
pub mod redis;
pub mod redis_users;
pub mod sentinel;
pub mod server;
pub(crate) mod servers;
pub mod session;

pub use mosquitto::Mosquitto;
pub use nats::NatsMqtt;
pub use probe::MqttProbe;
pub use redis::RedisServer;
pub use sentinel::SentinelGroup;
pub use server::free_port;
