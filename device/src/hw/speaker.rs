//! Speakers: prompts as text lines, or (feature `audio`) real sound.
//!
//! [`TextSpeaker`] prints each sound as a line (`(chime)`, `"access granted"`, `"Day pass, seven
//! euros fifty cents"`) — the default, and what a device without audio hardware does. With the
//! `audio` feature, `audio::AudioSpeaker` plays the chime and buzzer as generated tones and the
//! prompts from the WAV recordings in `device/assets/`, compiled into the binary, on the default
//! ALSA output. A product's price is played as its recorded words ([`crate::words`]); its name,
//! free text from the operator, is synthesised by `espeak-ng` when the device has it, and left
//! out (with a log line, once) when it has not.

use std::io::Write;

use super::Speaker;
use crate::prompt::Sound;

/// Prints every sound as a line on a writer (stdout by default).
pub struct TextSpeaker<W: Write + Send + 'static = std::io::Stdout> {
    out: W,
}

impl TextSpeaker {
    /// Prints to stdout.
    pub fn stdout() -> Self {
        Self {
            out: std::io::stdout(),
        }
    }
}

impl<W: Write + Send + 'static> TextSpeaker<W> {
    /// Prints to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send + 'static> Speaker for TextSpeaker<W> {
    type Error = std::io::Error;

    fn play(&mut self, sound: Sound) -> Result<(), std::io::Error> {
        writeln!(self.out, "  speaker: {sound}")?;
        self.out.flush()
    }
}

/// The recording of a prompt, as shipped in `device/assets/`
/// ([`crate::prompt::Prompt::file_name`]).
#[cfg(feature = "audio")]
pub fn recording(prompt: crate::prompt::Prompt) -> &'static [u8] {
    macro_rules! assets {
        ($($f:literal),* $(,)?) => {
            match prompt.file_name() {
                $($f => include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $f)),)*
                // The tests check that every prompt is listed here.
                _ => &[],
            }
        };
    }
    assets!(
        "select_pass.wav",
        "tap_to_confirm.wav",
        "thank_you.wav",
        "thank_you_single_trip.wav",
        "thank_you_ten_trip.wav",
        "thank_you_two_hour.wav",
        "already_has_pass.wav",
        "card_mismatch.wav",
        "access_granted.wav",
        "access_denied.wav",
        "tap_card_first.wav",
        "service_unavailable.wav",
    )
}

#[cfg(feature = "audio")]
pub mod audio {
    //! Sound through ALSA with rodio, on a thread of its own (the output stream is not `Send`).

    use std::io::Cursor;
    use std::sync::mpsc;
    use std::time::Duration;

    use rodio::source::{SineWave, SquareWave};
    use rodio::{Decoder, DeviceSinkBuilder, Player, Source};
    use tracing::warn;

    use super::recording;
    use crate::hw::Speaker;
    use crate::prompt::Sound;
    use crate::words;

    /// Why sound cannot be played.
    #[derive(Debug, thiserror::Error)]
    pub enum AudioError {
        /// No output device could be opened.
        #[error("cannot open the audio output: {0}")]
        Open(String),
        /// The audio thread has stopped.
        #[error("the audio thread has stopped")]
        Stopped,
    }

    /// Plays sounds on the default output device, one after another.
    pub struct AudioSpeaker {
        tx: mpsc::Sender<Sound>,
    }

    impl AudioSpeaker {
        /// Opens the default output device; fails if there is none.
        pub fn open() -> Result<Self, AudioError> {
            let (tx, rx) = mpsc::channel::<Sound>();
            let (ready_tx, ready_rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("audio".into())
                .spawn(move || {
                    let sink = match DeviceSinkBuilder::open_default_sink() {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let player = Player::connect_new(sink.mixer());
                    let mut voice = Voice::default();
                    while let Ok(sound) = rx.recv() {
                        append(&player, &mut voice, sound);
                    }
                })
                .map_err(|e| AudioError::Open(e.to_string()))?;
            match ready_rx.recv() {
                Ok(Ok(())) => Ok(Self { tx }),
                Ok(Err(e)) => Err(AudioError::Open(e)),
                Err(_) => Err(AudioError::Stopped),
            }
        }
    }

    /// The voice a product's name is synthesised with: `espeak-ng`, while it can be run.
    #[derive(Default)]
    struct Voice {
        missing: bool,
    }

    impl Voice {
        /// `text` as WAV bytes from `espeak-ng` (the text on stdin, never as an argument).
        fn synthesise(&mut self, text: &str) -> Option<Vec<u8>> {
            use std::io::Write;
            use std::process::{Command, Stdio};
            if self.missing {
                return None;
            }
            let child = Command::new("espeak-ng")
                .args(["-v", "en-gb", "-s", "150", "--stdout"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "Product names are not spoken: espeak-ng cannot be run");
                    self.missing = true;
                    return None;
                }
            };
            if let Some(mut stdin) = child.stdin.take() {
                if let Err(e) = stdin.write_all(text.as_bytes()) {
                    warn!(error = %e, "Cannot hand a product name to espeak-ng");
                }
            }
            match child.wait_with_output() {
                Ok(out) if out.status.success() => Some(out.stdout),
                Ok(out) => {
                    warn!(status = %out.status, "espeak-ng failed on a product name");
                    None
                }
                Err(e) => {
                    warn!(error = %e, "espeak-ng failed on a product name");
                    None
                }
            }
        }
    }

