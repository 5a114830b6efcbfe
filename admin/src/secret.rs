//! Passwords: generated ones, and the rules for the ones an operator chooses.

use crate::AdminError;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a generated password: 32 of 62 symbols, about 190 bits.
pub const GENERATED_LEN: usize = 32;
/// Shortest password accepted from the command line.
pub const MIN_LEN: usize = 16;

/// A new random password from the operating system's generator.
pub fn generate() -> Result<String, AdminError> {
    let mut out = String::with_capacity(GENERATED_LEN);
    while out.len() < GENERATED_LEN {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf).map_err(|e| AdminError::Random(e.to_string()))?;
        // Rejection sampling: 248 = 4 * 62, so every symbol is equally likely.
        for b in buf {
            if b < 248 && out.len() < GENERATED_LEN {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Checks a password given by the operator: long enough, printable ASCII without the characters
/// EMQX's bootstrap CSV and shell quoting trip on, and not a `change-me` placeholder.
pub fn check(password: &str) -> Result<(), AdminError> {
    if password.len() < MIN_LEN {
        return Err(AdminError::Password("must be at least 16 characters"));
    }
    if !password.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AdminError::Password(
            "only printable ASCII without spaces is allowed",
        ));
    }
    if password.contains([',', '"', '\\', '\'']) {
        return Err(AdminError::Password(
            "may not contain ',', '\"', '\\' or a single quote",
        ));
    }
    if password.starts_with("change-me") {
        return Err(AdminError::Password(
            "starts with change-me, the placeholder of .env.example",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_distinct_and_accepted() {
        let a = generate().expect("random");
        let b = generate().expect("random");
        assert_eq!(a.len(), GENERATED_LEN);
        assert_ne!(a, b);
        check(&a).expect("a generated password passes the check");
    }

    #[test]
    fn weak_or_awkward_passwords_are_refused() {
        for bad in [
            "short",
            "change-me-device-password",
            "sixteen chars pw!",
            "has,comma-and-long-enough",
            "tab\there-long-enough-x",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        check("Zq8-plenty-long-password").expect("fine");
    }
}
