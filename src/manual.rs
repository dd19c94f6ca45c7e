//! The man pages and shell completions, written from the clap definition
//! itself (`glemsel generate man DIR`, `glemsel generate completion SHELL`),
//! so they say what `--help` says. The Debian package ships what this
//! writes. Part of the binary, not the library: it needs the `Cli` of
//! `main.rs`.
//!
//! `glemsel.1` adds what a man page has and `--help` does not: the files
//! the package installs, the environment, the exit status and where to
//! read on. Each subcommand gets a page of its own (`glemsel-plan.1`), as
//! git's do.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Command;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use glemsel::exit::Exit;

/// The files the Debian package installs or the example config names:
/// (path, what it is). The package test checks each against the package.
pub const FILES: &[(&str, &str)] = &[
    (
        "/etc/glemsel/glemsel.toml",
        "The deployment config: time zone, stores, where the rules are. Validated against /usr/share/glemsel/schema/glemsel.schema.json.",
    ),
    (
        "/etc/glemsel/rules/",
        "The rule files the config names (*.toml), validated against /usr/share/glemsel/schema/rules.schema.json.",
    ),
    (
        "/etc/glemsel/examples/",
        "The reference rule sets, one folder per policy, each with a README that reads the policy promise by promise.",
    ),
    (
        "/etc/glemsel/credentials/",
        "Secrets (the HMAC key, one database URL per store), passed to the services with LoadCredential= and read from $CREDENTIALS_DIRECTORY.",
    ),
    (
        "/var/lib/glemsel/",
        "The services' state: the audit checkpoint file (audit_checkpoints).",
    ),
    (
        "/lib/systemd/system/glemsel.service",
        "The daemon: every rule on its schedule.",
    ),
    (
        "/lib/systemd/system/glemsel-run.timer",
        "The alternative to the daemon: glemsel-run.service (glemsel run) every night.",
    ),
    (
        "/usr/share/glemsel/schema/",
        "JSON Schemas of the config and the rule files, for editors (#:schema).",
    ),
];

/// The environment glemsel reads: (variable, meaning).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "GLEMSEL_CONFIG",
        "The config file, when --config is not given.",
    ),
    (
        "GLEMSEL_LOG",
        "A tracing filter that overrides -v, e.g. glemsel=debug.",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "Where key_credential and url_credential are read from; systemd sets it for a service with LoadCredential=.",
    ),
    (
        "NOTIFY_SOCKET",
        "Set by systemd for the daemon (Type=notify): readiness, status and the watchdog.",
    ),
];

/// Writes `glemsel.1` and a page per (visible) subcommand into `dir`;
/// returns the paths written.
pub fn write_man_pages(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let path = dir.join(Man::new(cmd.clone()).get_filename());
    let mut file = std::fs::File::create(&path)?;
    main_page(&cmd, &mut file)?;
    file.flush()?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub, dir, &mut written)?;
    }
    Ok(written)
}

/// Writes the completion script for `shell`.
pub fn write_completion(mut cmd: Command, shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut cmd, "glemsel", out);
}

fn main_page(cmd: &Command, out: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    let mut roff = Roff::default();
    definitions(&mut roff, "FILES", FILES);
    definitions(&mut roff, "ENVIRONMENT", ENVIRONMENT);
    let codes: Vec<(String, &str)> = Exit::TABLE
        .iter()
        .map(|(code, meaning)| (code.to_string(), *meaning))
        .collect();
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "When a run covers several rules, the most serious outcome decides (1 > 5 > 7 > 8 > 0).",
    )]);
    for (code, meaning) in &codes {
        roff.control("TP", []);
        roff.text([bold(code.as_str())]);
        roff.text([roman(*meaning)]);
    }
    see_also(&mut roff, cmd);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

fn subcommand_pages(cmd: &Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let man = Man::new(cmd.clone()).source(format!("glemsel {}", glemsel::VERSION));
    let path = dir.join(man.get_filename());
    let mut file = std::fs::File::create(&path)?;
    man.render_title(&mut file)?;
    man.render_name_section(&mut file)?;
    man.render_synopsis_section(&mut file)?;
    man.render_description_section(&mut file)?;
    man.render_options_section(&mut file)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut file)?;
    }
    let mut roff = Roff::default();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([bold("glemsel"), roman("(1)")]);
    roff.to_writer(&mut file)?;
    file.flush()?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_pages(sub, dir, written)?;
    }
    Ok(())
}

/// A section of `.TP` paragraphs: a term in bold, then what it means.
fn definitions<T: AsRef<str>>(roff: &mut Roff, title: &str, items: &[(T, &str)]) {
    roff.control("SH", [title]);
    for (term, meaning) in items {
        roff.control("TP", []);
        roff.text([bold(term.as_ref())]);
        roff.text([roman(*meaning)]);
    }
}

fn see_also(roff: &mut Roff, cmd: &Command) {
    roff.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if !refs.is_empty() {
            refs.push(roman(", "));
        }
        refs.push(bold(format!("glemsel-{}", sub.get_name())));
        refs.push(roman("(1)"));
    }
    for page in ["systemd.exec(5)", "systemctl(1)"] {
        let (name, section) = page.split_once('(').expect("a page and its section");
        refs.push(roman(", "));
        refs.push(bold(name));
        refs.push(roman(format!("({section}")));
    }
    roff.text(refs);
    roff.control("PP", []);
    roff.text([
        roman("The README, with the rule model and every key of the config and the rule files: "),
        italic("/usr/share/doc/glemsel/README.md"),
        roman("."),
    ]);
}
