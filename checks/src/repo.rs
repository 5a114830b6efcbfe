//! The repository root and reading files from it.
//!
//! Every check reads files relative to the repository root and reports problems as
//! [`Finding`]s (a file and what is wrong with it), so one test run lists every problem at once
//! instead of stopping at the first.

use std::fmt;
use std::path::{Path, PathBuf};

/// A file could not be read or parsed at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML, or not of the expected shape.
    #[error("{path} is not valid YAML of the expected shape: {source}")]
    Yaml {
        path: PathBuf,
        /// The parser's message.
        source: serde_yaml_ng::Error,
    },
    /// The file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A tool that reads the file is missing or could not be run.
    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),
    /// An EMQX file could not be read into its model.
    #[error(transparent)]
    Emqx(#[from] tapgate_broker_model::ModelError),
    /// The file does not follow its format (line and reason given).
    #[error("{path}:{line}: {why}")]
    Syntax {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the repository root.
    pub file: String,
    /// What is wrong.
    pub what: String,
}

impl Finding {
    /// A finding in `file`.
    pub fn new(file: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.what)
    }
}

/// Formats findings one per line, for test failure messages.
pub fn report(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("  - {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The repository root: the parent of this crate's folder.
pub fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Reads `rel` (relative to [`root`]) as text.
pub fn read(rel: impl AsRef<Path>) -> Result<String, CheckError> {
    let path = root().join(rel.as_ref());
    std::fs::read_to_string(&path).map_err(|source| CheckError::Io { path, source })
}

/// Whether `rel` (relative to [`root`]) is an existing file.
pub fn is_file(rel: impl AsRef<Path>) -> bool {
    root().join(rel.as_ref()).is_file()
}

/// A scratch folder inside the repository, for checks run on files a test writes: the checks
/// take paths relative to the root, as they do for the repository's own files. Removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A new empty folder under `checks/`.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir_in(root().join("checks"))?,
        })
    }

    /// Writes `name` in the folder.
    pub fn write(&self, name: &str, text: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.path().join(name), text)
    }

    /// `name` in the folder, relative to the repository root.
    pub fn rel(&self, name: &str) -> String {
        let path = self.dir.path().join(name);
        path.strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string()
    }
}
