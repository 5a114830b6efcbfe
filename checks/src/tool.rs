//! Running the real tools CI installs (`promtool`) on tapgate's files.
//!
//! A tool that is not installed is an error naming the Debian package to install, never a
//! silently skipped check; a tool that refuses its input is an error carrying its output.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Why a tool did not accept its input.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The tool is not installed.
    #[error(
        "`{tool}` is not installed: apt-get install -y {package} (.ci/setup.d/deploy.sh does)"
    )]
    Missing {
        tool: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// The tool could not be run or fed.
    #[error("cannot run `{tool}`: {source}")]
    Io {
        tool: &'static str,
        source: std::io::Error,
    },
    /// The tool ran and refused the input.
    #[error("`{tool}` refused {what}:\n{output}")]
    Refused {
        tool: &'static str,
        /// What it was given.
        what: String,
        /// Its standard output and error.
        output: String,
    },
}

/// A command-line tool and the Debian package that ships it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    /// The Debian package that ships it.
    pub package: &'static str,
}

/// `promtool`, from Debian's `prometheus` package.
pub const PROMTOOL: Tool = Tool {
    name: "promtool",
    package: "prometheus",
};

impl Tool {
    /// Runs the tool with `args` and `stdin`, returning its standard output when it exits with
    /// success, and [`ToolError::Refused`] (naming `what`) otherwise.
    pub fn run(&self, args: &[&str], stdin: &[u8], what: &str) -> Result<String, ToolError> {
        let io = |source| ToolError::Io {
            tool: self.name,
            source,
        };
        let mut child = match Command::new(self.name)
            .args(args)
            .current_dir(crate::repo::root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ToolError::Missing {
                    tool: self.name,
                    package: self.package,
                })
            }
            Err(e) => return Err(io(e)),
        };
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).map_err(io)?;
        }
        let out = child.wait_with_output().map_err(io)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(ToolError::Refused {
                tool: self.name,
                what: what.to_owned(),
                output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let tool = Tool {
            name: "tapgate-no-such-tool",
            package: "tapgate-no-such-package",
        };
        let err = tool.run(&[], b"", "nothing").expect_err("not installed");
        assert!(matches!(err, ToolError::Missing { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("apt-get install -y tapgate-no-such-package"));
    }
}
