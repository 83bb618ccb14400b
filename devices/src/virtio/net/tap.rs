//! A TAP interface as a [`NetBackend`]: `/dev/net/tun` attached to an
//! existing interface with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a
//! `struct virtio_net_hdr_v1` in front of every frame (`TUNSETVNETHDRSZ`
//! 12), non-blocking. The host sets the interface up (addresses, bridge,
//! namespace); the device only moves frames.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::backend::{NetBackend, Offloads, VNET_HDR_LEN};

/// The longest interface name (`IFNAMSIZ` less its NUL).
pub const TAP_NAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Why a TAP cannot be opened. Each message names the interface and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error(
        "'{0}' is not an interface name (1 to {TAP_NAME_MAX} characters, no '/', no NUL, not '.' or '..')"
    )]
    BadName(String),
    /// No interface of that name exists (dmavm does not create one).
    #[error("TAP interface '{0}' does not exist (create it first: ip tuntap add dev {0} mode tap)")]
    Missing(String),
    /// `/dev/net/tun` cannot be opened.
    #[error(
        "cannot open /dev/net/tun for TAP '{name}': {io} (it needs the tun module and read-write access)"
    )]
    Device {
        /// The interface.
        name: String,
        /// What open(2) said.
        #[source]
        io: std::io::Error,
    },
    /// The caller may not attach to the interface.
    #[error("no permission to attach to TAP '{0}' (give it to this user with ip tuntap add ... user USER, or run with CAP_NET_ADMIN)")]
    Permission(String),
    /// The interface exists but is not a TAP (a TUN, a bridge, a NIC...).
    #[error("interface '{0}' exists but is not a TAP (the kernel refused to attach to it as one)")]
    NotTap(String),
    /// An ioctl the device needs failed.
    #[error("TAP '{name}': {what} failed")]
    Ioctl {
        /// The interface.
        name: String,
        /// The ioctl.
        what: &'static str,
        /// What it said.
        #[source]
        io: std::io::Error,
    },
}

/// An open TAP interface.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TAP_NAME_MAX
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
}

impl Tap {
    /// Attaches to the existing TAP interface `name`.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if !valid_name(name) {
            return Err(TapError::BadName(name.to_owned()));
        }
        let c_name = CString::new(name).map_err(|_| TapError::BadName(name.to_owned()))?;
        // SAFETY: `c_name` is a NUL-terminated string that outlives the call.
        if unsafe { libc::if_nametoindex(c_name.as_ptr()) } == 0 {
            // TUNSETIFF would create a missing interface when the caller
            // may; dmavm only attaches to the one the host made.
            return Err(TapError::Missing(name.to_owned()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|io| TapError::Device { name: name.to_owned(), io })?;
        // SAFETY: ifreq is plain old data; all zeros is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which
        // `ifr` is, on a descriptor this function owns.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut libc::ifreq) };
        if r < 0 {
            let io = std::io::Error::last_os_error();
            return Err(match io.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission(name.to_owned()),
                Some(libc::EINVAL) => TapError::NotTap(name.to_owned()),
                _ => TapError::Ioctl { name: name.to_owned(), what: "TUNSETIFF", io },
            });
        }
        let tap = Self { file, name: name.to_owned() };
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which `hdr_len` is.
        let r = unsafe {
            libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len as *const libc::c_int)
        };
        if r < 0 {
            return Err(tap.ioctl_error("TUNSETVNETHDRSZ"));
        }
        // No offloads until a driver accepts them.
        tap.offload(Offloads::default()).map_err(|io| TapError::Ioctl {
            name: name.to_owned(),
            what: "TUNSETOFFLOAD",
            io,
        })?;
        Ok(tap)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ioctl_error(&self, what: &'static str) -> TapError {
        TapError::Ioctl { name: self.name.clone(), what, io: std::io::Error::last_os_error() }
    }

    fn offload(&self, offloads: Offloads) -> std::io::Result<()> {
        let mut flags: libc::c_uint = 0;
        if offloads.csum {
            flags |= libc::TUN_F_CSUM;
        }
        if offloads.tso4 {
            flags |= libc::TUN_F_TSO4;
        }
        if offloads.tso6 {
            flags |= libc::TUN_F_TSO6;
        }
        // SAFETY: TUNSETOFFLOAD takes its flags as the argument itself, not
        // a pointer; the descriptor is this TAP's.
        let r =
            unsafe { libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl NetBackend for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // One read(2) is one frame on a TAP.
        self.file.read(buf)
    }

    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        // One write(2) is one frame; the TAP takes it whole or fails.
        let n = self.file.write(frame)?;
        if n != frame.len() {
            return Err(std::io::Error::other(format!("TAP took {n} of {} bytes", frame.len())));
        }
        Ok(())
    }

    fn set_offloads(&mut self, offloads: Offloads) -> std::io::Result<()> {
        self.offload(offloads)
    }

    fn readiness_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_the_kernel_sees_them() {
        for bad in ["", ".", "..", "a/b", "sixteen-chars-xx", "a b", "a\0b"] {
            assert!(matches!(Tap::open(bad), Err(TapError::BadName(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_interface_is_named() {
        let err = Tap::open("dmavmnotthere0").unwrap_err();
        assert!(matches!(err, TapError::Missing(_)), "{err:?}");
        assert!(err.to_string().contains("TAP interface 'dmavmnotthere0' does not exist"), "{err}");
    }

    #[test]
    fn an_interface_that_is_not_a_tap_is_refused() {
        // The loopback interface exists everywhere; attaching fails either
        // because it is not a TAP or because the test may not attach.
        match Tap::open("lo") {
            Err(TapError::NotTap(_) | TapError::Permission(_) | TapError::Device { .. }) => {}
            other => panic!("lo attached as a TAP: {other:?}"),
        }
    }
}
