//! What `dmavm run` does to its own process so that nothing it holds or
//! starts gains more than it was given.

use anyhow::{Context, Result};

/// `PR_SET_NO_NEW_PRIVS`: no program this process (or a child) executes
/// gains privileges from set-user-ID bits or file capabilities. dmavm
/// needs none beyond what it was started with.
pub fn no_new_privs() -> Result<()> {
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers and
    // touches no memory of this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set PR_SET_NO_NEW_PRIVS");
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec: the event fds and
/// their duplicates made by libraries (vmm-sys-util's `EventFd::new` and
/// `try_clone` do not ask for it) would otherwise reach any program the
/// process executes.
pub fn close_on_exec_all() -> Result<()> {
    // One system call (Linux 5.11); the walk of /proc/self/fd below takes
    // two per descriptor, a measurable part of dmavm's start-up.
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on the
    // descriptors in the range; it takes plain integers.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EINVAL)) {
        return Err(err).context("close_range(CLOSE_RANGE_CLOEXEC) failed");
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("listing /proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD and F_SETFD change only the descriptor's flags;
        // a descriptor closed meanwhile (the directory's own) fails with
        // EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_descriptor_becomes_close_on_exec() {
        // SAFETY: eventfd takes plain integers; the descriptor is closed
        // below.
        let fd = unsafe { libc::eventfd(0, 0) };
        assert!(fd > 2, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: F_GETFD reads only the descriptor's flags.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
        close_on_exec_all().unwrap();
        // SAFETY: as above; close releases the descriptor made here.
        unsafe {
            assert_eq!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
            libc::close(fd);
        }
    }
}