    /// A short pause between words played one after another.
    const WORD_GAP: Duration = Duration::from_millis(60);

    fn silence(d: Duration) -> impl Source + Send + 'static {
        rodio::source::Zero::new(rodio::nz!(1), rodio::nz!(16_000)).take_duration(d)
    }

    fn append_wav(player: &Player, bytes: Vec<u8>, what: &str) {
        match Decoder::new(Cursor::new(bytes)) {
            Ok(d) => player.append(d),
            Err(e) => warn!(what, error = %e, "Cannot decode sound"),
        }
    }

    fn append(player: &Player, voice: &mut Voice, sound: Sound) {
        match sound {
            Sound::Chime => {
                player.append(
                    SineWave::new(880.0)
                        .take_duration(Duration::from_millis(140))
                        .amplify(0.3),
                );
                player.append(
                    SineWave::new(1320.0)
                        .take_duration(Duration::from_millis(260))
                        .amplify(0.3),
                );
            }
            Sound::Buzzer => player.append(
                SquareWave::new(180.0)
                    .take_duration(Duration::from_millis(600))
                    .amplify(0.15),
            ),
            Sound::Say(prompt) => match Decoder::new(Cursor::new(recording(prompt))) {
                Ok(d) => player.append(d),
                Err(e) => warn!(%prompt, error = %e, "Cannot decode prompt"),
            },
            Sound::Price {
                name,
                price,
                currency,
            } => {
                if let Some(wav) = voice.synthesise(&name) {
                    append_wav(player, wav, "product name");
                    player.append(silence(WORD_GAP * 3));
                }
                for word in words::amount(price, currency) {
                    append_wav(player, words::recording(word).to_vec(), word.text());
                    player.append(silence(WORD_GAP));
                }
            }
        }
    }

    impl Speaker for AudioSpeaker {
        type Error = AudioError;

        fn play(&mut self, sound: Sound) -> Result<(), AudioError> {
            self.tx.send(sound).map_err(|_| AudioError::Stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Prompt;
    use crate::words::Word;

    #[test]
    fn text_lines() {
        let mut s = TextSpeaker::new(Vec::new());
        s.play(Sound::Chime).expect("play");
        s.play(Sound::Say(Prompt::CardMismatch)).expect("play");
        s.play(Sound::price(
            "Day pass",
            750,
            tapgate_protocol::Currency::EUR,
        ))
        .expect("play");
        let text = String::from_utf8(s.out).expect("utf8");
        assert_eq!(
            text,
            "  speaker: (chime)\n  speaker: \"different card — transaction cancelled\"\n  \
             speaker: \"Day pass, seven euros fifty cents\"\n"
        );
    }

    /// Every prompt and every word has its recording in `device/assets/`: a small 16 kHz mono
    /// 16-bit WAV.
    #[test]
    fn every_prompt_and_word_is_recorded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        #[cfg(feature = "audio")]
        for p in Prompt::all() {
            assert!(!recording(p).is_empty(), "{p:?} is not compiled in");
        }
        #[cfg(feature = "audio")]
        for w in Word::ALL {
            assert!(
                !crate::words::recording(*w).is_empty(),
                "{w} is not compiled in"
            );
        }
        let files = Prompt::all()
            .map(Prompt::file_name)
            .chain(Word::ALL.iter().map(|w| w.file_name()));
        for file in files {
            let path = dir.join(file);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run device/assets/generate.sh)", path.display())
            });
            assert!(
                bytes.len() > 1000 && bytes.len() < 200_000,
                "{}",
                path.display()
            );
            assert_eq!(&bytes[0..4], b"RIFF", "{}", path.display());
            assert_eq!(&bytes[8..12], b"WAVE", "{}", path.display());
            let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
            let rate = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
            let bits = u16::from_le_bytes([bytes[34], bytes[35]]);
            assert_eq!(
                (channels, rate, bits),
                (1, 16_000, 16),
                "{}",
                path.display()
            );
        }
    }

    /// No recording of a word that is not in the table (a renamed or dropped word).
    #[test]
    fn every_recorded_word_is_in_the_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/words");
        let entries = std::fs::read_dir(&dir).expect("assets/words");
        for entry in entries {
            let name = entry.expect("entry").file_name();
            let file = format!("words/{}", name.to_string_lossy());
            assert!(
                Word::ALL.iter().any(|w| w.file_name() == file),
                "{file} is no word of src/words.rs"
            );
        }
    }
}
