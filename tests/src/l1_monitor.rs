//! The human monitor of the QEMU that runs L1, on a Unix socket.
//!
//! QEMU 7.2's TCG with nested SVM now and then loses a wakeup of a halted
//! x86 vCPU for good: its local APIC holds a deliverable interrupt (the
//! timer's, in `info lapic`: a vector in IRR above the processor
//! priority) while the vCPU stays halted with interrupts on. Nothing
//! brings it back (an NMI runs its handler and the vCPU halts again with
//! the interrupt still pending), and as all of L1's work waits on that
//! timer, L1 stops. [`L1Monitor::lost_wakeups`] recognises that state
//! (twice, a second apart: no correct CPU stays there), so that the runner
//! stops such an L1 within seconds instead of after minutes of silence,
//! logging first what [`L1Monitor::account`] says L1's vCPUs were doing.
//! The test bed's own QEMU (10.0) shows it too, on some machines of the
//! same kind far more often than on others, and more often while L1 arms
//! many short timers (a guest streaming through virtio-net).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often a runner asks the monitor about an L1 that has been silent
/// that long: a vCPU stuck on a lost wakeup costs a run at most about
/// this much before it is stopped.
pub const SILENCE_CHECK_PERIOD: Duration = Duration::from_secs(10);

/// How long one command's answer is awaited: the monitor answers at once
/// unless QEMU's main loop itself is stuck.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// Most bytes kept of one answer (`info registers -a` on many vCPUs is a
/// few KiB).
const MAX_ANSWER: usize = 64 * 1024;

/// A monitor socket for one QEMU run: the path QEMU listens on.
#[derive(Debug)]
pub struct L1Monitor {
    path: PathBuf,
}

impl L1Monitor {
    /// A socket path in the temporary directory (Unix socket paths are
    /// short; a checkout's build directory may be deep), unique to this
    /// process and call, with `tag` in it.
    pub fn new(tag: &str) -> Self {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dmavm-l1-{}-{n}-{tag}.monitor", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self { path }
    }

    /// QEMU's arguments that serve the monitor on the socket (QEMU does
    /// not wait for a client).
    pub fn qemu_args(&self) -> [String; 2] {
        ["-monitor".to_string(), format!("unix:{},server=on,wait=off", self.path.display())]
    }

    /// Runs `commands` on the monitor, twice `pause` apart (a vCPU whose
    /// instruction pointer moves between the two is running, not stuck),
    /// and returns the answers as log lines. Errors are returned as lines
    /// too: this is evidence-gathering on the way to stopping QEMU.
    pub fn snapshot(&self, commands: &[&str], pause: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        for round in 1..=2 {
            match self.ask(commands) {
                Ok(answers) => {
                    lines.push(format!("# L1 monitor, round {round}:"));
                    for (cmd, text) in commands.iter().zip(answers) {
                        lines.push(format!("#   > {cmd}"));
                        lines.extend(text.lines().map(|l| format!("#   {l}")));
                    }
                }
                Err(e) => lines.push(format!("# L1 monitor {}: {e}", self.path.display())),
            }
            if round == 1 {
                std::thread::sleep(pause);
            }
        }
        lines
    }

    /// What L1's vCPUs are doing, as log lines: [`Self::snapshot`] of
    /// whether they are halted and where they stand (interrupt flag,
    /// instruction pointer), and, on x86, the local APIC (a timer armed,
    /// an interrupt pending). arm64's QEMU answers `info lapic` with an
    /// error line, which is harmless.
    pub fn account(&self) -> Vec<String> {
        self.snapshot(
            &["info status", "info cpus", "info registers -a", "info lapic"],
            Duration::from_secs(2),
        )
    }

    /// The x86 vCPUs of L1 that stay halted, `pause` apart, with the same
    /// deliverable interrupt pending in their local APIC: wakeups QEMU
    /// lost. Empty when none is, on arm64 (no `info lapic`), and when the
    /// monitor does not answer.
    pub fn lost_wakeups(&self, pause: Duration) -> Vec<LostWakeup> {
        let first = self.stuck_now();
        if first.is_empty() {
            return first;
        }
        std::thread::sleep(pause);
        let second = self.stuck_now();
        first.into_iter().filter(|w| second.contains(w)).collect()
    }

