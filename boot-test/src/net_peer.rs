//! The `net` check's host side: for a run whose machine has network
//! devices, a thread that makes a network namespace of its own with a TAP
//! per device (link-local 169.254.(10+i).1/24 for the i-th, the guest
//! taking .2), starts the run's `dmavm run` in it, and plays the peer on
//! each TAP: it answers `GET /data` on port 8080 with a block of random
//! bytes and takes whatever arrives on port 9000, checksumming both, as
//! resources/guest/checks/net-exchange.sh expects. The namespace, the
//! TAPs and the servers vanish with the thread and the VM.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::expect::NetLink;
use super::netns::{self, NetnsError};

/// The port the peer serves the block on (HTTP, `GET /data`).
pub const HTTP_PORT: u16 = 8080;
/// The port the peer takes the block back on (a plain TCP stream).
pub const UPLOAD_PORT: u16 = 9000;
/// The block each way: thousands of frames, a few seconds in the nested
/// test bed even through a translated device.
pub const BLOCK_BYTES: usize = 2 << 20;
/// What the peer takes back at most before it stops counting: a guest
/// that sends without end must not keep the harness busy.
const UPLOAD_LIMIT: u64 = 4 * BLOCK_BYTES as u64;
/// How long the peer waits on one blocked read or write before it looks
/// whether the run has ended.
const POLL: Duration = Duration::from_millis(200);
/// A request line and headers longer than this are not wget's.
const REQUEST_LIMIT: usize = 8192;

/// What the peer of one link did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerSeen {
    /// The device id.
    pub id: String,
    /// SHA-256 of the block as the guest should receive it.
    pub block_sha: String,
    /// Its size.
    pub block_bytes: u64,
    /// Whether a `GET /data` was answered with the whole block.
    pub served: bool,
    /// SHA-256 and size of what arrived on the upload port, once a
    /// stream ended.
    pub received: Option<(String, u64)>,
    /// What went wrong on the peer's side, if anything.
    pub error: Option<String>,
}

/// The running peer of a run; dropped without [`Peer::finish`] (the
/// harness interrupted), it stops serving all the same.
pub struct Peer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<PeerSeen>>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One link's listeners and record.
struct Served {
    http: TcpListener,
    upload: TcpListener,
    block: Vec<u8>,
    seen: PeerSeen,
}

fn random_block() -> io::Result<Vec<u8>> {
    let mut block = vec![0u8; BLOCK_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut block)?;
    Ok(block)
}

fn listener(addr: Ipv4Addr, port: u16) -> io::Result<TcpListener> {
    let l = TcpListener::bind(SocketAddrV4::new(addr, port))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The namespace, TAPs and listeners of `links`, in the calling thread.
fn set_up(links: &[NetLink], corrupt: bool) -> Result<Vec<Served>, String> {
    netns::load_tun();
    netns::enter_new().map_err(|e| e.to_string())?;
    let mut served = Vec::new();
    for link in links {
        netns::make_tap(&link.tap, link.host, 24).map_err(|e: NetnsError| format!("{}: {e}", link.id))?;
        let listen = |port| {
            listener(link.host, port)
                .map_err(|e| format!("{}: listening on {}:{port}: {e}", link.id, link.host))
        };
        let block = random_block().map_err(|e| format!("reading /dev/urandom for the block: {e}"))?;
        let seen = PeerSeen {
            id: link.id.clone(),
            block_sha: super::runner::sha256_hex(&block),
            block_bytes: block.len() as u64,
            ..PeerSeen::default()
        };
        let mut block = block;
        if corrupt {
            // As a path that corrupts data would: what arrives is not
            // what the peer meant to send.
            let mid = block.len() / 2;
            block[mid] ^= 0xff;
        }
        served.push(Served { http: listen(HTTP_PORT)?, upload: listen(UPLOAD_PORT)?, block, seen });
    }
    Ok(served)
}

/// Whether an I/O error only means "not yet".
fn again(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted)
}

/// Reads a request's head (up to the blank line).
fn read_request(stream: &mut TcpStream, stop: &AtomicBool) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > REQUEST_LIMIT || stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no complete request"));
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the request ended early")),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if again(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(head)
}

