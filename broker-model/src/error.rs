//! Why an EMQX file could not be read into the model.

/// An EMQX file could not be read into the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file does not follow its format (line and reason given; line 0 when unknown).
    #[error("{file}:{line}: {why}")]
    Syntax {
        /// The file, as the caller named it.
        file: String,
        /// 1-based line number, or 0.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// `erl`, which reads `acl.conf` as EMQX does, is not installed.
    #[error("`erl` is not installed: apt-get install -y erlang-base (.ci/setup.d/deploy.sh does)")]
    ErlMissing,
    /// A scratch copy of the file could not be written, or `erl` could not be run.
    #[error("cannot read {file} with erl: {source}")]
    Io {
        /// The file, as the caller named it.
        file: String,
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn syntax(file: &str, line: usize, why: impl Into<String>) -> Self {
        Self::Syntax {
            file: file.to_owned(),
            line,
            why: why.into(),
        }
    }
}
