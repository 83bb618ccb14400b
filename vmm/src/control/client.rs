//! `dmavm ctl`: a request to a running VM's control socket, its reply
//! printed; repeated on one connection with `--count`/`--interval`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::protocol::{self, Request};
use crate::cli::{CtlArgs, CtlCommand};

/// How long the client waits for a reply: the slowest request,
/// `remove-device`, is answered within the server's eject timeout (10 s);
/// `pause` gives up after 2 s.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// Outcome of `dmavm ctl`: the `ok` value (printed as JSON), or the VM's
/// error reply.
pub enum Outcome {
    /// The request succeeded; its value.
    Ok(serde_json::Value),
    /// The VM refused it: code and message.
    Refused(String, String),
}

/// Sends `args`' request `args.count` times (0: until the VM goes away) on
/// one connection, `args.interval` apart, handing each reply to
/// `on_reply`, which says whether to go on. An error reply ends the run
/// after it is handed over.
pub fn run(args: &CtlArgs, mut on_reply: impl FnMut(&Outcome) -> bool) -> Result<()> {
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
    let mut replies = BufReader::new(stream.try_clone().context("cloning the connection")?);
    let encoded = protocol::encode_request(&request);
    let mut sent: u64 = 0;
    loop {
        if sent > 0 && !args.interval.is_zero() {
            std::thread::sleep(args.interval);
        }
        stream.write_all(encoded.as_bytes()).with_context(|| format!("sending the request to {shown}"))?;
        sent += 1;
        let mut line = String::new();
        (&mut replies).take_line(&mut line).with_context(|| format!("reading the reply from {shown}"))?;
        if line.is_empty() {
            bail!("{shown}: the VM closed the connection without a reply");
        }
        let outcome = match protocol::decode_reply(&line) {
            Ok(Ok(value)) => Outcome::Ok(value),
            Ok(Err((code, message))) => Outcome::Refused(code, message),
            Err(e) => bail!("{shown}: {e}"),
        };
        let go_on = on_reply(&outcome);
        if matches!(outcome, Outcome::Refused(..)) || !go_on || (args.count != 0 && sent >= args.count) {
            return Ok(());
        }
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
