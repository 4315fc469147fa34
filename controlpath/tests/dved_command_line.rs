//! The `dved` binary: `check` prints the plan of a good file and refuses a bad one with
//! its line (exit code 2); a running daemon serves until SIGTERM and stops cleanly (exit
//! code 0), and a second start over the same redb file works.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

fn dved() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dved"))
}

const CONFIG: &str = r#"
[engine]
domain = 2
workers = 2
metadata = "e.redb"

[management]
listen = "127.0.0.1:0"

[[port]]
name = "a"
backend = "software"

[[port]]
name = "b"
backend = "software"
"#;

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("dved.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_prints_the_plan_or_the_line_that_is_wrong() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("dved.example.toml");
    let out = dved().arg("check").arg(&example).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("2 fast-path worker(s) on 2 port(s)"), "{stdout}");
    assert!(stdout.contains("port 1 `disks`: software, served by worker 1"), "{stdout}");

    let dir = tempfile_dir();
    let bad = write(
        dir.path(),
        &CONFIG.replace("backend = \"software\"\n\n[[port]]", "backend = \"dpdk\"\n\n[[port]]"),
    );
    let out = dved().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let (line, reason) = if cfg!(feature = "dpdk") {
        ("dved.toml:10:", "a dpdk port needs device")
    } else {
        ("dved.toml:12:", "built without the dpdk feature")
    };
    assert!(stderr.contains(line), "{stderr}");
    assert!(stderr.contains(reason), "{stderr}");
    assert!(!dir.path().join("e.redb").exists(), "a refused file starts nothing");

    let out = dved().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no configuration: {out:?}");
}

/// The DPDK example is checked by a build with the DPDK port, and refused, with the way to
/// build one, by a build without.
#[test]
fn check_reads_the_dpdk_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("dved.dpdk.example.toml");
    let out = dved().arg("check").arg(&example).output().unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    if cfg!(feature = "dpdk") {
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stdout.contains("port 0 `hosts`: dpdk net_af_packet0, served by worker 0"), "{stdout}");
        assert!(stdout.contains("port 1 `disks`: dpdk net_af_packet1, served by worker 1"), "{stdout}");
        assert!(stdout.contains("--vdev=net_af_packet1,iface=eth2,qpairs=2"), "{stdout}");
        assert!(stdout.contains("workers poll without pausing"), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(2), "{stdout}");
        assert!(stderr.contains("--features dve-controlpath/dpdk"), "{stderr}");
    }
}

/// A `dved` process started on a configuration file, read up to the line that says it runs.
struct RunningDved {
    child: Child,
    stderr: BufReader<ChildStderr>,
    /// What it wrote up to and including that line (EAL may log before it).
    seen: String,
}

impl RunningDved {
    fn start(config: &Path) -> RunningDved {
        let mut child = dved().arg("--config").arg(config).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("dved ended before running: {seen}");
            }
            seen.push_str(&line);
            if line.starts_with("dved: engine") {
                break;
            }
        }
        RunningDved { child, stderr, seen }
    }

    /// The line that says the daemon runs.
    fn running_line(&self) -> &str {
        self.seen.lines().last().unwrap_or_default()
    }

    /// Send SIGTERM: the daemon must exit 0 having closed its metadata.
    fn stop(mut self) {
        let killed = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "dved did not stop");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        assert_eq!(status.code(), Some(0), "{}{rest}", self.seen);
        assert!(rest.contains("stopped; metadata closed"), "{rest}");
    }
}

#[test]
fn a_running_daemon_stops_cleanly_on_sigterm_and_starts_again() {
    let dir = tempfile_dir();
    let config = write(dir.path(), CONFIG);
    for run in 0..2 {
        let dved = RunningDved::start(&config);
        let line = dved.running_line();
        assert!(
            line.contains("running") && line.contains("management API on 127.0.0.1:"),
            "run {run}: {line}"
        );
        assert!(dir.path().join("e.redb").exists());
        dved.stop();
    }
}

/// `dved` on two DPDK `net_null` devices (which drop what they are sent and, with `no-rx`,
/// receive nothing): EAL starts from the file's `[dpdk]` arguments, every device is opened
/// with a transmit queue per worker, and the daemon runs and stops cleanly on SIGTERM.
#[cfg(feature = "dpdk")]
#[test]
fn a_daemon_on_dpdk_ports_runs_and_stops_cleanly() {
    let dir = tempfile_dir();
    let text = CONFIG
        .replacen("backend = \"software\"", "backend = \"dpdk\"\ndevice = \"net_null0\"", 1)
        .replacen("backend = \"software\"", "backend = \"dpdk\"\ndevice = \"net_null1\"", 1)
        + r#"
[dpdk]
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256",
            "--vdev=net_null0,no-rx=1", "--vdev=net_null1,no-rx=1"]
idle_pause_us = 100
"#;
    let config = write(dir.path(), &text);
    let dved = RunningDved::start(&config);
    assert!(dved.running_line().contains("running: 2 worker(s), 2 DPDK port(s)"), "{}", dved.seen);
    dved.stop();
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
