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
