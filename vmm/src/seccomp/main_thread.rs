//! The main thread's allow-list, installed when the VM is built and its
//! vCPU threads started, before the event loop handles its first event.
//! The event loop processes the virtio queues (disk reads, writes and
//! flushes, random bytes, console output), feeds stdin to the console,
//! reads termination signals, answers the control socket; then the main thread stops the vCPUs,
//! prints `--stats`, restores the terminal and exits. Every file it reads
//! or writes is open already.

use std::collections::BTreeMap;

use anyhow::Result;
use seccompiler::{SeccompCmpOp, SeccompRule};

use super::rules::AllowList;

/// The calls the main thread may make.
pub fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    Ok(list.into_rules())
}

fn allow_list() -> Result<AllowList> {
    let mut list = AllowList::default();
    list
        // The event loop: waiting, and watching stdin on and off as the
        // console takes input.
        .call(libc::SYS_epoll_pwait)
        .call(libc::SYS_epoll_ctl)
        // Queue notify eventfds, the signalfd, the stop event, stdin.
        .call(libc::SYS_read)
        // virtio-blk: reads and writes at an offset into guest buffers,
        // FLUSH.
        .call(libc::SYS_preadv)
        .call(libc::SYS_pwritev)
        .call(libc::SYS_fdatasync)
        // Stopping the vCPUs: pthread_kill of each thread with the kick
        // signal, within this process only; a short sleep between rounds.
        .call(libc::SYS_getpid)
        .when(libc::SYS_tgkill, &[(0, SeccompCmpOp::Eq, u64::from(std::process::id()))])?
        .call(libc::SYS_clock_nanosleep)
        // The control socket (--api-socket), listening since before the
        // filter: its clients accepted non-blocking and close-on-exec,
        // read with `read`, answered without SIGPIPE. Pausing the vCPUs
        // kicks them with tgkill, above.
        .when(libc::SYS_accept4, &[(3, SeccompCmpOp::Eq, (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64)])?
        .when(libc::SYS_sendto, &[(3, SeccompCmpOp::Eq, libc::MSG_NOSIGNAL as u64)])?;
    // A virtio-net device sets its TAP's offloads as the driver
    // negotiates them.
    list.ioctls(&[super::ioctls::TAP_OFFLOADS])?;
    // Architectures that have them besides the generic calls.
    #[cfg(target_arch = "x86_64")]
    list.call(libc::SYS_epoll_wait).call(libc::SYS_nanosleep);
    // The IOAPIC delivers a pin's MSI on the thread that raised it: the
    // UART's receive interrupt is raised here as input arrives.
    #[cfg(target_arch = "x86_64")]
    list.ioctls(&[super::ioctls::KVM_SIGNAL_MSI()])?;
    Ok(list)
}

#[cfg(test)]
pub(super) fn list_for_tests() -> Result<AllowList> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    Ok(list)
}
