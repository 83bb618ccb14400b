//! `dmavm`: the command-line front end.

mod acpi_dump;
mod arch;
mod cli;
mod config;
mod config_merge;
mod console;
mod console_input;
mod control;
mod describe_command;
mod event_loop;
mod exit_status;
mod hotplug;
mod hygiene;
mod irqfd;
mod kvm;
mod logger;
mod memory;
mod net_events;
mod pause;
mod pci;
mod run_loop;
mod seccomp;
mod shutdown;
mod signals;
mod stats;
mod terminal;
mod vcpu;
mod virtio_devices;
mod vtd_units;

use std::io::Write;
use std::process::ExitCode;

use cli::Command;
use shutdown::ExitReason;

fn main() -> ExitCode {
    let (mut cli, matches) = match config_merge::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => return usage_error(e),
    };
    logger::init(cli.log_level.into());
    // The --config file under the command line's options, for `run` and
    // `describe` alike.
    if let Err(e) = config_merge::apply(&mut cli.command, &matches) {
        logger::report_error(&e.to_string());
        return ExitCode::from(exit_status::ERROR);
    }
    let status = match cli.command {
        Command::Run(args) => run(args),
        Command::Describe(args) => describe_command::run(args),
        Command::Explain(args) => explain(args.code.as_deref()),
        Command::Ctl(args) => ctl(&args),
        #[cfg(feature = "boot-test")]
        Command::BootTest(args) => boot_test(args),
    };
    // Serial output goes through stdout; make sure the last bytes leave
    // before the process does.
    let _ = std::io::stdout().flush();
    ExitCode::from(status)
}

/// `dmavm boot-test`: the harness starts this executable for every run;
/// its error, if any, is one line as every command's.
#[cfg(feature = "boot-test")]
fn boot_test(args: dmavm_boot_test::BootTestArgs) -> u8 {
    let dmavm = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => {
            logger::report_error(&format!("finding this dmavm executable: {e}"));
            return dmavm_boot_test::exit_status::FAILED;
        }
    };
    match dmavm_boot_test::run(&args, &dmavm) {
        Ok(verdict) => verdict.exit_status(),
        Err(e) => {
            logger::report_error(&e.to_string());
            e.exit_status()
        }
    }
}

/// Help and version go to stdout as usual; a real error becomes one line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // `dmavm` alone: teach, but it is still a usage error.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(exit_status::USAGE);
        }
        _ => {}
    }
    // clap echoes the value it refused whole: shown as any user text is.
    let mut message = e.to_string();
    if let Some(clap::error::ContextValue::String(value)) = e.get(clap::error::ContextKind::InvalidValue) {
        message = message.replace(value.as_str(), &dmavm_machine::user_text::shown(value));
    }
    logger::report_error(&format!("{} (see dmavm --help)", one_line(&message)));
    ExitCode::from(exit_status::USAGE)
}

/// Folds clap's multi-line message (the error, the missing arguments, a
/// usage block, a tip) into its essential first part on one line.
fn one_line(text: &str) -> String {
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| {
            !l.starts_with("Usage:") && !l.starts_with("For more information") && !l.starts_with("tip:")
        })
        .filter(|l| !l.is_empty())
        .collect();
    let joined = parts.join(" ");
    let joined = joined.strip_prefix("error: ").unwrap_or(&joined);
    if joined.is_empty() {
        "invalid command line".into()
    } else {
        joined.to_string()
    }
}

fn run(args: cli::RunArgs) -> u8 {
    if let Err(e) = hygiene::no_new_privs() {
        logger::report_error(&format!("{e:#}"));
        return exit_status::ERROR;
    }
    let config = match config::VmConfig::from_args(args, config::host_memory()) {
        Ok(c) => c,
        Err(e) => {
            logger::report_error(&format!("{e:#}"));
            return exit_status::ERROR;
        }
    };
    // The configuration checks, before KVM is touched: an error is one
    // line and no VM; warnings are printed and the VM starts.
    let findings = dmavm_machine::checks::check(&config.machine);
    if let Some(line) = dmavm_machine::checks::refusal(&findings) {
        logger::report_error(&line);
        return exit_status::ERROR;
    }
    logger::report_warnings(&findings);
    if let Err(e) = config::check_files(&config) {
        logger::report_error(&format!("{e:#}"));
        return exit_status::ERROR;
    }
    // Before KVM is touched, so that a path in use is one error line; and
    // while only this thread runs (the socket file's umask).
    let api = match config.api_socket.as_deref().map(control::socket_file::listen).transpose() {
        Ok(api) => api,
        Err(e) => {
            logger::report_error(&format!("{e:#}"));
            return exit_status::ERROR;
        }
    };
    match arch::vm::run(&config, api) {
        Ok(ExitReason::Crash(message)) => {
            logger::report_error(&message);
            exit_status::ERROR
        }
        Ok(reason) => {
            log::info!("VM stopped: {reason:?}");
            reason.exit_status()
        }
        Err(e) => {
            logger::report_error(&format!("{e:#}"));
            exit_status::ERROR
        }
    }
}

/// `dmavm ctl`: each reply's value on stdout, or one error line.
fn ctl(args: &cli::CtlArgs) -> u8 {
    let mut status = 0;
    let result = control::client::run(args, |outcome| match outcome {
        control::client::Outcome::Ok(value) => {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
            // A closed stdout (a pipe into `head`) ends the run.
            let printed = writeln!(std::io::stdout().lock(), "{text}").is_ok();
            if !printed {
                status = exit_status::ERROR;
            }
            printed
        }
        control::client::Outcome::Refused(code, message) => {
            logger::report_error(&format!("[{code}] {message}"));
            status = exit_status::ERROR;
            false
        }
    });
    match result {
        Ok(()) => status,
        Err(e) => {
            logger::report_error(&format!("{e:#}"));
            exit_status::ERROR
        }
    }
}

/// `dmavm explain [CODE]`: one code's explanation, or every code's
/// summary; an unknown code is a usage error.
fn explain(code: Option<&str>) -> u8 {
    let mut out = std::io::stdout().lock();
    let Some(text) = code else {
        for c in dmavm_machine::checks::Code::ALL {
            let _ = writeln!(out, "{c}  {:<7}  {}", c.severity().as_str(), c.summary());
        }
        let _ = writeln!(out, "\n`dmavm explain CODE` explains one.");
        return 0;
    };
    let Some(c) = dmavm_machine::checks::Code::parse(text) else {
        let first = dmavm_machine::checks::Code::ALL[0];
        let last = dmavm_machine::checks::Code::ALL[dmavm_machine::checks::Code::ALL.len() - 1];
        logger::report_error(&format!(
            "no check has the code '{text}' (codes: {first} to {last}; `dmavm explain` lists them)"
        ));
        return exit_status::USAGE;
    };
    let _ = writeln!(out, "{c} ({}): {}\n\n{}", c.severity(), c.summary(), c.explanation());
    0
}
