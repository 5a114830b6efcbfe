//! Simulated hardware for a laptop, and the fakes tests use.
//!
//! A person types a card number to tap it and `1` to `9` for the terminal's buttons (button N
//! sells the Nth product of the terminal's `buttons` setting); the traffic light is drawn as
//! coloured blocks, the four-digit display as its text in brackets (`display: [ 2.50]`), and
//! prompts are printed. The same commands can be piped in on stdin as a
//! script:
//!
//! ```text
//! tap 04A1B2C3      # or just: 04A1B2C3   (a card on the reader)
//! 2                 # or: press 2         (button 2)
//! wait 2s           # pause the script
//! quit              # stop the device
//! ```
//!
//! [`SimReader`] and [`SimButtons`] are fed through [`SimInputs`]; [`RecordingLights`],
//! [`RecordingDisplay`] and [`RecordingSpeaker`] keep what they were asked to do, for tests.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tapgate_protocol::CardId;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Buttons, CardReader, Display, Lights, Speaker};
use crate::digits::DisplayText;
use crate::prompt::{Lamps, Sound};

/// Feeds simulated cards and button presses.
#[derive(Clone)]
pub struct SimInputs {
    cards: std::sync::mpsc::Sender<CardId>,
    buttons: std::sync::mpsc::Sender<usize>,
}

impl SimInputs {
    /// Puts `card` on the reader once (one sighting).
    pub fn tap(&self, card: CardId) {
        let _ = self.cards.send(card);
    }

    /// Presses the button at `position` (from 0).
    pub fn press(&self, position: usize) {
        let _ = self.buttons.send(position);
    }
}

/// A simulated card reader: each card sent through [`SimInputs::tap`] is seen once.
pub struct SimReader(std::sync::mpsc::Receiver<CardId>);

/// Simulated buttons: presses come from [`SimInputs::press`], already clean.
pub struct SimButtons(std::sync::mpsc::Receiver<usize>);

/// A simulated reader and buttons, and the handle that drives them.
pub fn sim_hardware() -> (SimInputs, SimReader, SimButtons) {
    let (cards, card_rx) = std::sync::mpsc::channel();
    let (buttons, button_rx) = std::sync::mpsc::channel();
    (
        SimInputs { cards, buttons },
        SimReader(card_rx),
        SimButtons(button_rx),
    )
}

impl CardReader for SimReader {
    type Error = Infallible;
    fn poll(&mut self) -> Result<Option<CardId>, Infallible> {
        Ok(self.0.try_recv().ok())
    }
}

impl Buttons for SimButtons {
    type Error = Infallible;
    fn poll(&mut self, _now: Instant) -> Result<Option<usize>, Infallible> {
        Ok(self.0.try_recv().ok())
    }
}

/// Draws the traffic light as three coloured blocks on a terminal.
pub struct ConsoleLights<W: Write + Send + 'static = std::io::Stdout> {
    out: W,
    colour: bool,
}

impl ConsoleLights {
    /// Draws on stdout: in colour on a terminal, as letters (`[R A .]`) when piped or logged.
    pub fn stdout() -> Self {
        use std::io::IsTerminal;
        Self {
            out: std::io::stdout(),
            colour: std::io::stdout().is_terminal(),
        }
    }
}

impl<W: Write + Send + 'static> ConsoleLights<W> {
    /// Draws on `out`; `colour` false uses letters instead of ANSI colours.
    pub fn new(out: W, colour: bool) -> Self {
        Self { out, colour }
    }
}

/// The light as text: `[R A G]` with lit lamps in colour (or as letters, dark as `.`).
pub fn draw(lamps: Lamps, colour: bool) -> String {
    let lamp = |on: bool, code: &str, letter: char| match (colour, on) {
        (true, true) => format!("\x1b[{code}m  \x1b[0m"),
        (true, false) => "\x1b[100m  \x1b[0m".to_owned(),
        (false, true) => letter.to_string(),
        (false, false) => ".".to_owned(),
    };
    format!(
        "[{} {} {}]",
        lamp(lamps.red, "41", 'R'),
        lamp(lamps.amber, "43", 'A'),
        lamp(lamps.green, "42", 'G')
    )
}

