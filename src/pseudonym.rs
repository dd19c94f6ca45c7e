//! Keyed pseudonyms: HMAC-SHA256 tokens, the key they are made with, and
//! the exact shape a token has, so a re-run recognises its own work.
//!
//! Tokens are computed here, in the worker, never in the database: the key
//! (and anything derived from it, such as HMAC's padded key blocks) must not
//! reach a server, whose statement logs, binary logs, replicas and backups
//! are outside the circle that may re-identify people.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::generalise::DatePart;

/// Every token starts with this, which is also how a re-run recognises a
/// value that is already pseudonymised.
pub const TOKEN_PREFIX: &str = "psn_";
/// The domain of `hmac_email` tokens: reserved (RFC 2606), never delivered.
pub const EMAIL_SUFFIX: &str = "@invalid";
/// What `redact` writes, cut to the column's length.
pub const REDACTED: &str = "[redacted]";
/// Fewer hex digits than this (64 bits) would make tokens collide.
pub const MIN_TOKEN_HEX: usize = 16;
/// A key shorter than this is refused.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a key could not be loaded. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the HMAC key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the HMAC key in {path} is {len} bytes; at least {MIN_KEY_BYTES} are needed (for example: openssl rand -hex 32 > {path})"
    )]
    TooShort { path: PathBuf, len: usize },
}

/// The pseudonymisation key. Its bytes are never printed; `Debug` shows only the id.
#[derive(Clone)]
pub struct HmacKey {
    bytes: Vec<u8>,
    /// HMAC keyed once: each value's hash starts from a clone of it instead
    /// of deriving the pads from the key again.
    keyed: Hmac<Sha256>,
    id: String,
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl HmacKey {
    /// Reads a key file. Trailing line breaks and spaces are not part of the
    /// key, so `openssl rand -hex 32 > key` and an editor's newline agree.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let mut bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
            bytes.pop();
        }
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                path: path.to_path_buf(),
                len: bytes.len(),
            });
        }
        Ok(Self::from_bytes(bytes))
    }

    /// A key from raw bytes (tests and the demo).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes any key length");
        mac.update(b"glemsel key id");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        let keyed = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes any key length");
        Self { bytes, keyed, id }
    }

    /// A stable, non-secret id of the key, recorded in the audit trail so a
    /// key rotation is traceable.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A keyed hash for the audit trail, under a key derived from this one
    /// (never the pseudonym key itself, so trail entries do not equal the
    /// tokens in data tables). 16 hex digits.
    pub fn audit_hash(&self, text: &str) -> String {
        let mut derive =
            Hmac::<Sha256>::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        derive.update(b"glemsel audit key");
        let audit_key = derive.finalize().into_bytes();
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&audit_key).expect("HMAC takes any key length");
        mac.update(text.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// The reference HMAC-SHA256 of `value`'s UTF-8 bytes, as lowercase hex.
    pub fn hmac_hex(&self, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// What happens to one column of a pseudonymised or anonymised row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnAction {
    /// `psn_<hex>`: same value, same token, so joins survive.
    Hmac,
    /// `psn_<hex>@invalid`: a token that still looks like an e-mail address.
    HmacEmail,
    /// Set to NULL.
    Null,
    /// Replace with `[redacted]`.
    Redact,
    /// A date or wall-clock timestamp to the first instant of its year or
    /// month (computed in SQL).
    Truncate(DatePart),
    /// An IP address to its /24 (IPv4) or /48 (IPv6); anything else to the
    /// redacted text (computed in the worker).
    IpPrefix,
    /// The first N characters (computed in SQL).
    Prefix(u16),
}

impl ColumnAction {
    /// The actions a rule file may name, for messages.
    pub const NAMES: &'static str =
        "hmac, hmac_email, null, redact, year, month, ip_prefix or prefix:N";

    /// Reads a rule file's column action: `hmac`, `year`, `prefix:3`, ...
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "hmac" => ColumnAction::Hmac,
            "hmac_email" => ColumnAction::HmacEmail,
            "null" => ColumnAction::Null,
            "redact" => ColumnAction::Redact,
            "year" => ColumnAction::Truncate(DatePart::Year),
            "month" => ColumnAction::Truncate(DatePart::Month),
            "ip_prefix" => ColumnAction::IpPrefix,
            other => match other.strip_prefix("prefix:").map(str::parse::<u16>) {
                Some(Ok(n)) if n > 0 => ColumnAction::Prefix(n),
                Some(_) => {
                    return Err(format!(
                        "{other:?}: prefix:N keeps the first N characters, N a whole number from 1 to 65535"
                    ));
                }
                None => {
                    return Err(format!(
                        "unknown column action {other:?}; use {}",
                        Self::NAMES
                    ));
                }
            },
        })
    }

    /// The action as a rule file writes it.
    pub fn name(self) -> String {
        match self {
            ColumnAction::Prefix(n) => format!("prefix:{n}"),
            other => other.as_str().to_string(),
        }
    }

    /// The action's name; `prefix` without its length.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnAction::Hmac => "hmac",
            ColumnAction::HmacEmail => "hmac_email",
            ColumnAction::Null => "null",
            ColumnAction::Redact => "redact",
            ColumnAction::Truncate(part) => part.as_str(),
            ColumnAction::IpPrefix => "ip_prefix",
            ColumnAction::Prefix(_) => "prefix",
        }
    }

    /// Whether the action writes a keyed token (so needs the HMAC key, and
    /// its result is pseudonymised, not anonymised, data).
    pub fn is_keyed(self) -> bool {
        matches!(self, ColumnAction::Hmac | ColumnAction::HmacEmail)
    }

    /// Whether the new value is computed in the worker (and written back by
    /// key) rather than in SQL.
    pub fn in_worker(self) -> bool {
        matches!(
            self,
            ColumnAction::Hmac | ColumnAction::HmacEmail | ColumnAction::IpPrefix
        )
    }

    /// Whether the column must hold text.
    pub fn needs_text(self) -> bool {
        !matches!(self, ColumnAction::Null | ColumnAction::Truncate(_))
    }

    /// The shortest text column the action fits in.
    pub fn min_length(self) -> usize {
        match self {
            ColumnAction::Hmac => TOKEN_PREFIX.len() + MIN_TOKEN_HEX,
            ColumnAction::HmacEmail => TOKEN_PREFIX.len() + MIN_TOKEN_HEX + EMAIL_SUFFIX.len(),
            ColumnAction::Null | ColumnAction::Truncate(_) => 0,
            ColumnAction::Redact | ColumnAction::IpPrefix | ColumnAction::Prefix(_) => 1,
        }
    }
}