    fn stuck_now(&self) -> Vec<LostWakeup> {
        let Ok(cpus) = self.ask(&["info cpus"]).map(|a| a.concat().matches("CPU #").count()) else {
            return Vec::new();
        };
        let mut commands = vec!["info registers -a".to_string()];
        commands.extend((0..cpus).map(|i| format!("info lapic {i}")));
        let commands: Vec<&str> = commands.iter().map(String::as_str).collect();
        let Ok(answers) = self.ask(&commands) else {
            return Vec::new();
        };
        let Some((registers, lapics)) = answers.split_first() else {
            return Vec::new();
        };
        halted_with_interrupts_on(registers)
            .into_iter()
            .filter_map(|cpu| {
                let vector = deliverable_pending(lapics.get(cpu)?)?;
                Some(LostWakeup { cpu, vector })
            })
            .collect()
    }

    /// Each command's answer, in order.
    fn ask(&self, commands: &[&str]) -> std::io::Result<Vec<String>> {
        let mut s = UnixStream::connect(&self.path)?;
        s.set_read_timeout(Some(Duration::from_millis(300)))?;
        // the greeting and first prompt
        read_for(&mut s, &mut Vec::new(), ANSWER_WAIT);
        let mut answers = Vec::new();
        for cmd in commands {
            s.write_all(format!("{cmd}\n").as_bytes())?;
            let mut out = Vec::new();
            read_for(&mut s, &mut out, ANSWER_WAIT);
            answers.push(answer(&String::from_utf8_lossy(&out)));
        }
        Ok(answers)
    }

    /// The socket's path.
    #[cfg(test)]
    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for L1Monitor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A vCPU of L1 halted with an interrupt its local APIC should deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostWakeup {
    /// The vCPU's index.
    pub cpu: usize,
    /// The highest deliverable vector waiting in its IRR.
    pub vector: u8,
}

impl std::fmt::Display for LostWakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vCPU {} of L1 stays halted with vector {} pending in its local APIC: \
             a wakeup QEMU lost, which it never recovers from",
            self.cpu, self.vector
        )
    }
}

/// The vCPUs that `info registers -a` shows halted (`HLT=1`) with
/// interrupts enabled (RFLAGS.IF, bit 9).
fn halted_with_interrupts_on(registers: &str) -> Vec<usize> {
    let mut halted = Vec::new();
    let mut cpu = None;
    for line in registers.lines() {
        if let Some(n) = line.trim().strip_prefix("CPU#") {
            cpu = n.trim().parse::<usize>().ok();
        }
        let rflags = line.split_whitespace().find_map(|w| w.strip_prefix("RFL="));
        let (Some(c), Some(rflags)) = (cpu, rflags) else { continue };
        let interrupts_on = u64::from_str_radix(rflags, 16).is_ok_and(|f| f & 0x200 != 0);
        if interrupts_on && line.split_whitespace().any(|w| w == "HLT=1") {
            halted.push(c);
        }
    }
    halted
}

/// The highest vector `info lapic` shows waiting in the IRR whose priority
/// class is above the processor priority's (so the APIC must present it;
/// Intel SDM vol. 3, 11.8.3.1), if any.
fn deliverable_pending(lapic: &str) -> Option<u8> {
    let mut irr = Vec::new();
    let mut ppr = None;
    for line in lapic.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"IRR") {
            irr = words[1..].iter().filter_map(|w| w.parse::<u8>().ok()).collect();
        }
        if let Some(i) = words.iter().position(|w| *w == "PPR") {
            ppr = words.get(i + 1).and_then(|v| u8::from_str_radix(v.trim_start_matches("0x"), 16).ok());
        }
    }
    let ppr = ppr?;
    irr.into_iter().filter(|v| v & 0xf0 > ppr & 0xf0).max()
}

