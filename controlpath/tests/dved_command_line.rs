//! The `dved` binary: `check` prints the plan of a good file and refuses a bad one with
//! its line (exit code 2); a running daemon serves until SIGTERM and stops cleanly (exit
//! code 0), and a second start over the same redb file works.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
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
    assert!(stderr.contains("dved.toml:12:"), "{stderr}");
    assert!(stderr.contains("built without the dpdk feature"), "{stderr}");
    assert!(!dir.path().join("e.redb").exists(), "a refused file starts nothing");

    let out = dved().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no configuration: {out:?}");
}

#[test]
fn a_running_daemon_stops_cleanly_on_sigterm_and_starts_again() {
    let dir = tempfile_dir();
    let config = write(dir.path(), CONFIG);
    for run in 0..2 {
        let mut child = dved().arg("--config").arg(&config).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(
            line.contains("running") && line.contains("management API on 127.0.0.1:"),
            "run {run}: {line}"
        );
        assert!(dir.path().join("e.redb").exists());
        let killed = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "dved did not stop");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
        assert_eq!(status.code(), Some(0), "run {run}: {rest}");
        assert!(rest.contains("stopped; metadata closed"), "run {run}: {rest}");
    }
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
