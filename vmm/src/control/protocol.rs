//! The control socket's wire format (docs/control-socket.md): one JSON
//! object per line each way. A request names its command and that
//! command's arguments; a reply is `{"ok": VALUE}` or `{"error": {"code":
//! CODE, "message": TEXT}}`.

use serde_json::{json, Map, Value};

/// The longest request line, newline excluded. The largest legitimate
/// request is an `add-device` with a disk path (`PATH_MAX` is 4096) and a
/// few keys.
pub const MAX_REQUEST: usize = 8192;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The machine model as `describe --format json` shows it, and the run
    /// state.
    Info,
    /// The live `--stats` counters.
    Stats,
    /// Add a device of `kind` (`disk`, `rng`, `console`) with the option
    /// string its `--disk`/`--rng`/`--console` option takes.
    AddDevice {
        /// The device type, as its option is named.
        kind: String,
        /// Its keys.
        options: String,
    },
    /// Remove device `id`.
    RemoveDevice {
        /// The device's name.
        id: String,
    },
    /// Stop the vCPUs.
    Pause,
    /// Let paused vCPUs run again.
    Resume,
    /// Ask the guest to power off (the ACPI power button).
    Shutdown,
    /// End the VM now.
    Quit,
}

/// Why a request failed: the `code` of an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not one JSON object with a string `command` and that command's
    /// arguments.
    MalformedRequest,
    /// A request line longer than [`MAX_REQUEST`]; the connection closes.
    RequestTooLong,
    /// No command of that name.
    UnknownCommand,
    /// `add-device`: the option string does not parse, or a file it names
    /// cannot be used.
    InvalidDevice,
    /// No device, bridge or slot as named, or the slot or name is taken.
    Placement,
    /// The device cannot be added or removed at run time.
    NotHotpluggable,
    /// The machine with the device would break the DMA contract; the
    /// message is `run`'s coded refusal (`[DMA0xx] ...`).
    CheckFailed,
    /// The request does not fit the VM's state (resume while running).
    InvalidState,
    /// The guest did not eject the device in time; it stays.
    EjectTimeout,
    /// This dmavm cannot do what was asked on this machine.
    Unsupported,
    /// More clients are connected than the socket serves at once.
    TooManyClients,
    /// dmavm failed to carry the request out.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed-request",
            ErrorCode::RequestTooLong => "request-too-long",
            ErrorCode::UnknownCommand => "unknown-command",
            ErrorCode::InvalidDevice => "invalid-device",
            ErrorCode::Placement => "placement",
            ErrorCode::NotHotpluggable => "not-hotpluggable",
            ErrorCode::CheckFailed => "check-failed",
            ErrorCode::InvalidState => "invalid-state",
            ErrorCode::EjectTimeout => "eject-timeout",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::TooManyClients => "too-many-clients",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A failed request: its code and one line for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, one line.
    pub message: String,
}