/// The answer in what the monitor sent back after a command: without
/// its line editor's echo of the command (cursor movements, so any line
/// with an escape character) and the prompts.
fn answer(raw: &str) -> String {
    raw.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.contains('\x1b') && !l.trim().is_empty() && l.trim() != "(qemu)")
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Reads what `s` sends until it has been quiet after answering, `limit`
/// has passed, or `out` holds `MAX_ANSWER` bytes.
fn read_for(s: &mut UnixStream, out: &mut Vec<u8>, limit: Duration) {
    let start = Instant::now();
    let mut got_any = false;
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit && out.len() < MAX_ANSWER {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                got_any = true;
            }
            // quiet for the read timeout after an answer: it is complete
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if got_any {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn answers_of_both_rounds_become_log_lines() {
        let mon = L1Monitor::new("unit");
        let listener = UnixListener::bind(mon.path()).unwrap();
        let server = std::thread::spawn(move || {
            for round in 0..2 {
                let (mut c, _) = listener.accept().unwrap();
                c.write_all(b"QEMU monitor\r\n(qemu) ").unwrap();
                let mut buf = [0u8; 64];
                let n = c.read(&mut buf).unwrap();
                assert_eq!(&buf[..n], b"info cpus\n");
                let echo = "i\x1b[K\x1b[Din\x1b[Kinfo cpus\x1b[K\r\n";
                c.write_all(format!("{echo}* CPU #0: thread_id={round} (halted)\r\n(qemu) ").as_bytes())
                    .unwrap();
            }
        });
        let lines = mon.snapshot(&["info cpus"], Duration::from_millis(10));
        server.join().unwrap();
        assert!(lines.contains(&"# L1 monitor, round 1:".to_string()), "{lines:?}");
        assert!(lines.contains(&"# L1 monitor, round 2:".to_string()), "{lines:?}");
        let round_2: Vec<&str> =
            lines.iter().skip_while(|l| !l.ends_with("round 2:")).map(String::as_str).collect();
        assert_eq!(
            round_2,
            ["# L1 monitor, round 2:", "#   > info cpus", "#   * CPU #0: thread_id=1 (halted)"]
        );
    }

    /// What QEMU 7.2's monitor answered about a frozen one-vCPU L1
    /// (shortened: no FPU or vector registers).
    const FROZEN_REGISTERS: &str = "
CPU#0
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000000
RIP=ffffffffa7c95fef RFL=00000206 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
CR0=80050033 CR2=000000002066d750 CR3=0000000001d12000 CR4=00751ef0
";
    const FROZEN_LAPIC: &str = "dumping local APIC state for CPU 0
LVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)
Timer\t DCR=0x3 (divide by 16) initial_count = 87453 current_count = 0
SPIV\t 0x000001ff APIC enabled, focus=off, spurious vec 255
ISR\t (none)
IRR\t 236
APR 0x00 TPR 0x10 DFR 0x0f LDR 0x00 PPR 0x10
";

    #[test]
    fn a_halted_vcpu_with_the_timer_pending_is_a_lost_wakeup() {
        assert_eq!(halted_with_interrupts_on(FROZEN_REGISTERS), [0]);
        assert_eq!(deliverable_pending(FROZEN_LAPIC), Some(236));
    }

    #[test]
    fn running_masked_or_idle_vcpus_are_not() {
        let two = "CPU#0\nRIP=ffffffff8173946d RFL=00000092 [--S-A--] CPL=0 II=0 A20=1 SMM=0 HLT=0\n\
                   CPU#1\nRIP=ffffffffa7c95fef RFL=00000006 [-----P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
                   CPU#2\nRIP=ffffffffa7c95fef RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n";
        // running; halted with interrupts off; halted and waiting
        assert_eq!(halted_with_interrupts_on(two), [2]);
        // nothing pending
        assert_eq!(deliverable_pending(&FROZEN_LAPIC.replace("IRR\t 236", "IRR\t (none)")), None);
        // pending but below the processor priority (an interrupt of the same
        // class in service)
        assert_eq!(deliverable_pending(&FROZEN_LAPIC.replace("PPR 0x10", "PPR 0xe0")), None);
        assert_eq!(deliverable_pending(&FROZEN_LAPIC.replace("IRR\t 236", "IRR\t 34 236 239")), Some(239));
        // arm64's monitor has no `info lapic`
        assert_eq!(deliverable_pending("unknown command: 'info lapic'"), None);
    }

    #[test]
    fn a_missing_monitor_is_reported_not_fatal() {
        let mon = L1Monitor::new("absent");
        assert_eq!(mon.lost_wakeups(Duration::from_millis(1)), []);
        let lines = mon.snapshot(&["info cpus"], Duration::from_millis(1));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("# L1 monitor ") && lines[0].contains("absent"), "{lines:?}");
    }
}
