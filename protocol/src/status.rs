//! Device presence.
//!
//! A device connects with a last will of [`OFFLINE`] on its status topic, then publishes
//! [`ONLINE`] there and a [`Heartbeat`] every [`HEARTBEAT_INTERVAL_SECS`] seconds. The bridge
//! records both in Redis (see [`crate::keys::device`]); it parses them with
//! [`crate::validate::parse_status_payload`] and [`crate::validate::parse_heartbeat`], which refuse
//! anything else with an escaped, specific reason. Status messages need not be retained (the
//! bridge accepts both).

use serde::{Deserialize, Serialize};

/// Status payload while connected.
pub const ONLINE: &str = "online";
/// Status payload after a clean stop or as the broker-sent last will.
pub const OFFLINE: &str = "offline";
/// How often a device sends a heartbeat.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 30;

/// Heartbeat payload: `{"uptime_s": 1234}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// Seconds since the device process started.
    pub uptime_s: u64,
}

/// Heartbeat payload with the device's clock: `{"uptime_s": 1234, "clock_ms": 1700000000000}`.
/// The bridge measures the device's clock skew from `clock_ms` (see `docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockHeartbeat {
    /// Seconds since the device process started.
    pub uptime_s: u64,
    /// The device's clock when it sent the heartbeat, Unix time in milliseconds.
    pub clock_ms: u64,
}

/// Whether a status payload says online (`Some(true)`), offline (`Some(false)`), or neither.
pub fn parse_status(payload: &[u8]) -> Option<bool> {
    match payload {
        b"online" => Some(true),
        b"offline" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status() {
        assert_eq!(parse_status(ONLINE.as_bytes()), Some(true));
        assert_eq!(parse_status(OFFLINE.as_bytes()), Some(false));
        assert_eq!(parse_status(b"maybe"), None);
        let h: Heartbeat = serde_json::from_str(r#"{"uptime_s":5}"#).expect("hb");
        assert_eq!(h.uptime_s, 5);
        assert!(serde_json::from_str::<Heartbeat>(r#"{"uptime_s":5,"x":1}"#).is_err());
    }
}
