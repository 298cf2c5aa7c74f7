//! `completions` and `man`: shell completion scripts and manual pages,
//! generated from the same clap definition that parses the arguments, so
//! they cannot drift from it. The pages' words beyond that definition —
//! descriptions, JSON keys, examples, exit status, files — are the tables
//! in `manual.rs`; this module only sets them in roff.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, CommandFactory};
use clap_complete::Shell;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::args::{Cli, CompletionsArgs, ManArgs, VERSION};
use super::manual::{self, Block, COMMON_EXIT_STATUS, EXIT_STATUS, Example, Json, Page, Section};
use super::usage::Usage;

/// The program's name, as users type it.
const BIN: &str = "pmem-stack";

/// The section pmem-stack's pages live in (system administration).
const SECTION: &str = "8";

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    std::io::stdout()
        .write_all(completion_script(args.shell).as_bytes())
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// The completion script for `shell`.
fn completion_script(shell: Shell) -> String {
    let mut cmd = completable();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => repair_bash(&script),
        _ => script,
    }
}

/// The command tree the completion scripts offer: the parser's, without its
/// hidden commands. clap_complete lists hidden subcommands like any other
/// (in every shell), and `udev-id` is the udev rule's helper, not a command
/// for people; clap cannot remove a subcommand, so the top level is rebuilt
/// from the visible ones.
fn completable() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new(BIN)
        .version(VERSION.as_str())
        .propagate_version(full.is_propagate_version_set())
        .subcommand_required(full.is_subcommand_required_set())
        .args(full.get_arguments().cloned())
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Work around clap_complete 4.6's bash generator for a program whose name
/// has a hyphen (clap-rs/clap#6421). The script tracks the subcommand typed
/// so far in `$cmd`: the loop over the words sets it to the program name
/// with `-` turned into `__`, then `__subcmd__` and the subcommand
/// (`pmem__stack__subcmd__format`); but the case labels that pick the
/// subcommand's options are built from its bin name, `pmem-stack format`,
/// turning the space into `__subcmd__` first and every `-` into
/// `__subcmd__` after, the program's own hyphen included
/// (`pmem__subcmd__stack__subcmd__format`). No label ever matches, so
/// nothing completes after a subcommand. The labels are the broken half:
/// their prefix is rewritten to the one the loop sets. When a release fixes
/// the generator the broken prefix no longer occurs and this changes
/// nothing; `tests/completions.rs` drives the result in a real bash.
fn repair_bash(script: &str) -> String {
    const SEP: &str = "__subcmd__";
    let broken = format!("{}{SEP}", BIN.replace('-', SEP));
    let meant = format!("{}{SEP}", BIN.replace('-', "__"));
    script.replace(&broken, &meant)
}

pub fn man(args: &ManArgs) -> Result<ExitCode> {
    let cmd = built();
    if let Some(dir) = &args.dir {
        write_all_pages(&cmd, dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let page = if args.command.is_empty() || args.command == [BIN] {
        render_main(&cmd)
    } else {
        let page = find_page(&args.command)?;
        render_page(&cmd, page)
    };
    std::io::stdout()
        .write_all(page.as_bytes())
        .context("writing the manual page")?;
    Ok(ExitCode::SUCCESS)
}

/// The parser's command tree, built (so subcommands know their full names).
fn built() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// A page's name without the section: `pmem-stack-reserve-split`.
fn page_name(page: &Page) -> String {
    std::iter::once(BIN)
        .chain(page.command.iter().copied())
        .collect::<Vec<_>>()
        .join("-")
}

/// The page `man WORDS…` asks for: `reserve split`, `reserve-split` and
/// `pmem-stack-reserve-split` all name pmem-stack-reserve-split(8). An
/// unknown name is a usage error (exit 2) that lists the commands.
fn find_page(words: &[String]) -> Result<&'static Page> {
    let asked = words.join("-");
    let name = asked
        .strip_prefix(BIN)
        .and_then(|rest| rest.strip_prefix('-'))
        .unwrap_or(&asked);
    let wanted = format!("{BIN}-{name}");
    if let Some(page) = manual::PAGES.iter().find(|p| page_name(p) == wanted) {
        return Ok(page);
    }
    let known: Vec<String> = manual::PAGES.iter().map(|p| p.command.join(" ")).collect();
    Err(Usage::new(format!(
        "'{}' is not a pmem-stack command; the manual has pages for: {}",
        words.join(" "),
        known.join(", ")
    ))
    .into())
}

/// The clap definition of `page`'s command.
fn command_of<'a>(cmd: &'a clap::Command, page: &Page) -> &'a clap::Command {
    let mut found = cmd;
    for word in page.command {
        // manual.rs's tests hold every page to an existing command.
        if let Some(sub) = found.find_subcommand(word) {
            found = sub;
        }
    }
    found
}

