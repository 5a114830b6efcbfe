//! Shared test stack for device tests: real redis-server and mosquitto on free ports, the bridge
//! in-process, and gates or terminals running on recording fake hardware.
#![allow(dead_code)]

use std::time::Duration;

use tapgate_device::config::DeviceConfig;
use tapgate_device::digits::DisplayText;
use tapgate_device::hw::console::{
    sim_hardware, RecordingDisplay, RecordingLights, RecordingSpeaker, SimInputs,
};
use tapgate_device::prompt::{Lamps, Sound};
use tapgate_device::runtime::{run_gate, run_terminal};
use tapgate_protocol::{CardId, DeviceId, ProductId};
use tapgate_runtime::mqtt::BrokerConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

pub use tapgate_bridge::testing::Stack;

/// Device settings for a [`Stack`].
pub trait DeviceStack {
    /// Settings for a device on this stack's broker, with test-friendly timings.
    fn device_config(&self, id: &str) -> DeviceConfig;
}

impl DeviceStack for Stack {
    fn device_config(&self, id: &str) -> DeviceConfig {
        DeviceConfig {
            id: Some(DeviceId::new(id).expect("device id")),
            broker: BrokerConfig::url(self.broker.url()),
            reader_poll: Duration::from_millis(5),
            card_hold: Duration::from_millis(100),
            green_for: Duration::from_millis(300),
            keep_alive: Duration::from_secs(2),
            ..DeviceConfig::default()
        }
    }
}

/// A gate or terminal running on fake hardware.
pub struct Rig {
    pub inputs: SimInputs,
    /// A terminal's buttons: the product each sells (empty for a gate).
    pub buttons: Vec<ProductId>,
    pub lights: RecordingLights,
    pub display: RecordingDisplay,
    pub sounds: mpsc::UnboundedReceiver<Sound>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Rig {
    /// Starts a gate with `cfg`.
    pub async fn gate(cfg: DeviceConfig) -> Self {
        let (inputs, reader, _buttons) = sim_hardware();
        let lights = RecordingLights::default();
        let display = RecordingDisplay::default();
        let (tx, sounds) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let (l, d, s) = (lights.clone(), display.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            run_gate(&cfg, reader, l, d, RecordingSpeaker(tx), s)
                .await
                .expect("gate failed");
        });
        let rig = Self {
            inputs,
            buttons: Vec::new(),
            lights,
            display,
            sounds,
            shutdown,
            task,
        };
        rig.settle().await;
        rig
    }

    /// Starts a terminal with `cfg`.
    pub async fn terminal(cfg: DeviceConfig) -> Self {
        let (inputs, reader, buttons) = sim_hardware();
        let display = RecordingDisplay::default();
        let (tx, sounds) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let (d, s) = (display.clone(), shutdown.clone());
        let products = cfg.buttons.clone();
        let task = tokio::spawn(async move {
            run_terminal(&cfg, reader, buttons, d, RecordingSpeaker(tx), s)
                .await
                .expect("terminal failed");
        });
        let rig = Self {
            inputs,
            buttons: products,
            lights: RecordingLights::default(),
            display,
            sounds,
            shutdown,
            task,
        };
        rig.settle().await;
        rig
    }

    /// Gives the link time to connect and subscribe.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    /// Taps `card` once.
    pub fn tap(&self, card: &str) {
        self.inputs.tap(CardId::new(card).expect("card"));
    }

    /// Presses the terminal's button for `product`; panics if it has none.
    pub fn press(&self, product: ProductId) {
        let position = self
            .buttons
            .iter()
            .position(|p| *p == product)
            .unwrap_or_else(|| panic!("no button for {product} in {:?}", self.buttons));
        self.inputs.press(position);
    }

    /// The next `n` sounds; panics if they do not come within [`WAIT`].
    pub async fn sounds(&mut self, n: usize) -> Vec<Sound> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(WAIT, self.sounds.recv()).await {
                Ok(Some(s)) => out.push(s),
                _ => panic!("expected {n} sounds, heard {out:?}"),
            }
        }
        out
    }

    /// Sounds that arrive within `window` (expecting none, usually).
    pub async fn quiet_for(&mut self, window: Duration) -> Vec<Sound> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(s)) = tokio::time::timeout_at(deadline, self.sounds.recv()).await {
            out.push(s);
        }
        out
    }

    /// The lamp states shown so far, in order.
    pub fn lamps(&self) -> Vec<Lamps> {
        self.lights.changes().into_iter().map(|(_, l)| l).collect()
    }

    /// What the four-digit display showed so far, in order, as text (` 2.50`).
    pub fn shown(&self) -> Vec<String> {
        self.display
            .changes()
            .into_iter()
            .map(|(_, t)| t.to_string())
            .collect()
    }

    /// Waits until the display shows `text`; panics if it does not within [`WAIT`].
    pub async fn displays(&self, text: DisplayText) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.display.changes().last().map(|(_, t)| *t) != Some(text) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "display never showed [{text}]: {:?}",
                self.shown()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the device and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("device did not stop")
            .expect("device task panicked");
    }
}

/// Sells `card` a pass of `product` at a terminal rig, checking the sounds of the full sales
/// flow: the product's name and price spoken before "tap your card to confirm" and again after
/// the thank-you (a product with a recorded thank-you hears it; any other the generic), and the
/// price on the display. Returns the product's name and price as spoken.
pub async fn buy(terminal: &mut Rig, card: &str, product: ProductId) -> Sound {
    use tapgate_device::prompt::Prompt;
    terminal.tap(card);
    assert_eq!(
        terminal.sounds(1).await,
        vec![Sound::Say(Prompt::SelectPass)]
    );
    terminal.press(product);
    let chosen = terminal.sounds(2).await;
    let [spoken @ Sound::Price {
        price, currency, ..
    }, Sound::Say(Prompt::TapToConfirm)] = &chosen[..]
    else {
        panic!("expected the name and price, then the prompt: {chosen:?}");
    };
    terminal
        .displays(DisplayText::price(*price, *currency))
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await; // lift the card: past the hold window
    terminal.tap(card);
    assert_eq!(
        terminal.sounds(3).await,
        vec![
            Sound::Chime,
            Sound::Say(Prompt::thank_you(product)),
            spoken.clone()
        ]
    );
    spoken.clone()
}
