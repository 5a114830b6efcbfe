//! The bridge's Redis function library: decide, clock and reject, defined once per Redis server
//! rather than on every call.
//!
//! `decide.lua`, `clock.lua` and `reject.lua` are each a chunk returning one function; they are
//! joined into a library (`FUNCTION LOAD REPLACE`) whose name and function names carry a hash
//! of its text, so bridges of different versions sharing one Redis (a rolling upgrade) each call
//! their own code. A library's top-level code runs once, at load: tables and helpers are built
//! then, and each `FCALL` only runs the rules.
//!
//! Functions are replicated and persisted like data, but a Redis restarted without persistence
//! has none: a call answered "Function not found" loads the library and runs again.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, Script};

/// One of the library's functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `decide.lua`: one device message.
    Decide,
    /// `clock.lua`: a heartbeat's clock skew.
    Clock,
    /// `reject.lua`: a refused message.
    Reject,
}

impl Function {
    const ALL: [Function; 3] = [Function::Decide, Function::Clock, Function::Reject];

    fn index(self) -> usize {
        self as usize
    }

    fn stem(self) -> &'static str {
        match self {
            Function::Decide => "decide",
            Function::Clock => "clock",
            Function::Reject => "reject",
        }
    }

    /// The chunk's source.
    pub fn source(self) -> &'static str {
        match self {
            Function::Decide => include_str!("decide.lua"),
            Function::Clock => include_str!("clock.lua"),
            Function::Reject => include_str!("reject.lua"),
        }
    }
}

/// The library's text and the names its functions are registered under.
#[derive(Debug, Clone)]
pub struct Library {
    text: String,
    /// The registered name of each function, by [`Function::index`]: built once, not per call.
    names: [String; 3],
}

impl Default for Library {
    fn default() -> Self {
        Self::new()
    }
}

impl Library {
    /// Builds the library from the three chunks.
    pub fn new() -> Self {
        let mut body = String::new();
        for f in Function::ALL {
            body.push_str(&format!(
                "local {} = (function()\n{}\nend)()\n",
                f.stem(),
                f.source()
            ));
        }
        // The hash of the chunks names this version: 16 hex digits of their SHA-1.
        let hash = Script::new(&body).get_hash().to_owned();
        let version = hash.get(..16).unwrap_or(&hash).to_owned();
        let names = Function::ALL.map(|f| format!("tapgate_{}_{version}", f.stem()));
        let mut text = format!("#!lua name=tapgate_{version}\n{body}");
        for f in Function::ALL {
            text.push_str(&format!(
                "redis.register_function('{}', {})\n",
                names[f.index()],
                f.stem()
            ));
        }
        Self { text, names }
    }

    /// The library's source, as loaded.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The name `function` is registered under.
    pub fn name(&self, function: Function) -> &str {
        &self.names[function.index()]
    }

    /// `FCALL` of `function` with `keys`; add the arguments to the command returned.
    pub fn call<K: redis::ToRedisArgs>(&self, function: Function, keys: &[K]) -> Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(self.name(function)).arg(keys.len()).arg(keys);
        cmd
    }

    /// Loads (or reloads) the library.
    pub async fn load(&self, con: &mut impl ConnectionLike) -> Result<(), RedisError> {
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.text)
            .query_async(con)
            .await?;
        Ok(())
    }

    /// Runs `cmd`; when Redis does not know the function, loads the library and runs it again.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
        cmd: &Cmd,
    ) -> Result<T, RedisError> {
        match cmd.query_async(con).await {
            Err(e) if not_found(&e) => {
                self.load(con).await?;
                cmd.query_async(con).await
            }
            other => other,
        }
    }

    /// [`Library::query`] for a pipeline.
    pub async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        con: &mut impl ConnectionLike,
        pipe: &Pipeline,
    ) -> Result<T, RedisError> {
        match pipe.query_async(con).await {
            Err(e) if not_found(&e) => {
                self.load(con).await?;
                pipe.query_async(con).await
            }
            other => other,
        }
    }
}

/// Whether Redis refused an `FCALL` for not knowing the function.
fn not_found(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_version() {
        let lib = Library::new();
        assert!(lib.text().starts_with("#!lua name=tapgate_"));
        for f in Function::ALL {
            let name = lib.name(f);
            assert!(
                name.starts_with(&format!("tapgate_{}_", f.stem())),
                "{name}"
            );
            assert!(
                lib.text().contains(&format!("'{name}'")),
                "{name} registered"
            );
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
        assert_eq!(
            lib.name(Function::Decide),
            Library::new().name(Function::Decide)
        );
    }
}
