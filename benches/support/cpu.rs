//! A process's CPU time, from `/proc/PID/stat`, for the benches that run the real binary
//! beside their load generator (which includes this file by path).

use std::time::Duration;

/// CPU time a process used, split because the system part is mostly the socket work.
#[derive(Clone, Copy)]
pub struct Cpu {
    pub user: Duration,
    pub system: Duration,
}

impl Cpu {
    /// The CPU time so far of process `pid` (or `self`).
    pub fn of(pid: &str) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th,
        // in ticks of 10 ms (USER_HZ is 100 on Linux).
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks = |i: usize| Duration::from_millis(fields[i].parse::<u64>().unwrap() * 10);
        Cpu {
            user: ticks(11),
            system: ticks(12),
        }
    }

    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, before: Cpu) -> Cpu {
        Cpu {
            user: self.user - before.user,
            system: self.system - before.system,
        }
    }
}

/// The whole machine's busy and stolen CPU time so far, from `/proc/stat`: what the server and
/// the load generator did not use themselves was taken by other processes (or, as steal, by
/// the hypervisor), and makes the run's figures suspect.
pub fn machine_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    // cpu  user nice system idle iowait irq softirq steal ...
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap())
        .collect();
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    (
        Duration::from_millis(busy * 10),
        Duration::from_millis(ticks[7] * 10),
    )
}
