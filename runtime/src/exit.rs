//! How a program ends: one clear line for an error a user can fix.
//!
//! Returning an error from `main` prints Rust's debug form, with a backtrace when
//! `RUST_BACKTRACE` is set, and an error whose message already includes its cause prints that
//! cause again for every level. [`report`] prints `error: …` once, each cause only when its text
//! is not already there, and turns the result into an exit status.

use std::error::Error;
use std::process::ExitCode;

/// The error and its causes in one line, skipping causes whose text is already shown.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Prints `error: …` on stderr for an error and returns the exit status: 0 for `Ok`, 1 for an
/// error.
pub fn report<E>(result: Result<(), E>) -> ExitCode
where
    E: Into<Box<dyn Error + Send + Sync + 'static>>,
{
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let boxed: Box<dyn Error + Send + Sync + 'static> = e.into();
            eprintln!("error: {}", one_line(boxed.as_ref()));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to Redis at redis://127.0.0.1:1: {source}")]
    struct Outer {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("bridge failed")]
    struct Top(#[source] Outer);

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = Top(Outer { source: refused });
        let line = one_line(&e);
        assert_eq!(
            line,
            "bridge failed: cannot connect to Redis at redis://127.0.0.1:1: Connection refused"
        );
        assert_eq!(line.matches("Connection refused").count(), 1);
    }

    #[test]
    fn ok_is_success() {
        assert_eq!(report::<std::io::Error>(Ok(())), ExitCode::SUCCESS);
        assert_eq!(report(Err(std::io::Error::other("no"))), ExitCode::FAILURE);
    }
}
