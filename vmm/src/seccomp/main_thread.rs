//! The main thread's allow-list, installed when the VM is built and its
//! vCPU threads started, before the event loop handles its first event.
//! The event loop processes the virtio queues (disk reads, writes and
//! flushes, random bytes, console output), feeds stdin to the console,
//! reads termination signals, answers the control socket; then the main thread stops the vCPUs,
//! prints `--stats`, restores the terminal and exits. Every file it reads
//! or writes is open already.

use std::collections::BTreeMap;

use std::os::fd::RawFd;

use anyhow::{Context, Result};
use seccompiler::{SeccompCmpOp, SeccompRule};

use super::rules::AllowList;

/// The calls the main thread may make; with `hotplug`, also those that
/// build and tear down a PCI device while the VM runs; with `socket_dir`
/// (the control socket's directory, held open), looking up and removing
/// names in that directory only, for the socket file at the end.
pub fn rules(hotplug: bool, socket_dir: Option<RawFd>) -> Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    if hotplug {
        add_hotplug(&mut list)?;
    }
    if let Some(fd) = socket_dir {
        let fd = u64::try_from(fd).context("the control socket's directory descriptor")?;
        list.when(libc::SYS_newfstatat, &[(0, SeccompCmpOp::Eq, fd)])?
            .when(libc::SYS_unlinkat, &[(0, SeccompCmpOp::Eq, fd)])?;
    }
    Ok(list.into_rules())
}

/// What `add-device` and `remove-device` on the control socket need, only
/// for a machine with a `hotplug=on` bridge and a control socket: opening
/// and locking the disk image a client names, the device's eventfds, its
/// MSI-X irqfds and routes, its queue notifications placed and withdrawn
/// with its BAR. Opening files is the widest of these: a machine that
/// cannot take devices does not get it.
fn add_hotplug(list: &mut AllowList) -> Result<()> {
    list.call(libc::SYS_openat)
        .call(libc::SYS_statx)
        .call(libc::SYS_newfstatat)
        .call(libc::SYS_fstat)
        .call(libc::SYS_flock)
        .call(libc::SYS_lseek)
        .call(libc::SYS_eventfd2)
        .when(libc::SYS_fcntl, &[(1, SeccompCmpOp::Eq, libc::F_GETFL as u64)])?
        .when(libc::SYS_fcntl, &[(1, SeccompCmpOp::Eq, libc::F_SETFL as u64)])?
        // The queue eventfds handed to the event loop and to KVM are
        // duplicates (close-on-exec).
        .when(libc::SYS_fcntl, &[(1, SeccompCmpOp::Eq, libc::F_DUPFD_CLOEXEC as u64)])?;
    list.ioctls(&[
        super::ioctls::KVM_IRQFD(),
        super::ioctls::KVM_IOEVENTFD(),
        super::ioctls::KVM_SET_GSI_ROUTING(),
    ])?;
    Ok(())
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
    // negotiates them, and sends each frame with one writev straight from
    // guest memory.
    list.ioctls(&[super::ioctls::TAP_OFFLOADS])?;
    list.call(libc::SYS_writev);
    // It holds transmit notifications off for a moment after sending, on
    // a timer created with the device (the control socket's eject timeout
    // is the other timer armed here).
    list.call(libc::SYS_timerfd_settime);
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
pub(super) fn list_for_tests(hotplug: bool) -> Result<AllowList> {
    let mut list = allow_list()?;
    super::common::add(&mut list)?;
    if hotplug {
        add_hotplug(&mut list)?;
    }
    Ok(list)
}
