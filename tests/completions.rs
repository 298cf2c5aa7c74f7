//! Shell completion, driven in the real shells: the scripts
//! `pmem-stack completions bash|zsh|fish` prints are loaded into bash, zsh
//! and fish, and each shell's own completion machinery is asked what it
//! offers after a partial command line — the words a user gets on TAB.
//! Nothing here greps a script: a script that looks right but completes
//! nothing (clap_complete's bash bug with a hyphenated program name,
//! clap-rs/clap#6421) fails.
//!
//! - bash: the script is sourced in `bash --norc`, COMP_WORDS, COMP_CWORD,
//!   COMP_LINE and COMP_POINT are set as readline would, and the function
//!   `complete -p pmem-stack` names is called; COMPREPLY is the answer.
//! - zsh: a real interactive `zsh -f` runs under the zpty module with
//!   compinit and the script on $fpath; the line is typed followed by TAB
//!   (bound to complete-word). `compadd` is wrapped to print each match it
//!   adds before adding it, the technique of zsh-capture-completion, so
//!   the answer is what the completion system itself produced.
//! - fish: `fish --no-config` sources the script and answers
//!   `complete -C LINE`.
//!
//! A shell that is not installed fails the test, naming the Debian package.

mod common;

use common::require;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The commands a user should be offered (the hidden `udev-id` is not one).
const COMMANDS: &[&str] = &[
    "format",
    "info",
    "check",
    "add",
    "del",
    "list",
    "recover",
    "map",
    "unmap",
    "reserved",
    "reserve",
    "grow",
    "restart",
    "serve",
    "completions",
    "man",
];

/// `pmem-stack completions SHELL`, written to `dir/name`.
fn script(shell: &str, dir: &Path, name: &str) -> std::path::PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_pmem-stack"))
        .args(["completions", shell])
        .output()
        .expect("run pmem-stack completions");
    assert!(out.status.success(), "completions {shell}: {out:?}");
    assert!(!out.stdout.is_empty(), "an empty {shell} script");
    let path = dir.join(name);
    std::fs::write(&path, &out.stdout).expect("write the script");
    path
}