impl<W: Write + Send + 'static> Lights for ConsoleLights<W> {
    type Error = std::io::Error;
    fn set(&mut self, lamps: Lamps) -> Result<(), std::io::Error> {
        writeln!(self.out, "  lights:  {}", draw(lamps, self.colour))?;
        self.out.flush()
    }
}

/// Lights that remember every change with its time, for tests.
#[derive(Clone, Default)]
pub struct RecordingLights(pub Arc<Mutex<Vec<(Instant, Lamps)>>>);

impl RecordingLights {
    /// Every change so far.
    pub fn changes(&self) -> Vec<(Instant, Lamps)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Lights for RecordingLights {
    type Error = Infallible;
    fn set(&mut self, lamps: Lamps) -> Result<(), Infallible> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), lamps));
        Ok(())
    }
}

/// Prints the four-digit display as its text in brackets: `  display: [ 2.50]`.
pub struct ConsoleDisplay<W: Write + Send + 'static = std::io::Stdout> {
    out: W,
}

impl ConsoleDisplay {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self {
            out: std::io::stdout(),
        }
    }
}

impl<W: Write + Send + 'static> ConsoleDisplay<W> {
    /// Prints to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send + 'static> Display for ConsoleDisplay<W> {
    type Error = std::io::Error;
    fn show(&mut self, text: DisplayText) -> Result<(), std::io::Error> {
        writeln!(self.out, "  display: [{text}]")?;
        self.out.flush()
    }
}

/// A display that remembers everything shown with its time, for tests.
#[derive(Clone, Default)]
pub struct RecordingDisplay(pub Arc<Mutex<Vec<(Instant, DisplayText)>>>);

impl RecordingDisplay {
    /// Everything shown so far.
    pub fn changes(&self) -> Vec<(Instant, DisplayText)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Display for RecordingDisplay {
    type Error = Infallible;
    fn show(&mut self, text: DisplayText) -> Result<(), Infallible> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), text));
        Ok(())
    }
}

/// A speaker that sends every sound to a channel, for tests.
pub struct RecordingSpeaker(pub mpsc::UnboundedSender<Sound>);

impl Speaker for RecordingSpeaker {
    type Error = Infallible;
    fn play(&mut self, sound: Sound) -> Result<(), Infallible> {
        let _ = self.0.send(sound);
        Ok(())
    }
}

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleCommand {
    /// A card on the reader.
    Tap(CardId),
    /// A button, by its position from 0 (typed as its number, from 1).
    Press(usize),
    /// Pause the script.
    Wait(Duration),
    /// Stop the device.
    Quit,
    /// Print the commands.
    Help,
    /// Blank line or comment.
    Nothing,
}

/// The console's help text.
pub const HELP: &str = "commands: CARD or `tap CARD` (a card on the reader), 1 to 9 or \
`press N` (button N), `wait 2s`, `quit`";

/// Buttons the console can press: one key each, `1` to `9`.
pub const CONSOLE_BUTTONS: usize = 9;

/// Parses one line of console input.
pub fn parse_line(line: &str) -> Result<ConsoleCommand, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let mut words = line.split_whitespace();
    let (Some(first), second, None) = (words.next(), words.next(), words.next()) else {
        return if line.is_empty() {
            Ok(ConsoleCommand::Nothing)
        } else {
            Err(format!("too many words in {line:?}; {HELP}"))
        };
    };
    let button = |w: &str| match w.as_bytes() {
        [d @ b'1'..=b'9'] => Some(usize::from(d - b'1')),
        _ => None,
    };
    let card = |w: &str| CardId::new(w).map_err(|e| format!("not a card number: {e}"));
    match (first, second) {
        ("quit" | "exit", None) => Ok(ConsoleCommand::Quit),
        ("help" | "?", None) => Ok(ConsoleCommand::Help),
        ("tap", Some(c)) => card(c).map(ConsoleCommand::Tap),
        ("press", Some(b)) => button(b)
            .map(ConsoleCommand::Press)
            .ok_or_else(|| format!("no button {b:?}; use 1 to {CONSOLE_BUTTONS}")),
        ("wait", Some(d)) => humantime::parse_duration(d)
            .map(ConsoleCommand::Wait)
            .map_err(|e| format!("bad duration {d:?}: {e}")),
        (w, None) => match button(w) {
            Some(p) => Ok(ConsoleCommand::Press(p)),
            None => card(w).map(ConsoleCommand::Tap),
        },
        _ => Err(format!("unknown command {line:?}; {HELP}")),
    }
}