impl Failure {
    /// A failure of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The commands and the arguments each takes (all strings).
const COMMANDS: &[(&str, &[&str])] = &[
    ("info", &[]),
    ("stats", &[]),
    ("add-device", &["type", "options"]),
    ("remove-device", &["id"]),
    ("pause", &[]),
    ("resume", &[]),
    ("shutdown", &[]),
    ("quit", &[]),
];

/// Parses one request line (without its newline).
pub fn parse(line: &[u8]) -> Result<Request, Failure> {
    let malformed = |why: String| Failure::new(ErrorCode::MalformedRequest, why);
    let value: Value =
        serde_json::from_slice(line).map_err(|e| malformed(format!("not a JSON request: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(malformed("a request is a JSON object: {\"command\": NAME, ...}".into()));
    };
    let Some(command) = fields.get("command") else {
        return Err(malformed("the request has no \"command\"".into()));
    };
    let Value::String(command) = command else {
        return Err(malformed("\"command\" is a string".into()));
    };
    let Some((name, arguments)) = COMMANDS.iter().find(|(name, _)| name == command) else {
        let known: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        return Err(Failure::new(
            ErrorCode::UnknownCommand,
            format!("no command '{}' (commands: {})", shown(command), known.join(", ")),
        ));
    };
    if let Some(extra) = fields.keys().find(|k| *k != "command" && !arguments.contains(&k.as_str())) {
        return Err(malformed(format!("{name} takes no argument \"{}\"", shown(extra))));
    }
    let arg = |key: &str| -> Result<String, Failure> {
        match fields.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(malformed(format!("{name}: \"{key}\" is a string"))),
            None => Err(malformed(format!("{name} needs \"{key}\""))),
        }
    };
    Ok(match *name {
        "info" => Request::Info,
        "stats" => Request::Stats,
        "add-device" => Request::AddDevice { kind: arg("type")?, options: arg("options")? },
        "remove-device" => Request::RemoveDevice { id: arg("id")? },
        "pause" => Request::Pause,
        "resume" => Request::Resume,
        "shutdown" => Request::Shutdown,
        _ => Request::Quit,
    })
}

/// `text` from a client, shortened and with control characters escaped,
/// to be quoted in a message.
fn shown(text: &str) -> String {
    dmavm_machine::user_text::shown(text)
}

/// The request as a line for the wire (the client's side).
pub fn encode_request(request: &Request) -> String {
    let value = match request {
        Request::Info => json!({"command": "info"}),
        Request::Stats => json!({"command": "stats"}),
        Request::AddDevice { kind, options } => {
            json!({"command": "add-device", "type": kind, "options": options})
        }
        Request::RemoveDevice { id } => json!({"command": "remove-device", "id": id}),
        Request::Pause => json!({"command": "pause"}),
        Request::Resume => json!({"command": "resume"}),
        Request::Shutdown => json!({"command": "shutdown"}),
        Request::Quit => json!({"command": "quit"}),
    };
    format!("{value}\n")
}

/// A reply line.
pub fn encode_reply(result: &Result<Value, Failure>) -> Vec<u8> {
    let value = match result {
        Ok(v) => json!({ "ok": v }),
        Err(f) => json!({"error": {"code": f.code.as_str(), "message": f.message}}),
    };
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A reply line read back (the client's side): the `ok` value, or the
/// failure with its code as sent.
pub fn decode_reply(line: &str) -> Result<Result<Value, (String, String)>, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("the reply is not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err("the reply is not a JSON object".into());
    };
    if let Some(ok) = fields.remove("ok") {
        return Ok(Ok(ok));
    }
    let error = fields.remove("error").and_then(|e| match e {
        Value::Object(e) => Some(e),
        _ => None,
    });
    let Some(error) = error else {
        return Err("the reply has neither \"ok\" nor \"error\"".into());
    };
    let text = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    Ok(Err((text(&error, "code"), text(&error, "message"))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn code(line: &str) -> ErrorCode {
        parse(line.as_bytes()).unwrap_err().code
    }

    #[test]
    fn every_request_round_trips() {
        for r in [
            Request::Info,
            Request::Stats,
            Request::AddDevice { kind: "disk".into(), options: "path=\"a b\",bridge=hp".into() },
            Request::RemoveDevice { id: "disk0".into() },
            Request::Pause,
            Request::Resume,
            Request::Shutdown,
            Request::Quit,
        ] {
            let line = encode_request(&r);
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
            assert_eq!(parse(line.trim_end().as_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn malformed_requests_are_told_apart_from_unknown_commands() {
        for line in [
            "",
            "{",
            "nonsense",
            "[\"info\"]",
            "\"info\"",
            "{}",
            "{\"command\": 3}",
            "{\"command\": \"info\", \"extra\": 1}",
            "{\"command\": \"remove-device\"}",
            "{\"command\": \"remove-device\", \"id\": 7}",
            "{\"command\": \"add-device\", \"type\": \"disk\"}",
            "\u{0}\u{ff}",
        ] {
            assert_eq!(code(line), ErrorCode::MalformedRequest, "{line:?}");
        }
        assert_eq!(code("{\"command\": \"reboot\"}"), ErrorCode::UnknownCommand);
        let message = parse(b"{\"command\": \"\\u001b[2J\"}").unwrap_err().message;
        assert!(!message.contains('\u{1b}'), "control characters echoed: {message:?}");
    }

    #[test]
    fn replies_decode_as_sent() {
        let ok = encode_reply(&Ok(json!({"state": "running"})));
        let ok = String::from_utf8(ok).unwrap();
        assert_eq!(decode_reply(&ok).unwrap(), Ok(json!({"state": "running"})));
        let err = encode_reply(&Err(Failure::new(ErrorCode::CheckFailed, "[DMA003] x")));
        let err = String::from_utf8(err).unwrap();
        assert_eq!(err, "{\"error\":{\"code\":\"check-failed\",\"message\":\"[DMA003] x\"}}\n");
        assert_eq!(decode_reply(&err).unwrap(), Err(("check-failed".into(), "[DMA003] x".into())));
        assert!(decode_reply("{}").is_err());
    }
}
