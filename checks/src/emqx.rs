//! EMQX's files in this repository, read into the model of `tapgate-broker-model` with the file's
//! path in every error and every finding.
//!
//! The model (HOCON reader, rule checks, authorization chain) lives in its own crate; this
//! module only reads the repository's files and names them.

use std::path::PathBuf;

use tapgate_broker_model::hocon::{self, Document, Value};
pub use tapgate_broker_model::{authorize, Acl, Action, DbRule};

use crate::repo::{self, CheckError, Finding};

/// Reads the HOCON file `rel` (relative to the repository root). Includes are recorded in the
/// document, not followed: check the included files separately.
pub fn load_hocon(rel: &str) -> Result<Document, CheckError> {
    let text = repo::read(rel)?;
    hocon::parse(&text).map_err(|e| CheckError::Syntax {
        path: PathBuf::from(rel),
        line: e.line,
        why: e.why,
    })
}

/// Reads `acl.conf` at `rel` (relative to the repository root) as EMQX does.
pub fn load_acl(rel: &str) -> Result<Acl, CheckError> {
    Ok(Acl::parse(rel, &repo::read(rel)?)?)
}

/// [`tapgate_broker_model::check_broker`] on `conf`, the contents of `file`.
pub fn check_broker(file: &str, conf: &Value) -> Vec<Finding> {
    findings(file, tapgate_broker_model::check_broker(conf))
}

/// [`tapgate_broker_model::check_rules`] on `conf`, the contents of `file`.
pub fn check_rules(file: &str, conf: &Value) -> Vec<Finding> {
    findings(file, tapgate_broker_model::check_rules(conf))
}

fn findings(file: &str, problems: Vec<String>) -> Vec<Finding> {
    problems
        .into_iter()
        .map(|p| Finding::new(file, p))
        .collect()
}
