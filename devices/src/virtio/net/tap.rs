//! A TAP interface as a [`NetBackend`]: `/dev/net/tun` attached to an
//! existing interface with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a
//! `struct virtio_net_hdr_v1` in front of every frame (`TUNSETVNETHDRSZ`
//! 12), non-blocking. The host sets the interface up (addresses, bridge,
//! namespace); the device only moves frames.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::backend::{GuestFrame, NetBackend, Offloads, VNET_HDR_LEN};

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

    fn write_frame(&mut self, frame: &GuestFrame<'_>) -> std::io::Result<()> {
        // One writev(2) is one frame; the TAP takes it whole or fails.
        let iov = frame.iovecs();
        let count = libc::c_int::try_from(iov.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EMSGSIZE))?;
        // SAFETY: `iov` is `count` iovecs, each naming mapped memory
        // (`GuestFrame`'s contract) that the kernel only reads.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), count) };
        let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
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

    /// Sends `bytes` as a frame in two pieces (the header, the rest), as a
    /// driver's header-then-data chain arrives.
    fn send(tap: &mut Tap, bytes: &[u8]) -> std::io::Result<()> {
        let (head, rest) = bytes.split_at(VNET_HDR_LEN.min(bytes.len()));
        let iov =
            [head, rest].map(|p| libc::iovec { iov_base: p.as_ptr().cast_mut().cast(), iov_len: p.len() });
        // SAFETY: both pieces point into `bytes`, which outlives the frame.
        tap.write_frame(&unsafe { GuestFrame::new(&iov) })
    }

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

    /// Runs `f` on a thread of its own in a new network namespace (a
    /// network namespace belongs to the thread that unshares it): the TAP
    /// and its addresses exist only there and vanish with the thread.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) with one flag; CLONE_NEWNET moves only
            // this thread into a new namespace.
            let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                r,
                0,
                "unshare(CLONE_NEWNET): {} (needs CAP_SYS_ADMIN)",
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap()
    }

    fn ifreq(name: &str) -> libc::ifreq {
        // SAFETY: ifreq is plain old data; all zeros is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr
    }

    /// ioctl(2) on `fd` with an ifreq, asserting success.
    fn ifreq_ioctl(fd: RawFd, request: libc::Ioctl, ifr: &mut libc::ifreq, what: &str) {
        // SAFETY: every request used here reads or writes one ifreq.
        let r = unsafe { libc::ioctl(fd, request, ifr as *mut libc::ifreq) };
        assert!(r >= 0, "{what}: {}", std::io::Error::last_os_error());
    }

    fn inet_port(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip) },
            sin_zero: [0; 8],
        }
    }

    fn inet(ip: [u8; 4]) -> libc::sockaddr {
        // SAFETY: sockaddr_in and sockaddr have the same size; the kernel
        // reads it as the family says.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet_port(ip, 0)) }
    }

    /// A UDP socket in this thread's namespace.
    fn udp() -> std::os::fd::OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor nobody else owns.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    }

    /// Makes the persistent TAP `name` (as `ip tuntap add` does), gives it
    /// 169.254.77.1/24 and brings it and `lo` up; returns its MAC.
    fn make_tap(name: &str) -> [u8; 6] {
        let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun").unwrap();
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        ifreq_ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut ifr, "TUNSETIFF");
        // SAFETY: TUNSETPERSIST takes an integer argument.
        let r = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) };
        assert!(r >= 0, "TUNSETPERSIST: {}", std::io::Error::last_os_error());
        drop(tun);
        let sock = udp();
        let fd = sock.as_raw_fd();
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_addr = inet([169, 254, 77, 1]);
        ifreq_ioctl(fd, libc::SIOCSIFADDR, &mut ifr, "SIOCSIFADDR");
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_netmask = inet([255, 255, 255, 0]);
        ifreq_ioctl(fd, libc::SIOCSIFNETMASK, &mut ifr, "SIOCSIFNETMASK");
        for dev in ["lo", name] {
            set_link(dev, libc::IFF_UP | libc::IFF_RUNNING);
        }
        let mut ifr = ifreq(name);
        ifreq_ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr, "SIOCGIFHWADDR");
        // SAFETY: SIOCGIFHWADDR filled the hardware address.
        let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
        std::array::from_fn(|i| data[i] as u8)
    }

    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    /// An Ethernet frame with an IPv4 UDP datagram from 169.254.77.2:4000
    /// to 169.254.77.1:`port`, behind a zero (no offload) vnet header.
    fn udp_frame(dst_mac: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; VNET_HDR_LEN];
        f.extend(dst_mac);
        f.extend([0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00]);
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 169, 254, 77, 2, 169, 254, 77, 1];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let sum = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!((sum & 0xffff) + (sum >> 16)) as u16).to_be_bytes());
        f.extend(ip);
        f.extend(4000u16.to_be_bytes());
        f.extend(port.to_be_bytes());
        f.extend((8 + payload.len() as u16).to_be_bytes());
        f.extend([0, 0]); // no UDP checksum (IPv4 allows it)
        f.extend(payload);
        f
    }

    /// The backend against the kernel's own TAP driver: the device-facing
    /// side of `IFF_VNET_HDR` with a 12-byte header both ways, offloads
    /// accepted. Needs root (a network namespace of its own), hence not in
    /// the default run: `cargo test -p dmavm-devices -- --ignored`.
    #[test]
    #[ignore = "needs CAP_SYS_ADMIN and CAP_NET_ADMIN: run with --ignored as root"]
    fn frames_cross_a_real_tap_both_ways() {
        in_new_netns(|| {
            let mac = make_tap("dmvt0");
            let mut tap = Tap::open("dmvt0").unwrap();
            assert_eq!(tap.name(), "dmvt0");
            tap.set_offloads(Offloads { csum: true, tso4: true, tso6: true }).unwrap();
            tap.set_offloads(Offloads::default()).unwrap();
            // Kernel to device: a datagram to a neighbour nobody answers
            // for makes the kernel ask for it with ARP on the TAP.
            let sock = udp();
            let sin = inet_port([169, 254, 77, 2], 9);
            // SAFETY: a valid sockaddr_in of its size, a 1-byte buffer.
            let r = unsafe {
                libc::sendto(
                    sock.as_raw_fd(),
                    b"x".as_ptr().cast(),
                    1,
                    0,
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 1, "sendto: {}", std::io::Error::last_os_error());
            let mut buf = vec![0u8; super::super::FRAME_MAX];
            let mut arp = None;
            for _ in 0..50 {
                if !readable(tap.readiness_fd(), 100) {
                    continue;
                }
                let n = tap.read_frame(&mut buf).unwrap();
                let eth = &buf[VNET_HDR_LEN..n];
                if eth.len() >= 42 && eth[12..14] == [0x08, 0x06] {
                    arp = Some(eth.to_vec());
                    break;
                }
            }
            let arp = arp.expect("no ARP request from the kernel on the TAP");
            assert_eq!(arp[6..12], mac, "sent by the TAP's own address");
            assert_eq!(arp[38..42], [169, 254, 77, 2], "asking for the neighbour");
            // Device to kernel: a datagram to a socket bound on the TAP's
            // address.
            let server = bound_udp(5555);
            send(&mut tap, &udp_frame(mac, 5555, b"through the tap")).unwrap();
            assert!(readable(server.as_raw_fd(), 5000), "the kernel did not deliver the datagram");
            let mut got = [0u8; 64];
            // SAFETY: `got` is writable memory of its length.
            let n = unsafe { libc::recv(server.as_raw_fd(), got.as_mut_ptr().cast(), got.len(), 0) };
            assert_eq!(&got[..usize::try_from(n).unwrap()], b"through the tap");
        });
    }

    /// A UDP socket bound on the test TAP's address, port `port`.
    fn bound_udp(port: u16) -> std::os::fd::OwnedFd {
        let server = udp();
        let here = inet_port([169, 254, 77, 1], port);
        // SAFETY: a valid sockaddr_in of its size.
        let r = unsafe {
            libc::bind(
                server.as_raw_fd(),
                (&here as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        server
    }

    /// Sets `name`'s flags to `flags` (IFF_UP and IFF_RUNNING, or none).
    fn set_link(name: &str, flags: libc::c_int) {
        let sock = udp();
        let mut ifr = ifreq(name);
        ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
        ifreq_ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut ifr, "SIOCSIFFLAGS");
    }

    /// A TAP the host takes down while the VM runs: a frame sent then is
    /// an error the device counts and logs (see the device's failing
    /// backend test), a read does not block the event loop, and once the
    /// host brings it up again frames flow.
    #[test]
    #[ignore = "needs CAP_SYS_ADMIN and CAP_NET_ADMIN: run with --ignored as root"]
    fn a_tap_taken_down_fails_sends_until_it_is_up_again() {
        in_new_netns(|| {
            let mac = make_tap("dmvt2");
            let mut tap = Tap::open("dmvt2").unwrap();
            set_link("dmvt2", 0);
            let frame = udp_frame(mac, 5556, b"while down");
            assert!(send(&mut tap, &frame).is_err(), "a frame sent through a TAP that is down");
            let mut buf = vec![0u8; super::super::FRAME_MAX];
            match tap.read_frame(&mut buf) {
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
                Ok(n) => panic!("a {n}-byte frame from a TAP that is down"),
            }
            set_link("dmvt2", libc::IFF_UP | libc::IFF_RUNNING);
            let server = bound_udp(5556);
            send(&mut tap, &udp_frame(mac, 5556, b"up again")).unwrap();
            assert!(readable(server.as_raw_fd(), 5000), "nothing delivered once the TAP is up again");
        });
    }

    /// Drops `CAP_NET_ADMIN` from this thread's effective capabilities
    /// (capabilities are per thread).
    fn drop_net_admin() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        const CAP_NET_ADMIN: u32 = 12;
        let mut header = Header { version: VERSION_3, pid: 0 };
        let mut data = [Data::default(); 2];
        // SAFETY: capget(2) with a version-3 header and room for its two
        // data words.
        let r = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) };
        assert_eq!(r, 0, "capget: {}", std::io::Error::last_os_error());
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        // SAFETY: capset(2) with the same header and data, one bit fewer.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
        assert_eq!(r, 0, "capset: {}", std::io::Error::last_os_error());
    }

    /// A TAP that belongs to another user is refused with the permission
    /// message, as for a user who is not its owner.
    #[test]
    #[ignore = "needs CAP_SYS_ADMIN and CAP_NET_ADMIN: run with --ignored as root"]
    fn a_tap_of_another_user_is_refused_with_a_permission_error() {
        in_new_netns(|| {
            make_tap("dmvt1");
            let tun = OpenOptions::new().read(true).write(true).open("/dev/net/tun").unwrap();
            let mut ifr = ifreq("dmvt1");
            ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
            ifreq_ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut ifr, "TUNSETIFF");
            // SAFETY: TUNSETOWNER takes the uid as its argument.
            let r = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETOWNER, 4242 as libc::c_ulong) };
            assert!(r >= 0, "TUNSETOWNER: {}", std::io::Error::last_os_error());
            drop(tun);
            drop_net_admin();
            let err = Tap::open("dmvt1").unwrap_err();
            assert!(matches!(err, TapError::Permission(_)), "{err:?}");
            assert!(err.to_string().starts_with("no permission to attach to TAP 'dmvt1'"), "{err}");
        });
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