/// pmem-stack.8 and a page for every command, nested ones included, into
/// `dir` (made if missing); then prints each file's path (after writing
/// them all, so a reader that stops early never leaves pages unwritten).
fn write_all_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pages = vec![(BIN.to_string(), render_main(cmd))];
    pages.extend(
        manual::PAGES
            .iter()
            .map(|page| (page_name(page), render_page(cmd, page))),
    );
    let mut written = String::new();
    for (name, text) in pages {
        let path = dir.join(format!("{name}.{SECTION}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    std::io::stdout()
        .write_all(written.as_bytes())
        .context("listing the pages written")
}

/// `.TH` and NAME.
fn title(roff: &mut Roff, name: &str, summary: &str) {
    let source = format!("{BIN} {}", env!("CARGO_PKG_VERSION"));
    // An empty date, quoted so the later arguments keep their places.
    roff.control(
        "TH",
        [
            name,
            SECTION,
            "\"\"",
            source.as_str(),
            "System Administration",
        ],
    );
    // Left-adjusted and unhyphenated: option names and paths stay whole.
    roff.control("nh", []).control("ad", ["l"]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{name} - {summary}"))]);
}

/// A section of blocks.
fn blocks(roff: &mut Roff, body: &[Block]) {
    for block in body {
        match block {
            Block::Para(text) => {
                roff.control("PP", []).text([roman(*text)]);
            }
            Block::Pre(lines) => preformatted(roff, lines),
            Block::Items(all) => items(roff, all),
        }
    }
}

/// Terms in bold, each with what it means.
fn items(roff: &mut Roff, all: &[(&str, &str)]) {
    for (term, meaning) in all {
        roff.control("TP", [])
            .text([bold(*term)])
            .text([roman(*meaning)]);
    }
}

/// Lines set as they are, indented.
fn preformatted(roff: &mut Roff, lines: &[&str]) {
    roff.control("PP", [])
        .control("RS", ["4"])
        .control("nf", []);
    for line in lines {
        roff.text([roman(*line)]);
    }
    roff.control("fi", []).control("RE", []);
}

fn sections(roff: &mut Roff, all: &[Section]) {
    for section in all {
        roff.control("SH", [section.title]);
        blocks(roff, section.body);
    }
}

/// What an option takes, as the synopsis and OPTIONS show it: its possible
/// values (`hypervisor|os|none`) or its value name (`SIZE|auto`).
fn value_of(arg: &Arg) -> Option<String> {
    if !arg.get_num_args().is_some_and(|n| n.takes_values()) {
        return None;
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        return Some(values.join("|"));
    }
    Some(match arg.get_value_names() {
        Some(names) => names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        None => arg.get_id().as_str().to_uppercase(),
    })
}

/// Whether an argument may be given more than once.
fn repeats(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// One argument in the synopsis: `--mode hypervisor|os|none`, `-q|--quiet`,
/// `BACKING`.
fn synopsis_arg(arg: &Arg) -> Vec<Inline> {
    let mut out = Vec::new();
    if arg.is_positional() {
        out.push(italic(value_of(arg).unwrap_or_default()));
    } else {
        if let Some(short) = arg.get_short() {
            out.push(bold(format!("-{short}")));
            out.push(roman("|"));
        }
        if let Some(long) = arg.get_long() {
            out.push(bold(format!("--{long}")));
        }
        if let Some(value) = value_of(arg) {
            out.push(roman(" "));
            out.push(italic(value));
        }
    }
    out
}

/// One argument of the synopsis, bracketed when optional and followed by an
/// ellipsis when it repeats.
fn synopsis_item(line: &mut Vec<Inline>, arg: &Arg) {
    line.push(roman(" "));
    let optional = !arg.is_required_set();
    if optional {
        line.push(roman("["));
    }
    line.extend(synopsis_arg(arg));
    if optional {
        line.push(roman("]"));
    }
    if repeats(arg) {
        line.push(roman("..."));
    }
}

/// The usage line of `cmd` (`words` typed after the program's name): its
/// arguments in order, each with what it takes; optional ones in brackets,
/// repeatable ones followed by an ellipsis, a required choice as `A|B`.
fn synopsis(roff: &mut Roff, cmd: &clap::Command, words: &[&str]) {
    let mut line = vec![bold(
        std::iter::once(BIN)
            .chain(words.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
    )];
    let groups: Vec<Vec<&Arg>> = cmd
        .get_groups()
        .filter(|g| g.is_required_set())
        .map(|g| {
            g.get_args()
                .filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == id))
                .collect()
        })
        .collect();
    let in_group = |arg: &Arg| groups.iter().flatten().any(|a| a.get_id() == arg.get_id());
    let visible = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"));
    let (positionals, options): (Vec<&Arg>, Vec<&Arg>) = visible.partition(|a| a.is_positional());
    let (positionals, options): (Vec<&Arg>, Vec<&Arg>) = (
        positionals.into_iter().filter(|a| !in_group(a)).collect(),
        options.into_iter().filter(|a| !in_group(a)).collect(),
    );
    for arg in positionals {
        synopsis_item(&mut line, arg);
    }
    for group in &groups {
        line.push(roman(" "));
        for (i, arg) in group.iter().enumerate() {
            if i > 0 {
                line.push(roman("|"));
            }
            line.extend(synopsis_arg(arg));
        }
    }
    for arg in options {
        synopsis_item(&mut line, arg);
    }
    if cmd.has_subcommands() {
        let names: Vec<&str> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(clap::Command::get_name)
            .collect();
        line.push(roman(" "));
        line.push(italic(names.join("|")));
        line.push(roman(" ..."));
    }
    roff.control("SH", ["SYNOPSIS"]).text(line);
}

/// OPTIONS: every visible argument with its help, default and values.
fn options(roff: &mut Roff, cmd: &clap::Command) {
    let (positionals, flags): (Vec<&Arg>, Vec<&Arg>) = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .partition(|a| a.is_positional());
    if positionals.is_empty() && flags.is_empty() {
        return;
    }
    roff.control("SH", ["OPTIONS"]);
    for arg in positionals.into_iter().chain(flags) {
        let header: Vec<Inline> = synopsis_arg(arg)
            .into_iter()
            .map(|i| match i {
                Inline::Roman(text) if text == "|" => roman(", "),
                other => other,
            })
            .collect();
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut body = help.trim_end_matches('.').to_string();
        body.push('.');
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        // A flag's default (false) says nothing.
        let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
        if takes_values && !defaults.is_empty() && !arg.is_hide_default_value_set() {
            body.push_str(&format!(" Default: {}.", defaults.join(", ")));
        }
        roff.control("TP", []).text(header).text([roman(body)]);
        possible_values(roff, arg);
    }
}

/// The values of an option that has a fixed set, each with its meaning.
fn possible_values(roff: &mut Roff, arg: &Arg) {
    let values: Vec<_> = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set() && v.get_help().is_some())
        .collect();
    if values.is_empty() || arg.is_hide_possible_values_set() {
        return;
    }
    roff.control("RS", []);
    for value in values {
        let help = value
            .get_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        roff.control("TP", [])
            .text([bold(value.get_name())])
            .text([roman(format!("{}.", help.trim_end_matches('.')))]);
    }
    roff.control("RE", []);
}

/// JSON OUTPUT: the shape, then every key with its meaning.
fn json_section(roff: &mut Roff, json: &Json) {
    roff.control("SH", ["JSON OUTPUT"]);
    roff.control("PP", []).text([roman(json.shape)]);
    for group in json.groups {
        if !group.heading.is_empty() {
            roff.control("PP", []).text([roman(group.heading)]);
        }
        for key in group.keys {
            roff.control("TP", [])
                .text([bold(key.path)])
                .text([roman(key.meaning)]);
        }
    }
}

fn examples(roff: &mut Roff, all: &[Example]) {
    if all.is_empty() {
        return;
    }
    roff.control("SH", ["EXAMPLES"]);
    for example in all {
        roff.control("PP", []).text([roman(example.what)]);
        preformatted(roff, example.lines);
    }
}

/// EXIT STATUS: the statuses every command shares, each replaced by what
/// the page says of it, then the page's own.
fn exit_status(roff: &mut Roff, page: &Page) {
    roff.control("SH", ["EXIT STATUS"]);
    let shared = COMMON_EXIT_STATUS.iter();
    let own = page
        .exit_status
        .iter()
        .filter(|(code, _)| !COMMON_EXIT_STATUS.iter().any(|(c, _)| c == code));
    for (code, meaning) in shared.chain(own) {
        let meaning = page
            .exit_status
            .iter()
            .find(|(c, _)| c == code)
            .map_or(*meaning, |(_, m)| *m);
        roff.control("TP", [])
            .text([bold(*code)])
            .text([roman(meaning)]);
    }
}

fn files(roff: &mut Roff, all: &[(&str, &str)]) {
    if all.is_empty() {
        return;
    }
    roff.control("SH", ["FILES"]);
    items(roff, all);
}

/// SEE ALSO: `name(section)` references, the name in bold.
fn see_also(roff: &mut Roff, refs: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, reference) in refs.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        match reference.split_once('(') {
            Some((name, section)) => {
                line.push(bold(name));
                line.push(roman(format!("({section}")));
            }
            None => line.push(roman(reference.as_str())),
        }
    }
    roff.text(line);
}

