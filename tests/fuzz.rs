//! Generated inputs for the two parsers that stand between a rule file and
//! a database: the rule-file loader must never panic, and the scanner of
//! SQL fragments (`where`, `open`) must accept no fragment that changes
//! the statement's structure on any engine.
//!
//! The scanner is checked against an independent tokenizer per engine
//! (PostgreSQL, MySQL/MariaDB with ANSI_QUOTES, SQLite), each written from
//! that engine's own quoting and comment rules: an accepted fragment must,
//! on every engine, be one expression (no `;`, no comment, every quote
//! closed, parentheses balanced and never below zero).
//!
//! The default run is a smoke run; `tests/fuzz` runs a million of each
//! (`GLEMSEL_FUZZ_CASES`). Seeded: a failure prints its seed and input.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn cases(default: u64) -> u64 {
    std::env::var("GLEMSEL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("GLEMSEL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_130)
}

#[derive(Debug, Clone, Copy)]
enum Engine {
    Postgres,
    Mysql,
    Sqlite,
}

/// Whether `text`, read by `engine`, is one expression (or a statement the
/// engine refuses whole, which runs nothing): it returns the reason it is
/// not.
fn structure(engine: Engine, text: &str) -> Result<(), String> {
    let chars: Vec<char> = text.chars().collect();
    let mut depth = 0i64;
    let mut i = 0;
    // A quoted run from `i` (at the opening `open`) to its close; `doubled`:
    // a doubled closing character stands for itself; `backslash`: a
    // backslash escapes the next character.
    let skip_quoted = |i: usize, close: char, doubled: bool, backslash: bool| -> Option<usize> {
        let mut j = i + 1;
        while j < chars.len() {
            let c = chars[j];
            if backslash && c == '\\' {
                j += 2;
                continue;
            }
            if c == close {
                if doubled && chars.get(j + 1) == Some(&close) {
                    j += 2;
                    continue;
                }
                return Some(j + 1);
            }
            j += 1;
        }
        None
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (engine, c) {
            (_, ';') => return Err("a ';' ends the statement".into()),
            (_, '-') if next == Some('-') => return Err("'--' starts a comment".into()),
            (_, '/') if next == Some('*') => return Err("'/*' starts a comment".into()),
            (Engine::Mysql, '#') => return Err("'#' starts a comment".into()),
            (_, '(') => {
                depth += 1;
                i += 1;
            }
            (_, ')') => {
                depth -= 1;
                if depth < 0 {
                    return Err("a ')' closes the statement's own parenthesis".into());
                }
                i += 1;
            }
            // PostgreSQL: E'...' strings take backslash escapes.
            (Engine::Postgres, 'E' | 'e') if next == Some('\'') => {
                i = skip_quoted(i + 1, '\'', true, true).ok_or("unterminated E string")?;
            }
            (Engine::Postgres, '$') => {
                // $tag$ ... $tag$, or a parameter $1.
                let tag_end = (i + 1..chars.len()).find(|&j| chars[j] == '$');
                match tag_end {
                    Some(end)
                        if chars[i + 1..end]
                            .iter()
                            .all(|c| c.is_alphanumeric() || *c == '_') =>
                    {
                        return Err("dollar quoting".into());
                    }
                    _ => return Err("a '$' outside quotes".into()),
                }
            }
            (Engine::Mysql, '\'') => {
                i = skip_quoted(i, '\'', true, true).ok_or("unterminated string")?;
            }
            (_, '\'') => {
                i = skip_quoted(i, '\'', true, false).ok_or("unterminated string")?;
            }
            (_, '"') => {
                i = skip_quoted(i, '"', true, false).ok_or("unterminated quoted name")?;
            }
            // PostgreSQL has no backtick token: the statement is refused
            // whole, so nothing in it can run.
            (Engine::Postgres, '`') => return Ok(()),
            (Engine::Mysql | Engine::Sqlite, '`') => {
                i = skip_quoted(i, '`', true, false).ok_or("unterminated quoted name")?;
            }
            (Engine::Sqlite, '[') => {
                i = skip_quoted(i, ']', false, false).ok_or("unterminated [name]")?;
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    Ok(())
}

/// Random text from the characters that matter to quoting and structure.
fn fragment(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "'", "\"", "`", "[", "]", "(", ")", ";", "-", "/", "*", "#", "$", "\\", "E", "e", "a", "b",
        "1", " ", "=", ",", "OR", "AND", "''", "\"\"", "$$", "--", "/*", "*/", "\n", "æ", "x'",
        "N'", "1 = 1", "status", ".", ":", "_",
    ];
    let length = rng.random_range(0..24);
    (0..length)
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

#[test]
fn accepted_fragments_are_one_expression_on_every_engine() {
    let mut rng = StdRng::seed_from_u64(seed());
    let total = cases(200_000);
    let mut accepted = 0u64;
    for case in 0..total {
        let text = fragment(&mut rng);
        if glemsel::rules::check_sql_fragment(&text).is_err() {
            continue;
        }
        accepted += 1;
        for engine in [Engine::Postgres, Engine::Mysql, Engine::Sqlite] {
            if let Err(why) = structure(engine, &text) {
                panic!(
                    "seed {}, case {case}: the scanner accepted {text:?}, which {engine:?} reads otherwise: {why}",
                    seed()
                );
            }
        }
    }
    // The generator must reach the interesting part: accepted fragments.
    assert!(accepted > total / 50, "only {accepted} of {total} accepted");
    eprintln!("{total} fragments, {accepted} accepted, each one expression on every engine");
}

/// A valid rule file, to be mutated.
const RULES: &str = r#"[categories.contacts]
description = "Customer contact data"
legal_basis = "contract"

[[rule]]
id = "contacts"
store = "db"
table = "public.contacts"
category = "contacts"
after = { latest = ["contract_ended_at", "orders.placed_at"] }
retain = "36 months"
round_up_to = "financial_year_end"
where = "status = 'closed'"
hold = "legal_hold"
action = "pseudonymise"
columns = { email = "hmac_email", name = "hmac", phone = "null", note = "redact" }
max_rows = 500000

[[rule.join]]
name = "orders"
table = "orders"
on = { customer_id = "id" }
open = "paid_at IS NULL"
"#;

const CONFIG: &str = "timezone = \"Europe/Copenhagen\"\nfinancial_year_end = \"06-30\"\nrules = \"rules\"\n\n[stores.db]\nengine = \"postgres\"\nurl_env = \"DB_URL\"\n";

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => {
                const INSERTS: &[&[u8]] = &[
                    b"\"",
                    b"'",
                    b"[",
                    b"]",
                    b"{",
                    b"}",
                    b"=",
                    b"\n",
                    b"#",
                    b"\\",
                    b"0",
                    b"-1",
                    b"99999999999999999999",
                    b"[[rule]]\n",
                    b"\xff",
                    b"\xc3\xa6",
                    b"after = 1\n",
                ];
                for (k, b) in INSERTS[rng.random_range(0..INSERTS.len())]
                    .iter()
                    .enumerate()
                {
                    bytes.insert(at + k, *b);
                }
            }
            2 if at < bytes.len() => bytes[at] = rng.random(),
            _ => bytes.truncate(at),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_rule_loader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(dir.path().join("glemsel.toml"), CONFIG).unwrap();
    let config = dir.path().join("glemsel.toml");
    let mut rng = StdRng::seed_from_u64(seed());
    let total = cases(2_000);
    for case in 0..total {
        let text = mutate(&mut rng, RULES);
        std::fs::write(dir.path().join("rules").join("r.toml"), &text).unwrap();
        let loaded = std::panic::catch_unwind(|| glemsel::rules::load(&config));
        assert!(
            loaded.is_ok(),
            "seed {}, case {case}: the loader panicked on:\n{text}",
            seed()
        );
    }
}
