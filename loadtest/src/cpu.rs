//! CPU time of a process (user + system) from `/proc/<pid>/stat`, sampled at
//! the start and the end of the measured window, so a server's cost per
//! request excludes setup and warm-up. Linux only; elsewhere the figures are
//! simply absent.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, almost always 100).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid` ("self" for this process), or None when unreadable.
pub fn cpu_time(pid: &str, ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second as f64,
    ))
}

/// CPU time all processors spent busy (user, nice, system, irq, softirq,
/// steal) since boot, from the first line of `/proc/stat`.
pub fn machine_busy(ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(Duration::from_secs_f64(
        busy as f64 / ticks_per_second as f64,
    ))
}

/// A process whose CPU time is watched over the measured window.
#[derive(Clone, Debug)]
pub struct Watched {
    pub name: String,
    pub pid: String,
}

impl std::str::FromStr for Watched {
    type Err = String;
    fn from_str(s: &str) -> Result<Watched, String> {
        let (name, pid) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PID, got {s:?}"))?;
        pid.parse::<u32>()
            .map_err(|_| format!("{pid:?} is not a process id"))?;
        Ok(Watched {
            name: name.to_string(),
            pid: pid.to_string(),
        })
    }
}

/// CPU times of the watched processes, of this one ("client") and of the
/// whole machine ("machine", all processors) at one moment.
pub struct Sample {
    pub times: Vec<(String, Option<Duration>)>,
}

pub fn sample(watched: &[Watched], ticks: u64) -> Sample {
    let mut times: Vec<(String, Option<Duration>)> = watched
        .iter()
        .map(|w| (w.name.clone(), cpu_time(&w.pid, ticks)))
        .collect();
    times.push(("client".to_string(), cpu_time("self", ticks)));
    times.push(("machine".to_string(), machine_busy(ticks)));
    Sample { times }
}

/// CPU seconds each process used between two samples.
pub fn delta(before: &Sample, after: &Sample) -> Vec<(String, Option<f64>)> {
    before
        .times
        .iter()
        .zip(&after.times)
        .map(|((name, b), (_, a))| {
            let d = match (b, a) {
                (Some(b), Some(a)) => Some(a.saturating_sub(*b).as_secs_f64()),
                _ => None,
            };
            (name.clone(), d)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_time() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(cpu_time("self", clock_ticks_per_second()).is_some());
        }
        assert!("server=12".parse::<Watched>().is_ok());
        assert!("server".parse::<Watched>().is_err());
    }
}
