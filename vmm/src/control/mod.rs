//! The control socket (`dmavm run --api-socket PATH`) and its client
//! (`dmavm ctl`): a running VM answers JSON requests, one per line, on a
//! UNIX socket only its owner can reach. The wire format and every
//! command are in docs/control-socket.md.
//!
//! The socket is served on the main thread's event loop ([`server`]),
//! between the virtio queues' notifications: a request runs while no
//! device request does, and under the main thread's seccomp filter.

pub mod client;
pub mod commands;
pub mod protocol;
pub mod server;
pub mod socket_file;

#[cfg(test)]
mod tests;
