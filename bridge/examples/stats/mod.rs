//! Reading Redis's `INFO commandstats` in the benchmarks.

/// Calls of `command` (`fcall`, `evalsha`) and the µs they took so far, from the text of
/// `INFO commandstats`; zeros before the first call.
pub fn command_calls(info: &str, command: &str) -> (u64, u64) {
    let prefix = format!("cmdstat_{command}:");
    let Some(line) = info.lines().find_map(|l| l.strip_prefix(prefix.as_str())) else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}
