//! A server in a container, started through testcontainers, for machines without the server's
//! binary but with a Docker engine ([`crate::servers`] decides which).
//!
//! The container shares the host's network and sees the test's temporary folder at the same
//! path, so the server runs with exactly the command line, configuration file and port a local
//! process would: `127.0.0.1:{port}` reaches it, its log file is read from the folder, and a
//! restart keeps its port. (Host networking: a Linux Docker engine.)
//!
//! testcontainers drives Docker from async code; the tests call the kit from sync and async code
//! alike, so each container is owned by a thread of its own running a small runtime, and
//! [`Container`]'s methods send it requests. The container is removed when [`Container`] drops.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// What a container is asked to do.
enum Op {
    /// Stop it, waiting up to this many seconds after SIGTERM before SIGKILL (0: at once).
    Stop(i32),
    Pause,
    Unpause,
    Running,
}

/// A request to the container's thread, with where to send its outcome.
type Request = (Op, mpsc::Sender<Result<bool, String>>);

/// A running container; removed on drop.
pub(crate) struct Container {
    ops: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    /// `image:tag`, for messages.
    pub image: String,
}

/// `name:tag` split at the tag's colon (a registry's `host:port/` stays in the name).
fn name_and_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

impl Container {
    /// Starts `image` running `program args…` on the host's network, with each of `dirs`
    /// mounted at its own path. Returns once Docker says it runs; the caller waits for its port.
    pub(crate) fn start(
        image: &str,
        program: &str,
        args: Vec<String>,
        dirs: Vec<PathBuf>,
    ) -> Result<Self, String> {
        let (name, tag) = name_and_tag(image);
        let mut request = GenericImage::new(name, tag)
            .with_entrypoint(program)
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(args)
            .with_network("host")
            .with_startup_timeout(Duration::from_secs(120));
        for dir in dirs {
            let path = dir.display().to_string();
            request = request.with_mount(Mount::bind_mount(path.clone(), path));
        }
        let (ops_tx, ops) = mpsc::channel::<Request>();
        let (started_tx, started) = mpsc::channel::<Result<(), String>>();
        let shown = image.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("container {shown}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("no runtime for Docker: {e}")));
                        return;
                    }
                };
                let container: ContainerAsync<GenericImage> = match rt.block_on(request.start()) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("cannot start {shown}: {e}")));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(()));
                // Until the owner drops its sender.
                while let Ok((op, reply)) = ops.recv() {
                    let outcome = rt.block_on(async {
                        match op {
                            Op::Stop(secs) => {
                                container.stop_with_timeout(Some(secs)).await.map(|_| true)
                            }
                            Op::Pause => container.pause().await.map(|_| true),
                            Op::Unpause => container.unpause().await.map(|_| true),
                            Op::Running => container.is_running().await,
                        }
                    });
                    let _ = reply.send(outcome.map_err(|e| e.to_string()));
                }
                if let Err(e) = rt.block_on(container.rm()) {
                    eprintln!("cannot remove the container of {shown}: {e}");
                }
            })
            .map_err(|e| format!("cannot start a thread for {image}: {e}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(Self {
                ops: Some(ops_tx),
                thread: Some(thread),
                image: image.to_owned(),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(format!("the thread starting {image} died"))
            }
        }
    }

    fn ask(&self, op: Op) -> Result<bool, String> {
        let (tx, rx) = mpsc::channel();
        self.ops
            .as_ref()
            .ok_or("container removed")?
            .send((op, tx))
            .map_err(|_| "the container's thread has ended".to_owned())?;
        rx.recv()
            .map_err(|_| "the container's thread has ended".to_owned())?
    }

    /// Stops it: SIGTERM, then SIGKILL after `grace` seconds (0: SIGKILL at once).
    pub(crate) fn stop(&self, grace: i32) {
        if let Err(e) = self.ask(Op::Stop(grace)) {
            eprintln!("cannot stop {}: {e}", self.image);
        }
    }

    /// Freezes it (`docker pause`), or lets it go on.
    pub(crate) fn freeze(&self, frozen: bool) -> Result<(), String> {
        self.ask(if frozen { Op::Pause } else { Op::Unpause })
            .map(|_| ())
    }

    /// Whether its process is still running.
    pub(crate) fn running(&self) -> bool {
        self.ask(Op::Running).unwrap_or(false)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Closing the channel makes the thread remove the container.
        self.ops.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::name_and_tag;

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(name_and_tag("redis:7-bookworm"), ("redis", "7-bookworm"));
        assert_eq!(
            name_and_tag("localhost:5000/tapgate/redis:7"),
            ("localhost:5000/tapgate/redis", "7")
        );
        assert_eq!(
            name_and_tag("localhost:5000/redis"),
            ("localhost:5000/redis", "latest")
        );
        assert_eq!(
            name_and_tag("eclipse-mosquitto"),
            ("eclipse-mosquitto", "latest")
        );
    }
}