/// Writes all of `data`, giving up when the run ends.
fn write_all(stream: &mut TcpStream, mut data: &[u8], stop: &AtomicBool) -> io::Result<()> {
    while !data.is_empty() {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the run ended while sending"));
        }
        match stream.write(data) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the guest stopped taking data")),
            Ok(n) => data = &data[n..],
            Err(e) if again(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Answers one HTTP request: the block for `GET /data`, 404 otherwise.
fn serve(s: &mut Served, mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    let head = read_request(&mut stream, stop)?;
    if !head.starts_with(b"GET /data ") {
        write_all(
            &mut stream,
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            stop,
        )?;
        return Ok(());
    }
    let header = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", s.block.len());
    write_all(&mut stream, header.as_bytes(), stop)?;
    write_all(&mut stream, &s.block, stop)?;
    s.seen.served = true;
    Ok(())
}

/// Takes one upload stream to its end: its SHA-256 and size (the bytes
/// past [`UPLOAD_LIMIT`] counted, not hashed).
fn receive(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<(String, u64)> {
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 65536];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the run ended while receiving"));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if total < UPLOAD_LIMIT {
                    hash.update(&buf[..n]);
                }
                total += n as u64;
            }
            Err(e) if again(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((format!("{:x}", hash.finalize()), total))
}

fn accepted(l: &TcpListener) -> io::Result<Option<TcpStream>> {
    match l.accept() {
        Ok((stream, _)) => {
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(POLL))?;
            stream.set_write_timeout(Some(POLL))?;
            Ok(Some(stream))
        }
        Err(e) if again(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Serves every link until the run ends. The guest exchanges on one link
/// at a time, block down then up, so one connection at a time is enough.
fn serve_all(served: &mut [Served], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for s in served.iter_mut() {
            match accepted(&s.http) {
                Ok(Some(stream)) => {
                    idle = false;
                    if let Err(e) = serve(s, stream, stop) {
                        s.seen.error.get_or_insert(format!("serving the block: {e}"));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    s.seen.error.get_or_insert(format!("accepting on port {HTTP_PORT}: {e}"));
                }
            }
            match accepted(&s.upload) {
                Ok(Some(stream)) => {
                    idle = false;
                    match receive(stream, stop) {
                        Ok(r) => s.seen.received = Some(r),
                        Err(e) => {
                            s.seen.error.get_or_insert(format!("receiving the block back: {e}"));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    s.seen.error.get_or_insert(format!("accepting on port {UPLOAD_PORT}: {e}"));
                }
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Peer {
    /// Makes the namespace and TAPs of `links`, starts `vm` in it and
    /// serves each link until [`Peer::finish`]. An error says why the run
    /// cannot have its network (no root, no TAP support, ...), as one line.
    pub fn start(links: Vec<NetLink>, corrupt: bool, mut vm: Command) -> Result<(Peer, Child), String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel::<Result<Child, String>>(1);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("net-peer".into())
            .spawn(move || {
                let mut served = match set_up(&links, corrupt) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Vec::new();
                    }
                };
                // Started from this thread, the VM is in its namespace.
                let child =
                    vm.spawn().map_err(|e| format!("starting {}: {e}", vm.get_program().to_string_lossy()));
                let started = child.is_ok();
                let _ = tx.send(child);
                if started {
                    serve_all(&mut served, &flag);
                }
                served.into_iter().map(|s| s.seen).collect()
            })
            .map_err(|e| format!("starting the net peer's thread: {e}"))?;
        match rx.recv() {
            Ok(Ok(child)) => Ok((Peer { stop, thread: Some(thread) }, child)),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(format!("net: {e}"))
            }
            Err(_) => {
                let _ = thread.join();
                Err("net: the peer's thread ended before the VM started".into())
            }
        }
    }

    /// Stops serving (the VM has ended) and says what each link's peer
    /// did.
    pub fn finish(mut self) -> Vec<PeerSeen> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(i: u8) -> NetLink {
        NetLink {
            id: format!("net{i}"),
            mac: format!("02:00:00:00:00:0{i}"),
            tap: format!("btnet{i}"),
            host: Ipv4Addr::new(169, 254, 10 + i, 1),
            guest: Ipv4Addr::new(169, 254, 10 + i, 2),
        }
    }

    /// Plays the guest with busybox's wget and nc in the peer's own
    /// namespace (the TAP's address is local there), the block down and
    /// back up on each of two links; what the "guest" got is in `out`.
    fn exchange(corrupt: bool) -> (Vec<PeerSeen>, String) {
        let dir = std::env::temp_dir().join(format!("dmavm-net-peer-{}-{corrupt}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = "set -e; for h in 169.254.10.1 169.254.11.1; do \
                      busybox wget -q -O \"$D/$h\" http://$h:8080/data; \
                      busybox sha256sum \"$D/$h\" | cut -d' ' -f1 >> \"$D/down\"; \
                      busybox nc $h 9000 < \"$D/$h\"; done; \
                      busybox wget -q -O - http://169.254.10.1:8080/other || echo refused > \"$D/other\"";
        let mut vm = Command::new("sh");
        vm.args(["-c", script]).env("D", &dir);
        let (peer, mut child) = Peer::start(vec![link(0), link(1)], corrupt, vm).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        let seen = peer.finish();
        let down = std::fs::read_to_string(dir.join("down")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("other")).unwrap(), "refused\n", "404 for anything else");
        let _ = std::fs::remove_dir_all(&dir);
        (seen, down)
    }

    /// The peer against real sockets in a namespace of its own. Needs root
    /// (a network namespace and TAPs), hence not in the default run:
    /// `cargo test -p dmavm-boot-test -- --ignored` as root.
    #[test]
    #[ignore = "needs CAP_SYS_ADMIN and CAP_NET_ADMIN and busybox: run with --ignored as root"]
    fn the_peer_serves_and_takes_back_the_block_on_every_link() {
        let (seen, down) = exchange(false);
        assert_eq!(seen.len(), 2);
        let down: Vec<&str> = down.lines().collect();
        for (s, d) in seen.iter().zip(&down) {
            assert!(s.served && s.error.is_none(), "{s:?}");
            assert_eq!(s.block_bytes, BLOCK_BYTES as u64);
            assert_eq!(*d, s.block_sha, "what arrived is the block");
            assert_eq!(s.received, Some((s.block_sha.clone(), BLOCK_BYTES as u64)), "and it came back");
        }
        assert_ne!(seen[0].block_sha, seen[1].block_sha, "a block of its own per link");
        // Corrupting: what arrives (and so comes back) is not the block.
        let (seen, down) = exchange(true);
        for (s, d) in seen.iter().zip(down.lines()) {
            assert_ne!(d, s.block_sha);
            let (back, bytes) = s.received.clone().unwrap();
            assert_eq!((back.as_str(), bytes), (d, BLOCK_BYTES as u64));
        }
    }
}
