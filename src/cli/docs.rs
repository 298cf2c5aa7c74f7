//! `completions` and `man`: shell completion scripts and manual pages,
//! generated from the same clap definition that parses the arguments, so
//! they cannot drift from it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::args::{Cli, CompletionsArgs, ManArgs};

/// The section pmem-stack's pages live in (system administration).
const SECTION: &str = "8";

/// Exit statuses, for the man page (and nothing else decides them: see
/// `main.rs` and `cli::run`).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success. For check: both super block copies are valid and agree.",
    ),
    (
        "1",
        "Failure, with a one-line message on standard error; for check, a problem was found (named on standard error, or in the JSON). A refused or failed command leaves the backing unchanged.",
    ),
    (
        "2",
        "Bad usage: an unknown command or option, a missing or malformed argument.",
    ),
    (
        "75",
        "Only a server's own exit status (serve, add --foreground, recover --foreground): it handed its device over to a successor (restart), which the pmem-stack@.service unit brings up through recovery.",
    ),
];

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pmem-stack", &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    if let Some(dir) = &args.dir {
        write_all_pages(&cmd, dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    match &args.command {
        None => render_main(&cmd, &mut out)?,
        Some(name) => {
            let sub = cmd
                .find_subcommand(name)
                .ok_or_else(|| anyhow!("'{name}' is not a pmem-stack command"))?;
            render_sub(sub.clone(), &mut out)?;
        }
    }
    std::io::stdout()
        .write_all(&out)
        .context("writing the manual page")?;
    Ok(ExitCode::SUCCESS)
}

/// pmem-stack.8 and pmem-stack-COMMAND.8 for every command, into `dir`.
fn write_all_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    let write = |name: String, page: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
        anyhow::Ok(())
    };
    let mut page = Vec::new();
    render_main(cmd, &mut page)?;
    write(format!("pmem-stack.{SECTION}"), page)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut page = Vec::new();
        render_sub(sub.clone(), &mut page)?;
        write(format!("pmem-stack-{}.{SECTION}", sub.get_name()), page)?;
    }
    Ok(())
}

fn man_of(cmd: clap::Command) -> Man {
    Man::new(cmd)
        .section(SECTION)
        .manual("System Administration")
        .source(format!("pmem-stack {}", env!("CARGO_PKG_VERSION")))
}

/// pmem-stack(8): the generated page plus exit status, files, environment,
/// the format versions and the other pages.
fn render_main(cmd: &clap::Command, out: &mut Vec<u8>) -> Result<()> {
    man_of(cmd.clone())
        .render(out)
        .context("rendering the manual page")?;
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(*meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (file, meaning) in [
        (
            "/run/pmem-stack/ublkbN.json",
            "the record of each served device (backing, volume uuid, server pid)",
        ),
        (
            "/run/pmem-stack/ublkbN.log",
            "a background server's log; a foreground server logs to standard error (the journal under systemd)",
        ),
        (
            "pmem-stack@.service",
            "the systemd unit: 'systemctl enable --now pmem-stack@$(systemd-escape --path /dev/pmem0)' serves /dev/pmem0 at boot",
        ),
        (
            "60-pmem-stack.rules",
            "the udev rule that names each device /dev/disk/by-id/pmem-stack-UUID",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(file)])
            .text([roman(meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", [])
        .text([bold("NOTIFY_SOCKET")])
        .text([roman(
            "set by systemd for Type=notify services: a foreground server sends READY=1 once its device is live, STATUS= lines and STOPPING=1 (sd_notify(3)).",
        )]);
    roff.control("TP", [])
        .text([bold("RUST_LOG")])
        .text([roman("log level (error, warn, info, debug, trace).")]);
    roff.control("SH", ["ON-MEDIA FORMAT"]);
    roff.text([roman(format!(
        "This pmem-stack {}; see FORMAT.md in the source for the specification.",
        super::args::VERSION
            .split_once(' ')
            .map_or("", |(_, formats)| formats)
    ))]);
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("pmem-stack-{}({SECTION})", s.get_name()))
        .chain(["systemd.service(5)".to_string(), "udev(7)".to_string()])
        .collect();
    roff.text([roman(pages.join(", "))]);
    roff.to_writer(out).context("rendering the manual page")
}

/// pmem-stack-COMMAND(8).
fn render_sub(sub: clap::Command, out: &mut Vec<u8>) -> Result<()> {
    man_of(sub)
        .render(out)
        .context("rendering the manual page")?;
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 success, 1 failure, 2 bad usage; see pmem-stack(8).",
    )]);
    roff.to_writer(out).context("rendering the manual page")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn main_page() -> String {
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        let mut out = Vec::new();
        render_main(&cmd, &mut out).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn the_main_page_documents_exit_codes_and_formats() {
        let page = main_page();
        assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
        for (code, _) in EXIT_STATUS {
            assert!(page.contains(&format!("\\fB{code}\\fR")), "{code}");
        }
        assert!(page.contains("writes 1.0"), "{page}");
        assert!(page.contains("pmem\\-stack\\-restart(8)"), "{page}");
    }

    #[test]
    fn every_command_has_a_page() {
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        for sub in cmd.get_subcommands() {
            let mut out = Vec::new();
            render_sub(sub.clone(), &mut out).expect("render");
            let page = String::from_utf8(out).expect("utf-8");
            assert!(
                page.contains(".TH pmem-stack-"),
                "{}: {page}",
                sub.get_name()
            );
        }
    }
}
