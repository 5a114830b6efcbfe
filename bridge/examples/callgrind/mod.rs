//! The bench's instruction counts: with `TAPGATE_BENCH_CALLGRIND=1` each bridge build runs under
//! valgrind's callgrind, instrumented only while its measured taps are answered, so what it
//! executed per tap is counted rather than timed. The timed CPU per tap moves by a tenth from run
//! to run on a shared machine; this count is the same every run for the same binaries and load.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the bench counts instructions instead of raising rates.
pub fn wanted() -> bool {
    std::env::var_os("TAPGATE_BENCH_CALLGRIND").is_some_and(|v| v == "1")
}

/// The command that starts `binary` under callgrind, writing its counts into `dir`, with
/// instrumentation off until [`start`] (start-up and warm-up are not counted).
pub fn command(binary: &Path, dir: &Path, name: &str) -> Command {
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!(
            "--callgrind-out-file={}",
            out_file(dir, name).display()
        ))
        .arg(binary);
    cmd
}

fn out_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.cg", name.replace(' ', "-")))
}

fn control(pid: u32, args: &[&str]) {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("callgrind_control runs (Debian/Ubuntu: apt-get install -y valgrind)");
    assert!(status.success(), "callgrind_control {args:?} {pid}");
}

/// Counts from now on.
pub fn start(pid: u32) {
    control(pid, &["--instr=on"]);
}

/// Stops counting and returns the instructions counted since [`start`] (the dump callgrind
/// writes beside its output file, `<file>.1`).
pub fn stop(pid: u32, dir: &Path, name: &str) -> u64 {
    control(pid, &["--instr=off"]);
    control(pid, &["--dump"]);
    let base = out_file(dir, name);
    let dump = std::fs::read_dir(dir)
        .expect("the counts' folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .zip(base.file_name().and_then(|f| f.to_str()))
                .is_some_and(|(f, b)| f.starts_with(b) && f != b)
        })
        .expect("callgrind wrote a dump");
    let text = std::fs::read_to_string(&dump).expect("the dump");
    text.lines()
        .find_map(|l| l.strip_prefix("totals:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a total in the dump")
}
