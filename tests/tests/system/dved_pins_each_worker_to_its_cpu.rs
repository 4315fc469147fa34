//! `[engine] cpus` pins each worker's thread to its CPU: the threads `dved` starts run only
//! there, as the kernel reports it. A CPU the process may not run on is refused before any
//! worker starts, naming it.

use std::path::Path;

use dve_controlpath::daemon::affinity::allowed_cpus;
use dve_controlpath::daemon::{DaemonConfig, DaemonError, EngineRuntime, SoftwarePortSet};

fn config(dir: &Path, cpus: &[usize]) -> DaemonConfig {
    let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let text = format!(
        r#"
[engine]
domain = 9
workers = {}
cpus = [{}]
metadata = "engine.redb"

[management]
listen = "127.0.0.1:0"

[[port]]
name = "hosts"
backend = "software"

[[port]]
name = "disks"
backend = "software"
"#,
        cpus.len(),
        list.join(", ")
    );
    let path = dir.join("dved.toml");
    std::fs::write(&path, text).expect("config written");
    DaemonConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The CPUs the kernel lets each of this process's threads named `dve-worker-*` run on.
fn worker_threads() -> Vec<(String, String)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("a task").path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else { continue };
        let name = name.trim().to_string();
        if !name.starts_with("dve-worker-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        let cpus = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list")
            .trim()
            .to_string();
        found.push((name, cpus));
    }
    found.sort();
    found
}

#[test]
fn each_worker_runs_only_on_the_cpu_its_configuration_names() {
    let allowed = allowed_cpus().expect("sched_getaffinity");
    // Two workers on two CPUs where there are two, in reverse order so the pinning is not the
    // identity; one worker otherwise.
    let cpus: Vec<usize> = match allowed.as_slice() {
        [first, .., last] => vec![*last, *first],
        [only] => vec![*only],
        [] => panic!("no CPU allowed"),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config(dir.path(), &cpus);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut ports, _far_ends) = SoftwarePortSet::new(2);
    let engine =
        runtime.block_on(EngineRuntime::start(&config, &mut ports)).unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<(String, String)> =
        cpus.iter().enumerate().map(|(i, cpu)| (format!("dve-worker-{i}"), cpu.to_string())).collect();
    assert_eq!(worker_threads(), expected);
    runtime.block_on(engine.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(worker_threads(), [], "the workers are gone after the shutdown");
}

#[test]
fn a_cpu_the_process_may_not_use_is_refused_before_any_worker_starts() {
    let allowed = allowed_cpus().expect("sched_getaffinity");
    let outside = (0..1024).find(|c| !allowed.contains(c)).expect("a CPU outside the process's set");
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config(dir.path(), &[outside]);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut ports, _far_ends) = SoftwarePortSet::new(2);
    let Err(refused) = runtime.block_on(EngineRuntime::start(&config, &mut ports)) else {
        panic!("CPU {outside} was taken");
    };
    assert!(matches!(refused, DaemonError::Cpus(_)), "{refused:?}");
    assert!(
        refused.to_string().contains(&format!("CPU {outside} is not one this process may run on")),
        "{refused}"
    );
    assert_eq!(worker_threads(), []);
}
