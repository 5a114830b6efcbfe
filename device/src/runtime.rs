//! The device runtime: hardware and the MQTT link around a pure state machine.
//!
//! [`run_gate`] and [`run_terminal`] start the [`Link`], poll the card reader on a thread of its
//! own, sample the buttons, play light patterns, show readouts on the four-digit display, and feed
//! every input, decision and deadline to the state machine, carrying out the [`Command`]s it
//! returns. On `shutdown` the lights go off, the display goes blank, the link says `offline`, and
//! every task is awaited.

use std::time::Duration;

use tapgate_protocol::{CardId, DeviceKind};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ConfigError, DeviceConfig};
use crate::digits::Readout;
use crate::hw::{buttons, display, lights, Buttons, CardReader, Display, Lights, Speaker};
use crate::link::{Link, LinkConfig, LinkError};
use crate::logic::gate::Gate;
use crate::logic::terminal::Terminal;
use crate::logic::Command;
use crate::prompt::LightPattern;

/// Why a device stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The MQTT link could not start.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The hardware could not be opened.
    #[error("hardware: {0}")]
    Hardware(String),
}

use tapgate_runtime::clock::now_ms;

fn link_config(cfg: &DeviceConfig, kind: DeviceKind) -> Result<LinkConfig, DeviceError> {
    Ok(LinkConfig {
        broker: cfg.broker()?,
        topics: cfg.prefix.clone(),
        kind,
        device: cfg.device_id()?.clone(),
        queue_limit: cfg.queue_limit,
        clock: crate::logic::system_clock(),
    })
}

/// Polls `reader` every `period` on a thread of its own, sending each card seen.
fn spawn_reader<R: CardReader>(
    mut reader: R,
    period: Duration,
    cards: mpsc::Sender<CardId>,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("card-reader".into())
        .spawn(move || {
            let mut failing = false;
            while !shutdown.is_cancelled() {
                match reader.poll() {
                    Ok(Some(card)) => {
                        failing = false;
                        if cards.blocking_send(card).is_err() {
                            return;
                        }
                    }
                    Ok(None) => failing = false,
                    Err(e) => {
                        if !failing {
                            warn!(error = %e, "Card reader failing");
                        }
                        failing = true;
                    }
                }
                std::thread::sleep(period);
            }
        })
}

struct Outputs<S: Speaker> {
    link: Link,
    speaker: S,
    lights: Option<mpsc::Sender<LightPattern>>,
    display: mpsc::Sender<Readout>,
}