/// Reads console commands from `input` until `quit`, end of input or `shutdown`; `quit` cancels
/// `shutdown`. Bad lines are answered with a message and change nothing.
pub async fn run_console<R: AsyncBufRead + Unpin>(
    input: R,
    inputs: SimInputs,
    shutdown: CancellationToken,
) {
    let mut lines = input.lines();
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = lines.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "Console input unreadable");
                return;
            }
        };
        match parse_line(&line) {
            Ok(ConsoleCommand::Tap(c)) => inputs.tap(c),
            Ok(ConsoleCommand::Press(p)) => inputs.press(p),
            Ok(ConsoleCommand::Wait(d)) => tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(d) => {}
            },
            Ok(ConsoleCommand::Quit) => {
                shutdown.cancel();
                return;
            }
            Ok(ConsoleCommand::Help) => println!("{HELP}"),
            Ok(ConsoleCommand::Nothing) => {}
            Err(e) => println!("  ? {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let card = |s: &str| ConsoleCommand::Tap(CardId::new(s).expect("card"));
        assert_eq!(parse_line("tap 04A1"), Ok(card("04A1")));
        assert_eq!(parse_line("  04A1  # a comment"), Ok(card("04A1")));
        assert_eq!(parse_line("1"), Ok(ConsoleCommand::Press(0)));
        assert_eq!(parse_line("press 9"), Ok(ConsoleCommand::Press(8)));
        assert_eq!(
            parse_line("wait 250ms"),
            Ok(ConsoleCommand::Wait(Duration::from_millis(250)))
        );
        assert_eq!(parse_line("quit"), Ok(ConsoleCommand::Quit));
        assert_eq!(parse_line(""), Ok(ConsoleCommand::Nothing));
        assert_eq!(parse_line("# only a comment"), Ok(ConsoleCommand::Nothing));
        for bad in [
            "tap 04-A1",
            "press 0",
            "press 10",
            "press two",
            "wait soon",
            "tap a b",
            "ca rd",
            "<x>",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn draws_lamps() {
        assert_eq!(draw(Lamps::RED, false), "[R . .]");
        assert_eq!(draw(Lamps::RED_AMBER, false), "[R A .]");
        assert_eq!(draw(Lamps::GREEN, false), "[. . G]");
        assert!(draw(Lamps::GREEN, true).contains("\x1b[42m"));
    }

    #[test]
    fn prints_the_display() {
        let mut d = ConsoleDisplay::new(Vec::new());
        d.show(DisplayText::price(250, tapgate_protocol::Currency::EUR))
            .expect("show");
        d.show(DisplayText::BLANK).expect("show");
        assert_eq!(
            String::from_utf8(d.out).expect("utf8"),
            "  display: [ 2.50]\n  display: [    ]\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn script_drives_the_inputs() {
        let (inputs, mut reader, mut buttons) = sim_hardware();
        let shutdown = CancellationToken::new();
        let script = b"tap C1\n2\nbogus-line!\nwait 1s\nC2\nquit\nC3\n";
        run_console(&script[..], inputs, shutdown.clone()).await;
        assert!(shutdown.is_cancelled());
        assert_eq!(
            reader.poll().expect("poll").map(String::from),
            Some("C1".into())
        );
        assert_eq!(
            reader.poll().expect("poll").map(String::from),
            Some("C2".into())
        );
        assert_eq!(reader.poll().expect("poll"), None, "nothing after quit");
        assert_eq!(buttons.poll(Instant::now()).expect("poll"), Some(1));
    }
}
