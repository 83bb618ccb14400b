//! The host side of the `net` check's network: a network namespace of the
//! calling thread's own (a namespace belongs to the thread that unshares
//! it, and to the processes that thread starts), persistent TAP interfaces
//! in it with link-local addresses, made with the same ioctls as `ip
//! tuntap add` and `ip addr add` so that the harness needs no tools.
//! Everything here vanishes with the namespace once the thread and the VM
//! it started have ended.

use std::fs::OpenOptions;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// The TAP driver's control device.
const TUN: &str = "/dev/net/tun";

/// Why the namespace or a TAP could not be made, as one line naming the
/// step.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// unshare(CLONE_NEWNET) failed.
    #[error("creating the run's network namespace: {0} (the net check needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN)")]
    Namespace(#[source] io::Error),
    /// There is no /dev/net/tun, or it cannot be opened.
    #[error("no TAP support: {TUN}: {0} (the net check needs the kernel's tun driver: modprobe tun)")]
    NoTun(#[source] io::Error),
    /// A step on one interface failed.
    #[error("{what} {interface}: {source}")]
    Interface {
        /// The step (`TUNSETIFF`, `setting the address of`, ...).
        what: &'static str,
        /// The interface.
        interface: String,
        /// Why.
        source: io::Error,
    },
}

/// Moves the calling thread into a network namespace of its own, with
/// only `lo` in it, brought up.
pub fn enter_new() -> Result<(), NetnsError> {
    // SAFETY: unshare(2) with one flag; CLONE_NEWNET moves only the calling
    // thread, and nothing of this process depends on its namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(NetnsError::Namespace(io::Error::last_os_error()));
    }
    set_up("lo")
}

/// Loads the tun driver when its control device is missing (a host whose
/// tun is a module nobody loaded yet); whether it is there afterwards is
/// for [`make_tap`] to find out.
pub fn load_tun() {
    if !Path::new(TUN).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("tun")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// An ifreq naming `name` (at most IFNAMSIZ - 1 bytes; longer names are
/// cut, and the kernel then names another interface: callers pass the
/// harness's own short names).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

fn ifreq_ioctl(
    fd: RawFd,
    request: libc::Ioctl,
    ifr: &mut libc::ifreq,
    what: &'static str,
    name: &str,
) -> Result<(), NetnsError> {
    // SAFETY: every request passed here reads or writes one ifreq, which
    // `ifr` is, borrowed mutably for the call.
    if unsafe { libc::ioctl(fd, request, ifr as *mut libc::ifreq) } < 0 {
        return Err(NetnsError::Interface {
            what,
            interface: name.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// A UDP socket in the calling thread's namespace, for the interface
/// ioctls.
fn control_socket(name: &str) -> Result<OwnedFd, NetnsError> {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetnsError::Interface {
            what: "opening a socket to configure",
            interface: name.into(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn inet(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(addr.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes); the
    // kernel reads it as its family says.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Brings interface `name` up.
pub fn set_up(name: &str) -> Result<(), NetnsError> {
    let sock = control_socket(name)?;
    let mut ifr = ifreq(name);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr, "reading the flags of", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr, "bringing up", name)
}

/// Makes the persistent TAP `name` (`IFF_TAP | IFF_NO_PI`, as `ip tuntap
/// add mode tap` does: the VM opens it by name and sets its own flags),
/// gives it `addr/prefix` and brings it up.
pub fn make_tap(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), NetnsError> {
    let tun = OpenOptions::new().read(true).write(true).open(TUN).map_err(NetnsError::NoTun)?;
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    ifreq_ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut ifr, "TUNSETIFF (making the TAP)", name)?;
    // SAFETY: TUNSETPERSIST takes an integer argument.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(NetnsError::Interface {
            what: "TUNSETPERSIST (keeping the TAP)",
            interface: name.into(),
            source: io::Error::last_os_error(),
        });
    }
    drop(tun);
    let sock = control_socket(name)?;
    let mut ifr = ifreq(name);
    ifr.ifr_ifru.ifru_addr = inet(addr);
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &mut ifr, "setting the address of", name)?;
    let mut ifr = ifreq(name);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    ifr.ifr_ifru.ifru_netmask = inet(Ipv4Addr::from(mask));
    ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFNETMASK, &mut ifr, "setting the netmask of", name)?;
    set_up(name)
}