impl<S: Speaker> Outputs<S> {
    fn run(&mut self, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Publish(msg) => self.link.publish(&msg),
                Command::Lights(p) => {
                    if let Some(tx) = &self.lights {
                        if tx.try_send(p).is_err() {
                            warn!("Light pattern dropped");
                        }
                    }
                }
                Command::Play(sound) => {
                    if let Err(e) = self.speaker.play(sound.clone()) {
                        warn!(error = %e, %sound, "Cannot play sound");
                    }
                }
                Command::Show(line) => {
                    info!(line, "Display");
                    println!("  display: {line}");
                }
                Command::Display(readout) => {
                    if self.display.try_send(readout).is_err() {
                        warn!(text = %readout.text, "Display readout dropped");
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Runs an entry gate until `shutdown`.
pub async fn run_gate<R: CardReader, L: Lights, D: Display, S: Speaker>(
    cfg: &DeviceConfig,
    reader: R,
    lights: L,
    display: D,
    speaker: S,
    shutdown: CancellationToken,
) -> Result<(), DeviceError> {
    let (link, mut io) = Common::start(cfg, DeviceKind::Gate, reader, &shutdown)?;
    let tasks = io.tasks.clone();
    let (light_tx, light_rx) = mpsc::channel(16);
    let light_task = tokio::spawn(lights::play(lights, light_rx, tasks.clone()));
    let (display_tx, display_rx) = mpsc::channel(16);
    let display_task = tokio::spawn(display::play(display, display_rx, tasks.clone()));
    let mut out = Outputs {
        link,
        speaker,
        lights: Some(light_tx),
        display: display_tx,
    };
    let (mut gate, init) = Gate::new(cfg.gate_settings(), now_ms());
    out.run(init);
    info!(device = %out.link.device(), policy = %cfg.offline_policy, "Gate running");
    loop {
        let cmds = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(card) = io.cards.recv() => gate.card(card, Instant::now()),
            Some(d) = io.decisions.recv() => gate.decision(&d),
            _ = sleep_until(gate.deadline()) => gate.tick(Instant::now()),
        };
        out.run(cmds);
    }
    io.finish().await;
    let _ = light_task.await;
    let _ = display_task.await;
    Ok(())
}

/// Runs a sales terminal until `shutdown`.
pub async fn run_terminal<R: CardReader, B: Buttons, D: Display, S: Speaker>(
    cfg: &DeviceConfig,
    reader: R,
    buttons: B,
    display: D,
    speaker: S,
    shutdown: CancellationToken,
) -> Result<(), DeviceError> {
    let (link, mut io) = Common::start(cfg, DeviceKind::Terminal, reader, &shutdown)?;
    let tasks = io.tasks.clone();
    let (press_tx, mut presses) = mpsc::channel::<usize>(16);
    let button_task = tokio::spawn(buttons::watch(
        buttons,
        buttons::DEFAULT_SAMPLE,
        press_tx,
        tasks.clone(),
    ));
    let (display_tx, display_rx) = mpsc::channel(16);
    let display_task = tokio::spawn(display::play(display, display_rx, tasks.clone()));
    let mut out = Outputs {
        link,
        speaker,
        lights: None,
        display: display_tx,
    };
    let mut terminal = Terminal::new(cfg.terminal_settings(), now_ms());
    info!(device = %out.link.device(), buttons = ?cfg.buttons, "Terminal running");
    loop {
        let cmds = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(card) = io.cards.recv() => terminal.card(card, Instant::now()),
            Some(button) = presses.recv() => terminal.press(button, Instant::now()),
            Some(d) = io.decisions.recv() => terminal.decision(&d),
            _ = sleep_until(terminal.deadline()) => terminal.tick(Instant::now()),
        };
        out.run(cmds);
    }
    io.finish().await;
    let _ = button_task.await;
    let _ = display_task.await;
    Ok(())
}

/// What a gate and a terminal both run: the MQTT link and the card reader thread.
struct Common {
    /// Cancels the device's own tasks (a child of the caller's shutdown token).
    tasks: CancellationToken,
    decisions: mpsc::Receiver<tapgate_protocol::Decision>,
    cards: mpsc::Receiver<CardId>,
    link_task: tokio::task::JoinHandle<()>,
    reader_thread: std::thread::JoinHandle<()>,
}

impl Common {
    /// Starts the link and the reader thread. `cfg` is taken as [`DeviceConfig::load`] checked
    /// it: its id, prefix and broker URL were parsed there, and are not checked again.
    fn start<R: CardReader>(
        cfg: &DeviceConfig,
        kind: DeviceKind,
        reader: R,
        shutdown: &CancellationToken,
    ) -> Result<(Link, Self), DeviceError> {
        let tasks = shutdown.child_token();
        let (link, decisions, link_task) = Link::start(link_config(cfg, kind)?, tasks.clone())?;
        let (card_tx, cards) = mpsc::channel(16);
        let reader_thread = spawn_reader(reader, cfg.reader_poll, card_tx, tasks.clone())
            .map_err(|e| DeviceError::Hardware(e.to_string()))?;
        Ok((
            link,
            Self {
                tasks,
                decisions,
                cards,
                link_task,
                reader_thread,
            },
        ))
    }

    /// Stops the link (it sends `offline` first) and the reader thread, and waits for both.
    async fn finish(self) {
        drop(self.cards);
        self.tasks.cancel();
        let _ = self.link_task.await;
        let reader_thread = self.reader_thread;
        let _ = tokio::task::spawn_blocking(move || reader_thread.join()).await;
        info!("Device stopped");
    }
}