/// Run a shell command and return its standard output's non-empty lines,
/// trimmed; it must succeed (within a minute: `timeout` kills a shell that
/// waits for input it will never get).
fn lines_of(mut command: Command) -> Vec<String> {
    let out = command.output().expect("run the shell");
    assert!(
        out.status.success(),
        "{command:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// What the shell offers after `line` (which ends where TAB is pressed).
trait Shell {
    fn offers(&self, line: &str) -> Vec<String>;
}

struct Bash {
    script: std::path::PathBuf,
    driver: std::path::PathBuf,
}

/// Set the completion variables as readline does for the words of the line
/// (the last one, possibly empty, is the word being completed) and call the
/// completion function with the command, that word and the one before.
const BASH_DRIVER: &str = r#"
source "$1"; shift
spec=$(complete -p pmem-stack) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;

impl Bash {
    fn new(dir: &Path) -> Bash {
        require("bash", "bash");
        let driver = dir.join("drive.bash");
        std::fs::write(&driver, BASH_DRIVER).expect("write the driver");
        Bash {
            script: script("bash", dir, "pmem-stack.bash"),
            driver,
        }
    }
}

impl Shell for Bash {
    fn offers(&self, line: &str) -> Vec<String> {
        let mut words: Vec<&str> = line.split(' ').collect();
        if words.is_empty() {
            words.push("");
        }
        let mut command = Command::new("timeout");
        command
            .args(["60", "bash", "--norc", "--noprofile"])
            .arg(&self.driver)
            .arg(&self.script)
            .args(words);
        lines_of(command)
    }
}

struct Zsh {
    dir: std::path::PathBuf,
    init: std::path::PathBuf,
    driver: std::path::PathBuf,
}

/// Sourced by the interactive zsh under the pty: the completion system
/// with the script on $fpath, TAB bound to complete-word, no prompt, and
/// `compadd` wrapped to print what it adds. A completion starts and ends
/// with a marker line (`compprefuncs`, `comppostfuncs`), then the shell
/// exits.
const ZSH_INIT: &str = r#"
PROMPT='' RPROMPT=''
fpath=("$ZC_DIR" $fpath)
autoload -Uz compinit
compinit -u -D
bindkey '^M' undefined
bindkey '^J' undefined
bindkey '^I' complete-word
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
__zc_mark() { print -r -- '<<<ZC>>>' }
compprefuncs=( __zc_mark )
comppostfuncs=( __zc_mark exit )
compadd() {
  # Calls that only collect matches (-O, -A, -D) are the system's own.
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "$@"
    return $?
  fi
  local -a __hits
  builtin compadd -A __hits "$@"
  local h
  for h in $__hits; do print -r -- "ZC:$h"; done
  builtin compadd "$@"
}
print -r -- '<<<READY>>>'
"#;

/// Runs an interactive zsh in a pty, has it source the init, types the
/// line and TAB, and prints the matches between the two markers.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty || { print -u2 'the zsh/zpty module is missing'; exit 3 }
export ZC_DIR=$1
zpty z zsh -f -i
zpty -w z "source ${(q)2}"
local line
while zpty -r z line; do
  [[ $line == *'<<<READY>>>'* && $line != *source* ]] && break
done
zpty -w -n z "$3"$'\t'
integer marks=0
while zpty -r z line; do
  line=${line//[$'\r\n']/}
  if [[ $line == *'<<<ZC>>>'* ]]; then
    (( ++marks == 2 )) && break
    continue
  fi
  [[ $line == *ZC:* ]] && print -r -- "${line#*ZC:}"
done
zpty -d z
(( marks == 2 )) || { print -u2 "the completion did not finish"; exit 4 }
"#;

impl Zsh {
    fn new(dir: &Path) -> Zsh {
        require("zsh", "zsh");
        let dir = dir.join("zsh");
        std::fs::create_dir_all(&dir).expect("zsh dir");
        script("zsh", &dir, "_pmem-stack");
        let init = dir.join("init.zsh");
        let driver = dir.join("drive.zsh");
        std::fs::write(&init, ZSH_INIT).expect("write init");
        std::fs::write(&driver, ZSH_DRIVER).expect("write driver");
        Zsh { dir, init, driver }
    }
}

impl Shell for Zsh {
    fn offers(&self, line: &str) -> Vec<String> {
        let mut command = Command::new("timeout");
        command
            .args(["60", "zsh", "-f"])
            .arg(&self.driver)
            .arg(&self.dir)
            .arg(&self.init)
            .arg(line)
            .env("HOME", &self.dir);
        lines_of(command)
    }
}

struct Fish {
    script: std::path::PathBuf,
    home: std::path::PathBuf,
}

impl Fish {
    fn new(dir: &Path) -> Fish {
        require("fish", "fish");
        let home = dir.join("fish-home");
        std::fs::create_dir_all(&home).expect("fish home");
        Fish {
            script: script("fish", dir, "pmem-stack.fish"),
            home,
        }
    }
}

impl Shell for Fish {
    fn offers(&self, line: &str) -> Vec<String> {
        let mut command = Command::new("timeout");
        command
            .args([
                "60",
                "fish",
                "--no-config",
                "-c",
                "source $argv[1]; complete -C $argv[2]",
            ])
            .arg(&self.script)
            .arg(line)
            // fish keeps its history and universal variables under HOME.
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.home)
            .env("XDG_DATA_HOME", &self.home);
        // Each line is the candidate, a tab, and its description.
        lines_of(command)
            .into_iter()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    }
}

fn set(words: &[String]) -> BTreeSet<&str> {
    words.iter().map(String::as_str).collect()
}

/// The four things every shell must complete, and the hidden helper it must
/// not offer.
fn completes_commands_flags_values_and_nested_commands(name: &str, shell: &dyn Shell) {
    let top = shell.offers("pmem-stack ");
    for command in COMMANDS {
        assert!(
            top.iter().any(|w| w == command),
            "{name}: 'pmem-stack <TAB>' does not offer {command}: {top:?}"
        );
    }
    assert!(
        !top.iter().any(|w| w.contains("udev")),
        "{name}: the hidden udev-id helper is offered: {top:?}"
    );
    let ud = shell.offers("pmem-stack ud");
    assert!(
        !ud.iter().any(|w| w.contains("udev")),
        "{name}: 'pmem-stack ud<TAB>' offers the hidden helper: {ud:?}"
    );

    let flags = shell.offers("pmem-stack format --");
    for flag in [
        "--reserve",
        "--mode",
        "--align",
        "--block-size",
        "--owner",
        "--force",
        "--json",
    ] {
        assert!(
            flags.iter().any(|w| w == flag),
            "{name}: 'pmem-stack format --<TAB>' does not offer {flag}: {flags:?}"
        );
    }
    assert!(
        !flags.iter().any(|w| w == "--queues"),
        "{name}: format is offered add's --queues: {flags:?}"
    );

    let values = shell.offers("pmem-stack format --mode ");
    assert_eq!(
        set(&values),
        BTreeSet::from(["hypervisor", "os", "none"]),
        "{name}: 'pmem-stack format --mode <TAB>'"
    );

    let nested = shell.offers("pmem-stack reserve ");
    for sub in ["split", "list"] {
        assert!(
            nested.iter().any(|w| w == sub),
            "{name}: 'pmem-stack reserve <TAB>' does not offer {sub}: {nested:?}"
        );
    }
    let split = shell.offers("pmem-stack reserve split --");
    assert!(
        split.iter().any(|w| w == "--owner") && split.iter().any(|w| w == "--json"),
        "{name}: 'pmem-stack reserve split --<TAB>': {split:?}"
    );
    assert!(
        !split.iter().any(|w| w == "--reserve"),
        "{name}: reserve split is offered format's --reserve: {split:?}"
    );
}

#[test]
fn bash_completes_commands_flags_values_and_nested_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bash = Bash::new(dir.path());
    completes_commands_flags_values_and_nested_commands("bash", &bash);
    // A prefix narrows the flags to the one it starts.
    assert_eq!(bash.offers("pmem-stack format --mo"), ["--mode"]);
}

#[test]
fn zsh_completes_commands_flags_values_and_nested_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let zsh = Zsh::new(dir.path());
    completes_commands_flags_values_and_nested_commands("zsh", &zsh);
    assert_eq!(zsh.offers("pmem-stack format --mo"), ["--mode"]);
}

#[test]
fn fish_completes_commands_flags_values_and_nested_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fish = Fish::new(dir.path());
    completes_commands_flags_values_and_nested_commands("fish", &fish);
    assert_eq!(fish.offers("pmem-stack format --mo"), ["--mode"]);
}
