//! The calls every filtered thread makes: the allocator, locks, logging,
//! leaving a signal handler, ending the thread, and what the violation
//! handler itself needs.

use anyhow::Result;
use seccompiler::SeccompCmpOp;

use super::ioctls;
use super::rules::{no_exec, AllowList};

/// Adds the calls of every thread to `list`.
pub fn add(list: &mut AllowList) -> Result<()> {
    list
        // Log lines on stderr, guest console output on stdout (UART or
        // virtio-console), and eventfd writes: irqfds, wake-ups of the
        // event loop, the stop request.
        .call(libc::SYS_write)
        // std's Mutex, Condvar and thread parking.
        .call(libc::SYS_futex)
        // The allocator: heap growth and large blocks, returned on free;
        // never executable memory (mmap and mprotect below).
        .call(libc::SYS_brk)
        .call(libc::SYS_munmap)
        .call(libc::SYS_mremap)
        .call(libc::SYS_madvise)
        // `Instant::now` when the vDSO cannot read the clock (some
        // virtualised clock sources fall back to the system call).
        .call(libc::SYS_clock_gettime)
        // std's HashMap seeds its hasher from the kernel once per thread.
        .call(libc::SYS_getrandom)
        // Returning from a signal handler (the vCPU kick, SIGSYS).
        .call(libc::SYS_rt_sigreturn)
        // Thread exit (glibc blocks signals, std removes its alternate
        // signal stack) and the process's exit.
        .call(libc::SYS_rt_sigprocmask)
        .call(libc::SYS_sigaltstack)
        .call(libc::SYS_exit)
        .call(libc::SYS_exit_group)
        // Dropping descriptors: a vCPU thread closes its vCPU fd as it
        // ends, the main thread every fd of the VM.
        .call(libc::SYS_close)
        .when(libc::SYS_mmap, &[no_exec()])?
        .when(libc::SYS_mprotect, &[no_exec()])?
        // Debug builds of std check a descriptor is open before closing it.
        .when(libc::SYS_fcntl, &[(1, SeccompCmpOp::Eq, libc::F_GETFD as u64)])?;
    // The terminal's canonical mode restored (by the raw-mode guard, or by
    // the violation handler before it ends dmavm): stdin only.
    for request in ioctls::TERMINAL {
        list.when(libc::SYS_ioctl, &[(0, SeccompCmpOp::Eq, 0), (1, SeccompCmpOp::Eq, request)])?;
    }
    Ok(())
}
