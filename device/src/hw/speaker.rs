//! Speakers: prompts as text lines, or (feature `audio`) real sound.
//!
//! [`TextSpeaker`] prints each sound as a line (`(chime)`, `"access granted"`) — the default, and
//! what a device without audio hardware does. With the `audio` feature, [`audio::AudioSpeaker`]
//! plays the chime and buzzer as generated tones and the prompts from the WAV recordings in
//! `device/assets/`, compiled into the binary, on the default ALSA output.

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
                    while let Ok(sound) = rx.recv() {
                        append(&player, sound);
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

    fn append(player: &Player, sound: Sound) {
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

    #[test]
    fn text_lines() {
        let mut s = TextSpeaker::new(Vec::new());
        s.play(Sound::Chime).expect("play");
        s.play(Sound::Say(Prompt::CardMismatch)).expect("play");
        let text = String::from_utf8(s.out).expect("utf8");
        assert_eq!(
            text,
            "  speaker: (chime)\n  speaker: \"different card — transaction cancelled\"\n"
        );
    }

    /// Every prompt has its recording in `device/assets/`: a small 16 kHz mono 16-bit WAV.
    #[test]
    fn every_prompt_is_recorded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        for p in Prompt::all() {
            #[cfg(feature = "audio")]
            assert!(!recording(p).is_empty(), "{p:?} is not compiled in");
            let path = dir.join(p.file_name());
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
}
