//! The control socket served on an event loop, with a machine model but
//! without KVM: what each request gets back and what it leaves alone.
//! vmm/tests/payload.rs drives it on a running VM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmavm_machine::test_utils::machine_for;
use dmavm_machine::Arch;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use serde_json::Value;

use super::commands::VmControl;
use super::protocol::MAX_REQUEST;
use super::server::{ControlServer, MAX_CLIENTS};
use crate::pause::PauseGate;
use crate::shutdown::{ExitReason, Shutdown};

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// A control socket serving a machine with an IOMMU, a translated and a
/// bypassed hot-plug bridge and a fixed one, on its own event loop.
struct Served {
    dir: PathBuf,
    path: PathBuf,
    shutdown: Arc<Shutdown>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dmavm-control-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk.img"), vec![0u8; 4096]).unwrap();
        let path = dir.join("api.sock");
        let listener = super::socket_file::listen(&path).unwrap().listener;
        let machine = machine_for(
            Arch::X86_64,
            &[
                "--iommu",
                "--pci-bridge",
                "id=hpt,hotplug=on",
                "--pci-bridge",
                "id=hpb,hotplug=on,direct-ram-access=on",
                "--disk",
                "path=boot.img,transport=pci",
            ],
        );
        let shutdown = Arc::new(Shutdown::new().unwrap());
        let vm = VmControl {
            machine,
            cmdline: String::new(),
            initrd_size: None,
            iommu: None,
            shutdown: shutdown.clone(),
            pause: Arc::new(PauseGate::default()),
            hotplug: None,
        };
        let server: Subscriber = Arc::new(Mutex::new(ControlServer::new(listener, vm)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut manager = EventManager::<Subscriber>::new().unwrap();
                manager.add_subscriber(server);
                while !stop.load(Ordering::Relaxed) {
                    manager.run_with_timeout(10).unwrap();
                }
            })
        };
        Self { dir, path, shutdown, stop, thread: Some(thread) }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends `line` on a new connection; the reply.
    fn ask(&self, line: &str) -> Value {
        ask_on(&mut self.connect(), line)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ask_on(stream: &mut UnixStream, line: &str) -> Value {
    stream.write_all(line.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    read_reply(stream)
}

fn read_reply(stream: &UnixStream) -> Value {
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    assert!(reply.ends_with('\n'), "reply not a whole line: {reply:?}");
    serde_json::from_str(&reply).unwrap()
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

#[test]
fn malformed_and_unknown_requests_get_error_replies_and_the_connection_goes_on() {
    let s = Served::new("malformed");
    let mut c = s.connect();
    assert_eq!(error_code(&ask_on(&mut c, "{\"command\": ")), "malformed-request");
    assert_eq!(error_code(&ask_on(&mut c, "[1, 2]")), "malformed-request");
    assert_eq!(error_code(&ask_on(&mut c, "{\"command\": \"reboot\"}")), "unknown-command");
    let info = ask_on(&mut c, "{\"command\": \"info\"}");
    assert_eq!(info["ok"]["state"], "running");
    let ids: Vec<&str> = info["ok"]["machine"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert!(ids.contains(&"disk0") && ids.contains(&"iommu0"), "{info}");
    assert!(s.shutdown.reason().is_none());
}

#[test]
fn device_requests_are_refused_with_their_codes() {
    let s = Served::new("devices");
    let remove = |id: &str| s.ask(&format!("{{\"command\": \"remove-device\", \"id\": \"{id}\"}}"));
    assert_eq!(error_code(&remove("nope")), "placement");
    let fixed = remove("disk0");
    assert_eq!(error_code(&fixed), "not-hotpluggable");
    assert!(fixed["error"]["message"].as_str().unwrap().contains("pci0 is not hot-pluggable"), "{fixed}");
    assert_eq!(error_code(&remove("iommu0")), "not-hotpluggable");
    let add = |kind: &str, keys: &str| {
        s.ask(&serde_json::json!({"command": "add-device", "type": kind, "options": keys}).to_string())
    };
    let img = s.dir.join("disk.img");
    let img = img.to_str().unwrap();
    // Bypass on a translated hot-plug bridge: run's DMA003 refusal.
    let refused = add("disk", &format!("path={img},transport=pci,bridge=hpt,direct-ram-access=on"));
    assert_eq!(error_code(&refused), "check-failed");
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("[DMA003]"), "{refused}");
    assert_eq!(error_code(&add("disk", "path=x,wat=1")), "invalid-device");
    assert_eq!(error_code(&add("tpm", "")), "invalid-device");
    assert_eq!(error_code(&add("disk", &format!("path={img},transport=pci"))), "not-hotpluggable");
    let missing = add("disk", "path=/nonexistent/dmavm.img,transport=pci,bridge=hpt");
    assert_eq!(error_code(&missing), "invalid-device");
    assert!(s.shutdown.reason().is_none());
}

/// A client that leaves halfway through a request changes nothing, and
/// the next one is served.
#[test]
fn a_half_request_then_a_disconnect_changes_nothing() {
    let s = Served::new("half");
    for partial in ["{\"command\": \"qu", "{\"command\": \"quit\"}"] {
        let mut c = s.connect();
        c.write_all(partial.as_bytes()).unwrap();
        drop(c);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(s.shutdown.reason().is_none(), "a request without its newline ran");
    assert_eq!(s.ask("{\"command\": \"stats\"}")["ok"]["iommu"], false);
}

#[test]
fn a_request_longer_than_the_bound_is_refused_and_the_connection_closed() {
    let s = Served::new("long");
    let mut c = s.connect();
    let long = vec![b' '; MAX_REQUEST + 10];
    // The server stops reading once it answered: the rest may not fit.
    let _ = c.write_all(&long);
    assert_eq!(error_code(&read_reply(&c)), "request-too-long");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert_eq!(s.ask("{\"command\": \"info\"}")["ok"]["state"], "running");
}

#[test]
fn clients_beyond_the_bound_are_told_and_the_others_served() {
    let s = Served::new("many");
    let mut held: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| s.connect()).collect();
    // Every held client is registered once it was answered.
    for c in &mut held {
        assert!(ask_on(c, "{\"command\": \"stats\"}").get("ok").is_some());
    }
    let extra = s.connect();
    assert_eq!(error_code(&read_reply(&extra)), "too-many-clients");
    held.pop();
    std::thread::sleep(Duration::from_millis(50));
    assert!(s.ask("{\"command\": \"stats\"}").get("ok").is_some());
}

#[test]
fn pause_resume_and_quit() {
    let s = Served::new("state");
    assert_eq!(error_code(&s.ask("{\"command\": \"resume\"}")), "invalid-state");
    assert_eq!(s.ask("{\"command\": \"pause\"}")["ok"]["state"], "paused");
    assert_eq!(s.ask("{\"command\": \"info\"}")["ok"]["state"], "paused");
    assert_eq!(error_code(&s.ask("{\"command\": \"pause\"}")), "invalid-state");
    assert_eq!(s.ask("{\"command\": \"resume\"}")["ok"]["state"], "running");
    assert_eq!(error_code(&s.ask("{\"command\": \"shutdown\"}")), "unsupported");
    assert!(s.shutdown.reason().is_none());
    assert_eq!(s.ask("{\"command\": \"quit\"}")["ok"]["state"], "stopping");
    assert_eq!(s.shutdown.reason(), Some(ExitReason::Quit));
}
