//! tapgate devices: entry gates and sales terminals, and a rider simulator.
//!
//! - [`logic`]: the gate and terminal as pure state machines (inputs and decisions in, light,
//!   sound, prompt and publish commands out), plus reader debounce and message ids.
//! - [`prompt`]: spoken prompts, sounds, light patterns, and the lines shown to riders.
//! - [`words`]: prices as spoken words, from a small set of recorded words.
//! - [`digits`]: what the four-digit display shows (a price, trips or time left) and its
//!   seven-segment encoding.
//! - [`hw`]: hardware traits (card reader, buttons, lights, speaker, display) and their implementations:
//!   generic embedded-hal drivers, Raspberry Pi constructors (feature `rpi`), audio (feature
//!   `audio`), and simulated console hardware.
//! - [`link`]: the MQTT link (QoS 1, persistent session, status and heartbeat, outage queue).
//! - [`runtime`]: runs a gate or terminal: hardware and link around the state machine.
//! - [`config`]: layered settings (defaults, TOML file, environment, flags).
//! - [`cli`]: the command line, and the `run` entry points `main` calls.
//! - [`sim`]: the rider simulator: many devices, riders acting out sales and rides, every
//!   decision checked against [`tapgate_protocol::rules::decide`], latency measured open-loop.

pub mod cli;
pub mod config;
pub mod digits;
pub mod hw;
pub mod link;
pub mod logic;
pub mod prompt;
pub mod runtime;
pub mod sim;
pub mod words;
