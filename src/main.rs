//! `pmem-stack`: the command-line tool. Everything but argument syntax and
//! messages lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn init_logging() {
    // The filter lets everything through at info; the global level keeps the
    // CLI quiet (warnings only) unless RUST_LOG says otherwise. A server
    // raises the level for its log file.
    let explicit = std::env::var_os("RUST_LOG").is_some();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    if !explicit {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// clap's usage errors span several lines; ours are one: the error's first
/// paragraph, then clap's tips (its "did you mean": `a similar subcommand
/// exists: 'format'`), which follow a blank line and would be lost.
fn usage_error(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut lines = rendered.lines().map(str::trim);
    let mut line = lines
        .by_ref()
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    for tip in lines.filter_map(|line| line.strip_prefix("tip: ")) {
        line.push_str("; ");
        line.push_str(tip);
    }
    format!("{line} (see 'pmem-stack --help')")
}

fn main() -> ExitCode {
    let cli = match cli::args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = err.print();
            return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(err) => {
            eprintln!("{}", usage_error(&err));
            return ExitCode::from(2);
        }
    };
    init_logging();
    cli::progress_line::install_if_terminal();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", cli::remedy::message(&err));
            if cli::usage::is_usage(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
