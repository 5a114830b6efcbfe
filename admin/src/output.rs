//! What `device add` prints: the settings a device reads, or an entry of the rider simulator's
//! `--devices` file.

use tapgate_protocol::{DeviceId, DeviceKind};

/// Which shape to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The device's own settings file (`id`, `mqtt_username`, `mqtt_password`).
    Device,
    /// One `[[devices]]` entry of the simulator's `--devices` file.
    Simulator,
}

/// TOML for a freshly provisioned device. Ids and generated passwords hold no character TOML
/// needs escaped; passwords given by hand are checked by [`crate::secret::check`], which refuses
/// quotes and backslashes.
pub fn render(format: Format, id: &DeviceId, kind: DeviceKind, password: &str) -> String {
    match format {
        Format::Device => format!(
            "# tapgate {kind} {id}: its broker login (username = client id = device id).\n\
             # Keep this file private (chmod 600): the password is the device's only secret.\n\
             id = \"{id}\"\n\
             mqtt_username = \"{id}\"\n\
             mqtt_password = \"{password}\"\n"
        ),
        Format::Simulator => format!(
            "[[devices]]\n\
             id = \"{id}\"\n\
             kind = \"{kind}\"\n\
             password = \"{password}\"\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_settings_name_the_login() {
        let g7 = DeviceId::new("g7").expect("id");
        let text = render(Format::Device, &g7, DeviceKind::Gate, "pw0123456789abcdef");
        assert!(text.contains(
            "id = \"g7\"\nmqtt_username = \"g7\"\nmqtt_password = \"pw0123456789abcdef\"\n"
        ));
        assert!(text.starts_with("# tapgate gate g7"));
        let sim = render(Format::Simulator, &g7, DeviceKind::Gate, "pw");
        assert_eq!(
            sim,
            "[[devices]]\nid = \"g7\"\nkind = \"gate\"\npassword = \"pw\"\n"
        );
    }
}