/// pmem-stack-COMMAND(8).
fn render_page(root: &clap::Command, page: &Page) -> String {
    let cmd = command_of(root, page);
    let mut roff = Roff::default();
    let summary = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    title(&mut roff, &page_name(page), summary.trim_end_matches('.'));
    synopsis(&mut roff, cmd, page.command);
    roff.control("SH", ["DESCRIPTION"]);
    blocks(&mut roff, page.description);
    options(&mut roff, cmd);
    let subpages: Vec<&Page> = manual::PAGES
        .iter()
        .filter(|p| {
            p.command.len() == page.command.len() + 1 && p.command.starts_with(page.command)
        })
        .collect();
    if !subpages.is_empty() {
        roff.control("SH", ["COMMANDS"]);
        command_list(&mut roff, root, &subpages);
    }
    sections(&mut roff, page.sections);
    if let Some(json) = &page.json {
        json_section(&mut roff, json);
    }
    examples(&mut roff, page.examples);
    exit_status(&mut roff, page);
    files(&mut roff, page.files);
    let refs: Vec<String> = std::iter::once(format!("{BIN}({SECTION})"))
        .chain(page.see_also.iter().map(ToString::to_string))
        .collect();
    see_also(&mut roff, &refs);
    roff.render()
}

/// Each page's name and its command's one-line summary.
fn command_list(roff: &mut Roff, root: &clap::Command, pages: &[&Page]) {
    for page in pages {
        let about = command_of(root, page)
            .get_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        roff.control("TP", [])
            .text([bold(page_name(page)), roman(format!("({SECTION})"))])
            .text([roman(about)]);
    }
}

