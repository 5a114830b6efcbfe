//! The model refuses what tapgate must not ship: HOCON outside the subset, a broker file that
//! loosens the policy, and rules that write undocumented keys or run undefined actions. Each
//! check is shown to fail on a broken input, so a passing check on the real files means something.

use tapgate_broker_model::hocon;
use tapgate_broker_model::{check_broker, check_rules};

#[test]
fn hocon_outside_the_subset_is_refused_with_its_line() {
    let err = hocon::parse("a {\n b = 1\n").expect_err("unbalanced");
    assert!(err.line >= 2, "{err}");
    let err = hocon::parse("x = 1\na = ${missing}\n").expect_err("substitution");
    assert_eq!(err.line, 2, "{err}");
}

#[test]
fn a_loose_broker_file_is_refused() {
    let weak = hocon::parse("authorization { no_match = allow, sources = [] }\n").expect("parses");
    let problems = check_broker(&weak.root).join("\n");
    assert!(problems.contains("no_match must be deny"), "{problems}");
    assert!(problems.contains("nodelay"), "{problems}");
    assert!(problems.contains("use_username_as_clientid"), "{problems}");
}

/// The project's `emqx.conf`, as shipped.
fn shipped_broker_file() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../emqx/etc/emqx.conf");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The shipped file passes, and fails once its TLS listener stops checking the CRL, or stops
/// verifying client certificates (without which EMQX checks no CRL).
#[test]
fn a_tls_listener_without_crl_checking_is_refused() {
    let text = shipped_broker_file();
    let conf = hocon::parse(&text).expect("emqx.conf parses");
    assert_eq!(check_broker(&conf.root), Vec::<String>::new());

    let line = |l: &str| l.trim_start().starts_with("enable_crl_check");
    assert_eq!(
        text.lines().filter(|l| line(l)).count(),
        1,
        "one enable_crl_check"
    );
    for (what, changed) in [
        (
            "removed",
            text.lines()
                .filter(|l| !line(l))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (
            "false",
            text.replace("enable_crl_check = true", "enable_crl_check = false"),
        ),
    ] {
        let conf = hocon::parse(&changed).expect("parses");
        let problems = check_broker(&conf.root).join("\n");
        assert!(
            problems.contains("enable_crl_check must be true"),
            "enable_crl_check {what}: {problems:?}"
        );
    }
    let unverified = text.replace("verify = verify_peer", "verify = verify_none");
    assert_ne!(unverified, text);
    let conf = hocon::parse(&unverified).expect("parses");
    let problems = check_broker(&conf.root).join("\n");
    assert!(
        problems.contains("verify must be verify_peer"),
        "{problems}"
    );
}

#[test]
fn rules_writing_undocumented_keys_are_refused() {
    let rules = hocon::parse(
        "actions.redis.x { connector = nope, parameters.command_template = [\"SET\", \"k\", \"v\"] }\n\
         rule_engine.rules.r { sql = \"SELECT * FROM \\\"t/#\\\"\", actions = [\"redis:y\"] }\n",
    )
    .expect("parses");
    let problems = check_rules(&rules.root).join("\n");
    for expected in [
        "no Redis connector",
        "undefined connector",
        "must be [HINCRBY",
        "no action writes tapgate:emqx:authz",
        "reads none of",
    ] {
        assert!(
            problems.contains(expected),
            "expected {expected:?} among:\n{problems}"
        );
    }
}
