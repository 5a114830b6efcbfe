//! The simulator's device list when the broker gives every device its own login.
//!
//! A broker that enforces device identity (see docs/deploy.md, "Security model") lets a client in
//! only as a provisioned device: username = client id = device id, with that device's password,
//! publishing only on its own kind's topics. `--devices FILE` names those devices:
//!
//! ```toml
//! [[devices]]
//! id = "g1"
//! kind = "gate"
//! password = "…"
//! ```
//!
//! Without the file the simulator invents its device ids and every device uses the shared
//! `mqtt_username` / `mqtt_password` (an open test broker).

use std::path::Path;

use serde::Deserialize;
use tapgate_protocol::{DeviceId, DeviceKind};

use crate::config::ConfigError;

/// One provisioned device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedDevice {
    /// Device id: also its MQTT username and client id.
    pub id: DeviceId,
    /// Gate or terminal.
    pub kind: DeviceKind,
    pub password: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    #[serde(default)]
    devices: Vec<ProvisionedDevice>,
}

/// Reads and checks a devices file: at least one gate and one terminal, no id twice.
pub fn load(path: &Path) -> Result<Vec<ProvisionedDevice>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid("devices", format!("cannot read {}: {e}", path.display()))
    })?;
    parse(&text)
        .map_err(|why| ConfigError::invalid("devices", format!("{}: {why}", path.display())))
}

fn parse(text: &str) -> Result<Vec<ProvisionedDevice>, String> {
    let file: DevicesFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut seen = std::collections::HashSet::new();
    for d in &file.devices {
        if !seen.insert(d.id.clone()) {
            return Err(format!("device {} is listed twice", d.id));
        }
        if d.password.is_empty() {
            return Err(format!("device {} has an empty password", d.id));
        }
    }
    for kind in DeviceKind::ALL {
        if !file.devices.iter().any(|d| d.kind == kind) {
            return Err(format!(
                "no {kind} listed; the simulator needs at least one of each"
            ));
        }
    }
    Ok(file.devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_provisioned_devices() {
        let list = parse(
            "[[devices]]\nid = \"g1\"\nkind = \"gate\"\npassword = \"a\"\n\
             [[devices]]\nid = \"t1\"\nkind = \"terminal\"\npassword = \"b\"\n",
        )
        .expect("parse");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].id.as_str(), "g1");
        assert_eq!(list[1].kind, DeviceKind::Terminal);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let one = |id: &str, kind: &str| {
            format!("[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\npassword = \"p\"\n")
        };
        for (text, why) in [
            (one("g1", "gate"), "no terminal"),
            (one("g/1", "gate") + &one("t1", "terminal"), "device id"),
            (one("g1", "bus") + &one("t1", "terminal"), "unknown variant"),
            (one("g1", "gate") + &one("g1", "terminal"), "twice"),
            (
                "[[devices]]\nid = \"g1\"\nkind = \"gate\"\npassword = \"p\"\nrole = \"x\"\n"
                    .to_owned(),
                "unknown field",
            ),
        ] {
            let e = parse(&text).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
