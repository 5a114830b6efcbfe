//! Secrets that were never set.
//!
//! `.env.example` and the example settings files give every password as a placeholder starting
//! with [`PLACEHOLDER_PREFIX`]. A program handed one refuses to start instead of running with a
//! password anybody can read in the repository.

/// What every placeholder secret in the examples starts with.
pub const PLACEHOLDER_PREFIX: &str = "change-me";

/// A secret that is still a placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}` is still the example placeholder ({PLACEHOLDER_PREFIX}…): set a real secret")]
pub struct PlaceholderSecret {
    /// The setting that holds it.
    pub setting: &'static str,
}

/// Refuses `value` if it is a placeholder; `None` and real secrets pass.
pub fn refuse_placeholder(
    setting: &'static str,
    value: Option<&str>,
) -> Result<(), PlaceholderSecret> {
    match value {
        Some(v)
            if v.trim()
                .to_ascii_lowercase()
                .starts_with(PLACEHOLDER_PREFIX) =>
        {
            Err(PlaceholderSecret { setting })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_refused() {
        assert!(refuse_placeholder("redis_password", Some("change-me-redis")).is_err());
        assert!(refuse_placeholder("x", Some(" Change-Me")).is_err());
        assert!(refuse_placeholder("x", Some("s3cret")).is_ok());
        assert!(refuse_placeholder("x", None).is_ok());
        let e = refuse_placeholder("mqtt_password", Some("change-me")).expect_err("refused");
        assert!(e.to_string().contains("mqtt_password"), "{e}");
    }
}