/// pmem-stack(8): what the tool is, its commands, the layout rules, sizes,
/// format versions, exit status, environment and files.
fn render_main(cmd: &clap::Command) -> String {
    let mut roff = Roff::default();
    let about = cmd.get_about().map(ToString::to_string).unwrap_or_default();
    title(&mut roff, BIN, &about);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([
        bold(BIN),
        roman(" "),
        italic("COMMAND"),
        roman(" [ARGUMENTS] [OPTIONS]"),
    ]);
    roff.control("br", []);
    roff.text([
        bold(BIN),
        roman(" "),
        bold("--version"),
        roman("|"),
        bold("--help"),
    ]);
    roff.control("SH", ["DESCRIPTION"]);
    blocks(&mut roff, manual::MAIN_DESCRIPTION);
    roff.control("SH", ["COMMANDS"]);
    let all: Vec<&Page> = manual::PAGES.iter().collect();
    command_list(&mut roff, cmd, &all);
    sections(&mut roff, manual::MAIN_SECTIONS);
    sizes_and_versions(&mut roff);
    roff.control("SH", ["EXIT STATUS"]);
    items(&mut roff, EXIT_STATUS);
    roff.control("SH", ["ENVIRONMENT"]);
    items(&mut roff, manual::ENVIRONMENT);
    files(&mut roff, manual::MAIN_FILES);
    let refs: Vec<String> = manual::PAGES
        .iter()
        .map(|p| format!("{}({SECTION})", page_name(p)))
        .chain(["systemd.service(5)", "udev(7)", "ndctl(1)", "xl(1)"].map(String::from))
        .collect();
    see_also(&mut roff, &refs);
    roff.render()
}