impl fmt::Display for ColumnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for ColumnAction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

/// The exact shape of the token written into one column, given its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenShape {
    pub prefix: &'static str,
    /// How many hex digits of the HMAC are kept (1–64).
    pub hex_len: usize,
    pub suffix: &'static str,
}

impl TokenShape {
    /// The token shape for a column of at most `max_len` characters
    /// (`None`: unbounded). `None` for actions that write no token.
    pub fn for_column(action: ColumnAction, max_len: Option<usize>) -> Option<Self> {
        let suffix = match action {
            ColumnAction::Hmac => "",
            ColumnAction::HmacEmail => EMAIL_SUFFIX,
            _ => return None,
        };
        let hex_len = match max_len {
            Some(len) => len
                .saturating_sub(TOKEN_PREFIX.len() + suffix.len())
                .min(64),
            None => 64,
        };
        Some(Self {
            prefix: TOKEN_PREFIX,
            hex_len,
            suffix,
        })
    }

    /// The reference token for `value`.
    pub fn token(&self, key: &HmacKey, value: &str) -> String {
        let digest = key.hmac_hex(value);
        format!("{}{}{}", self.prefix, &digest[..self.hex_len], self.suffix)
    }

    /// Whether `value` is exactly a token of this shape: the prefix, then
    /// `hex_len` lowercase hex digits, then the suffix, and nothing else.
    pub fn is_token(&self, value: &str) -> bool {
        value
            .strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_suffix(self.suffix))
            .is_some_and(|hex| {
                hex.len() == self.hex_len
                    && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    }

    /// A POSIX regular expression (PostgreSQL's) that matches exactly what
    /// [`TokenShape::is_token`] accepts.
    pub fn regex(&self) -> String {
        self.regex_ending("$")
    }

    /// The same with another end-of-text anchor: PCRE (MariaDB) needs
    /// `\z`, as its `$` also matches before a final newline.
    pub fn regex_ending(&self, end: &str) -> String {
        format!(
            "^{}[0-9a-f]{{{}}}{}{end}",
            escape_regex(self.prefix),
            self.hex_len,
            escape_regex(self.suffix)
        )
    }

    /// A token's length in characters.
    pub fn char_len(&self) -> usize {
        self.prefix.chars().count() + self.hex_len + self.suffix.chars().count()
    }

    /// A POSIX regular expression that, on a text of [`Self::char_len`]
    /// characters, matches exactly what [`TokenShape::is_token`] accepts.
    /// PostgreSQL's engine takes some 20 µs a row for the bounded `{n}` of
    /// [`Self::regex`] on a token (a table already pseudonymised is read
    /// at a few thousand rows a second); unbounded it is several times
    /// faster, and the length checks the count.
    pub fn regex_any_length(&self) -> String {
        format!(
            "^{}[0-9a-f]*{}$",
            escape_regex(self.prefix),
            escape_regex(self.suffix)
        )
    }

    /// An SQLite GLOB pattern that matches exactly what
    /// [`TokenShape::is_token`] accepts (GLOB is case-sensitive and anchored).
    pub fn glob(&self) -> String {
        format!(
            "{}{}{}",
            escape_glob(self.prefix),
            "[0-9a-f]".repeat(self.hex_len),
            escape_glob(self.suffix)
        )
    }
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' && c != '@' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The text `redact` writes into a column of at most `max_len` characters.
pub fn redacted_text(max_len: Option<usize>) -> String {
    REDACTED
        .chars()
        .take(max_len.unwrap_or(usize::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HmacKey {
        HmacKey::from_bytes(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    /// RFC 4231 test case 2 pins the reference to the standard.
    #[test]
    fn reference_is_standard_hmac_sha256() {
        let key = HmacKey::from_bytes(b"Jefe".to_vec());
        assert_eq!(
            key.hmac_hex("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The keyed state is cloned per value: no value's bytes carry over to
    /// the next, and a key longer than SHA-256's block is hashed first
    /// (RFC 4231 test case 6).
    #[test]
    fn each_value_starts_from_the_keyed_state() {
        let key = HmacKey::from_bytes(b"Jefe".to_vec());
        let standard = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_ne!(key.hmac_hex("something else"), standard);
        assert_eq!(key.hmac_hex("what do ya want for nothing?"), standard);
        assert_eq!(key.hmac_hex("what do ya want for nothing?"), standard);
        let long = HmacKey::from_bytes(vec![0xaa; 131]);
        assert_eq!(
            long.hmac_hex("Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn token_shapes_fit_the_column() {
        let shape = TokenShape::for_column(ColumnAction::Hmac, None).unwrap();
        assert_eq!(shape.hex_len, 64);
        let token = shape.token(&key(), "Jens Hansen");
        assert_eq!(token.len(), 68);
        assert!(token.starts_with("psn_"));

        let shape = TokenShape::for_column(ColumnAction::Hmac, Some(30)).unwrap();
        assert_eq!(shape.token(&key(), "Jens Hansen").len(), 30);

        let shape = TokenShape::for_column(ColumnAction::HmacEmail, Some(40)).unwrap();
        let token = shape.token(&key(), "jens@example.invalid");
        assert_eq!(token.len(), 40);
        assert!(token.ends_with("@invalid"));
        assert_eq!(shape.regex(), format!("^psn_[0-9a-f]{{28}}@invalid$"));
        assert_eq!(
            shape.glob(),
            format!("psn_{}@invalid", "[0-9a-f]".repeat(28))
        );
        assert!(TokenShape::for_column(ColumnAction::Null, Some(40)).is_none());
        assert_eq!(redacted_text(Some(4)), "[red");
        assert_eq!(redacted_text(None), "[redacted]");
    }

    /// Only the exact shape counts as done: a look-alike must still be
    /// pseudonymised, or it escapes the rule.
    #[test]
    fn only_the_exact_token_shape_is_a_token() {
        let shape = TokenShape::for_column(ColumnAction::HmacEmail, Some(40)).unwrap();
        let token = shape.token(&key(), "jens@example.invalid");
        assert!(shape.is_token(&token));
        let hex = &token[4..32];
        for look_alike in [
            format!("psn_{}@invalid", hex.to_uppercase()),
            format!("psn_{}x@invalid", &hex[1..]),
            format!("psn_{hex}0@invalid"),
            format!("psn_{}@invalid", &hex[1..]),
            format!("psn_{hex}@invalid "),
            format!("psn_{hex}"),
            format!("psnx{hex}@invalid"),
            format!("psn_{}@invalid", "æ".repeat(28)),
            "psn_jens.hansen.private.mail.xyz@invalid".to_string(),
        ] {
            assert!(!shape.is_token(&look_alike), "{look_alike}");
        }
        // The regular expressions the servers test with agree.
        let exact = regex::Regex::new(&shape.regex()).unwrap();
        let any_length = regex::Regex::new(&shape.regex_any_length()).unwrap();
        let by_length =
            |text: &str| text.chars().count() == shape.char_len() && any_length.is_match(text);
        assert!(exact.is_match(&token) && by_length(&token));
        for look_alike in [
            format!("psn_{}@invalid", hex.to_uppercase()),
            format!("psn_{}x@invalid", &hex[1..]),
            format!("psn_{hex}0@invalid"),
            format!("psn_{}@invalid", &hex[1..]),
            format!("psn_{}@invalid", "æ".repeat(28)),
            format!("psn_{hex}"),
        ] {
            assert!(!exact.is_match(&look_alike), "{look_alike}");
            assert!(!by_length(&look_alike), "{look_alike}");
        }
        let plain = TokenShape::for_column(ColumnAction::Hmac, Some(20)).unwrap();
        assert!(plain.is_token("psn_0123456789abcdef"));
        assert!(!plain.is_token("psn_0123456789abcdeg"));
        assert!(!plain.is_token("psn_0123456789abcde"));
    }

    /// The audit trail's key hashes: a keyed HMAC under a key derived from
    /// the pseudonym key, 16 hex digits, pinned so a change is a decision.
    #[test]
    fn audit_hashes_are_pinned() {
        let key = key();
        assert_eq!(key.audit_hash("42"), "4d3f2c9f55133a71");
        assert_eq!(key.audit_hash("jens@example.invalid"), "1bb39a1fc4191b20");
        assert_eq!(key.audit_hash(""), "9e8d16917d5941f5");
        assert_eq!(key.id(), "295694c8edbbb224");
        // Never the data token's digits, so a trail row does not equal a token.
        assert!(!key.hmac_hex("42").starts_with(&key.audit_hash("42")));
        let other = HmacKey::from_bytes(b"fedcba9876543210fedcba9876543210".to_vec());
        assert_ne!(other.audit_hash("42"), key.audit_hash("42"));
    }

    /// What `check` holds each action's column to.
    #[test]
    fn text_and_length_needs_of_each_action() {
        let cases = [
            (ColumnAction::Hmac, true, 20),
            (ColumnAction::HmacEmail, true, 28),
            (ColumnAction::Null, false, 0),
            (ColumnAction::Redact, true, 1),
            (ColumnAction::Truncate(DatePart::Year), false, 0),
            (ColumnAction::Truncate(DatePart::Month), false, 0),
            (ColumnAction::IpPrefix, true, 1),
            (ColumnAction::Prefix(3), true, 1),
        ];
        for (action, text, min) in cases {
            assert_eq!(action.needs_text(), text, "{action}");
            assert_eq!(action.min_length(), min, "{action}");
        }
        // The shortest column each token action takes still gets 16 hex digits.
        for action in [ColumnAction::Hmac, ColumnAction::HmacEmail] {
            let shape = TokenShape::for_column(action, Some(action.min_length())).unwrap();
            assert_eq!(shape.hex_len, MIN_TOKEN_HEX, "{action}");
        }
    }

    /// GLOB's wildcards in a prefix or suffix match only themselves.
    #[test]
    fn glob_escapes_its_wildcards() {
        assert_eq!(escape_glob("a*b?c[d]e@_"), "a[*]b[?]c[[]d]e@_");
        let shape = TokenShape {
            prefix: "p*?_",
            hex_len: 2,
            suffix: "[x]",
        };
        assert_eq!(shape.glob(), "p[*][?]_[0-9a-f][0-9a-f][[]x]");
    }

    #[test]
    fn key_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "too short\n").unwrap();
        let err = HmacKey::from_file(&short).unwrap_err().to_string();
        assert!(err.contains("9 bytes"), "{err}");
        assert!(
            !err.contains("too short"),
            "the key must not be echoed: {err}"
        );

        // The bound exactly: 31 bytes refused, 32 taken (a trailing
        // newline is not part of the key).
        let edge = dir.path().join("edge");
        std::fs::write(&edge, format!("{}\n", "k".repeat(MIN_KEY_BYTES - 1))).unwrap();
        let err = HmacKey::from_file(&edge).unwrap_err().to_string();
        assert!(err.contains("31 bytes"), "{err}");
        std::fs::write(&edge, format!("{}\n", "k".repeat(MIN_KEY_BYTES))).unwrap();
        HmacKey::from_file(&edge).unwrap();

        let missing = HmacKey::from_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(missing, KeyError::Read { .. }));

        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "ab".repeat(32))).unwrap();
        let key = HmacKey::from_file(&good).unwrap();
        assert_eq!(
            key.hmac_hex("x"),
            HmacKey::from_bytes("ab".repeat(32).into_bytes()).hmac_hex("x")
        );
        assert_eq!(key.id().len(), 16);
        // Debug shows the id and nothing of the key.
        assert_eq!(
            format!("{key:?}"),
            format!("HmacKey {{ id: {:?}, .. }}", key.id())
        );
    }
}
