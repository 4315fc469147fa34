//! Worker threads pinned to CPUs (`[engine] cpus`): a poll-mode worker that the scheduler
//! moves between CPUs loses its caches and waits behind other threads. The CPUs are checked
//! against those the process may run on before any worker starts.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The CPUs the calling thread may run on, in order.
pub fn allowed_cpus() -> Result<Vec<usize>, nix::Error> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count()).filter(|cpu| set.is_set(*cpu).unwrap_or(false)).collect())
}

/// Pin the calling thread to `cpu` alone.
pub fn pin_current_thread(cpu: usize) -> Result<(), nix::Error> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

/// Why `cpus` cannot be used by this process, if one cannot: the first CPU it may not run on.
pub fn refused_cpu(cpus: &[usize]) -> Result<Option<String>, nix::Error> {
    if cpus.is_empty() {
        return Ok(None);
    }
    let allowed = allowed_cpus()?;
    Ok(cpus.iter().find(|cpu| !allowed.contains(cpu)).map(|cpu| {
        let list: Vec<String> = allowed.iter().map(usize::to_string).collect();
        format!("CPU {cpu} is not one this process may run on ({})", list.join(", "))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_runs_there_alone() {
        let allowed = allowed_cpus().expect("sched_getaffinity");
        assert!(!allowed.is_empty());
        let cpu = *allowed.last().expect("a CPU");
        let seen = std::thread::spawn(move || {
            pin_current_thread(cpu).expect("pinned");
            allowed_cpus().expect("sched_getaffinity")
        })
        .join()
        .expect("the thread ran");
        assert_eq!(seen, [cpu]);
        assert_eq!(allowed_cpus().expect("sched_getaffinity"), allowed, "other threads keep their CPUs");
    }

    #[test]
    fn cpus_the_process_may_not_use_are_named() {
        assert_eq!(refused_cpu(&[]).unwrap(), None);
        let allowed = allowed_cpus().unwrap();
        assert_eq!(refused_cpu(&allowed).unwrap(), None);
        let outside = (0..CpuSet::count()).find(|c| !allowed.contains(c)).expect("a CPU outside the set");
        let why = refused_cpu(&[allowed[0], outside]).unwrap().expect("refused");
        assert!(why.starts_with(&format!("CPU {outside} is not one")), "{why}");
    }
}
