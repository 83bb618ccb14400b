//! `dmavm ctl`: one request to a running VM's control socket, its reply
//! printed.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::protocol::{self, Request};
use crate::cli::{CtlArgs, CtlCommand};

/// How long the client waits for a reply. The slowest request, `pause`,
/// gives up after 2 s.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Outcome of `dmavm ctl`: the `ok` value (printed as JSON), or the VM's
/// error reply.
pub enum Outcome {
    /// The request succeeded; its value.
    Ok(serde_json::Value),
    /// The VM refused it: code and message.
    Refused(String, String),
}

/// Sends `args`' request and reads the reply.
pub fn run(args: &CtlArgs) -> Result<Outcome> {
    let request = match &args.command {
        CtlCommand::Info => Request::Info,
        CtlCommand::Stats => Request::Stats,
        CtlCommand::AddDevice { kind, options } => {
            Request::AddDevice { kind: kind.clone(), options: options.clone().unwrap_or_default() }
        }
        CtlCommand::RemoveDevice { id } => Request::RemoveDevice { id: id.clone() },
        CtlCommand::Pause => Request::Pause,
        CtlCommand::Resume => Request::Resume,
        CtlCommand::Shutdown => Request::Shutdown,
        CtlCommand::Quit => Request::Quit,
    };
    let shown = args.socket.display();
    let mut stream =
        UnixStream::connect(&args.socket).with_context(|| format!("cannot connect to {shown}"))?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).context("setting the reply timeout")?;
    stream
        .write_all(protocol::encode_request(&request).as_bytes())
        .with_context(|| format!("sending the request to {shown}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take_line(&mut line)
        .with_context(|| format!("reading the reply from {shown}"))?;
    if line.is_empty() {
        bail!("{shown}: the VM closed the connection without a reply");
    }
    match protocol::decode_reply(&line) {
        Ok(Ok(value)) => Ok(Outcome::Ok(value)),
        Ok(Err((code, message))) => Ok(Outcome::Refused(code, message)),
        Err(e) => bail!("{shown}: {e}"),
    }
}

/// Reads one line of at most a reply's plausible size.
trait TakeLine {
    fn take_line(self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(self, line: &mut String) -> std::io::Result<usize> {
        // An `info` of a full machine is tens of kilobytes; a runaway
        // server is cut off at 16 MiB.
        std::io::Read::take(self, 16 << 20).read_line(line)
    }
}