/// SIZES and VERSION: the size grammar and the on-media versions, from the
/// code that parses and writes them.
fn sizes_and_versions(roff: &mut Roff) {
    roff.control("SH", ["SIZES"]);
    roff.control("PP", []).text([roman(format!(
        "A SIZE is {}; case is ignored. A reserve is rounded up to the alignment, an owner's size to 4 KiB; format says when it rounds. Sizes and offsets in JSON are integer bytes.",
        pmem_stack::size::GRAMMAR
    ))]);
    roff.control("SH", ["VERSION"]);
    roff.control("PP", [])
        .text([roman(format!("{BIN} {}.", VERSION.as_str()))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_page_documents_exit_codes_formats_and_every_page() {
        let page = render_main(&built());
        assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
        for (code, _) in EXIT_STATUS {
            assert!(page.contains(&format!("\\fB{code}\\fR")), "{code}");
        }
        assert!(page.contains("writes 1.0"), "{page}");
        for name in ["restart", "reserve\\-split", "reserve\\-list"] {
            assert!(
                page.contains(&format!("\\fBpmem\\-stack\\-{name}\\fR(8)")),
                "{name}: {page}"
            );
        }
        assert!(!page.contains("EXTRA"), "{page}");
    }

    #[test]
    fn the_synopsis_shows_what_each_option_takes() {
        let cmd = built();
        let page = render_page(&cmd, manual::page(&["format"]).expect("format"));
        let synopsis = page
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .expect("a synopsis line");
        for wanted in [
            "\\fBpmem\\-stack format\\fR \\fIBACKING\\fR",
            "[\\fB\\-\\-mode\\fR \\fIhypervisor|os|none\\fR]",
            "[\\fB\\-\\-reserve\\fR \\fISIZE|auto\\fR]",
            "[\\fB\\-\\-owner\\fR \\fINAME[:KIND]=SIZE|auto|rest\\fR]...",
            "[\\fB\\-q\\fR|\\fB\\-\\-quiet\\fR]",
        ] {
            assert!(synopsis.contains(wanted), "{wanted} not in {synopsis}");
        }
        let del = render_page(&cmd, manual::page(&["del"]).expect("del"));
        assert!(del.contains("\\fIDEVICE\\fR|\\fB\\-\\-all\\fR"), "{del}");
    }

    #[test]
    fn pages_are_found_by_words_or_name_and_others_are_usage_errors() {
        let words = |w: &[&str]| w.iter().map(ToString::to_string).collect::<Vec<_>>();
        for asked in [
            words(&["reserve", "split"]),
            words(&["reserve-split"]),
            words(&["pmem-stack-reserve-split"]),
        ] {
            let page = find_page(&asked).expect("found");
            assert_eq!(page.command, ["reserve", "split"]);
        }
        for bogus in [
            words(&["bogus"]),
            words(&["udev-id"]),
            words(&["reserve", "bogus"]),
        ] {
            let Err(err) = find_page(&bogus) else {
                panic!("{bogus:?} found a page");
            };
            assert!(super::super::usage::is_usage(&err), "{err}");
            assert!(
                err.to_string().starts_with(&format!(
                    "'{}' is not a pmem-stack command",
                    bogus.join(" ")
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn the_scripts_and_pages_name_the_program_as_the_parser_does() {
        assert_eq!(Cli::command().get_name(), BIN);
        assert_eq!(completable().get_name(), BIN);
    }

    #[test]
    fn the_bash_script_picks_the_options_of_the_subcommand_it_names() {
        let script = completion_script(Shell::Bash);
        // Every state the word loop can set has a case label that reads it.
        let set: std::collections::BTreeSet<&str> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("cmd=\""))
            .filter_map(|l| l.strip_suffix('"'))
            .filter(|state| !state.is_empty())
            .collect();
        let labels: std::collections::BTreeSet<&str> = script
            .lines()
            .filter(|l| l.starts_with("        ") && !l.starts_with("         "))
            .filter_map(|l| l.trim().strip_suffix(')'))
            .collect();
        assert!(
            set.contains("pmem__stack__subcmd__reserve__subcmd__split"),
            "{set:?}"
        );
        for state in &set {
            assert!(labels.contains(state), "no case for {state}");
        }
        assert!(!script.contains("udev"), "the hidden helper is offered");
    }
}
