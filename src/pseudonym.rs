//! Keyed pseudonyms: HMAC-SHA256 tokens, the key they are made with, and
//! the Rust reference every database's SQL must agree with.
//!
//! The databases compute tokens set-based, in SQL. HMAC is two SHA-256
//! calls over the key XOR-ed with fixed pads, so Rust derives the two
//! 64-byte pad blocks once and binds them as parameters; the SQL only
//! concatenates and hashes. The key itself never leaves this process.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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

const BLOCK: usize = 64;

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
        Self { bytes, id }
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

    /// The two blocks HMAC hashes the message and the inner digest with:
    /// `(key' XOR ipad, key' XOR opad)`, where key' is the key (or its
    /// SHA-256 when longer than a block) padded with zeros to 64 bytes.
    pub fn pad_blocks(&self) -> PadBlocks {
        let mut padded = [0u8; BLOCK];
        if self.bytes.len() > BLOCK {
            padded[..32].copy_from_slice(&Sha256::digest(&self.bytes));
        } else {
            padded[..self.bytes.len()].copy_from_slice(&self.bytes);
        }
        PadBlocks {
            inner: padded.iter().map(|b| b ^ 0x36).collect(),
            outer: padded.iter().map(|b| b ^ 0x5c).collect(),
        }
    }

    /// The reference HMAC-SHA256 of `value`'s UTF-8 bytes, as lowercase hex.
    pub fn hmac_hex(&self, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.bytes).expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Derived key material bound into SQL. Secret: never log it.
pub struct PadBlocks {
    pub inner: Vec<u8>,
    pub outer: Vec<u8>,
}

impl fmt::Debug for PadBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PadBlocks(..)")
    }
}

/// What happens to one column of a pseudonymised row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnAction {
    /// `psn_<hex>`: same value, same token, so joins survive.
    Hmac,
    /// `psn_<hex>@invalid`: a token that still looks like an e-mail address.
    HmacEmail,
    /// Set to NULL.
    Null,
    /// Replace with `[redacted]`.
    Redact,
}

impl ColumnAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnAction::Hmac => "hmac",
            ColumnAction::HmacEmail => "hmac_email",
            ColumnAction::Null => "null",
            ColumnAction::Redact => "redact",
        }
    }

    /// Whether the column must hold text.
    pub fn needs_text(self) -> bool {
        !matches!(self, ColumnAction::Null)
    }

    /// The shortest text column the action fits in.
    pub fn min_length(self) -> usize {
        match self {
            ColumnAction::Hmac => TOKEN_PREFIX.len() + MIN_TOKEN_HEX,
            ColumnAction::HmacEmail => TOKEN_PREFIX.len() + MIN_TOKEN_HEX + EMAIL_SUFFIX.len(),
            ColumnAction::Null => 0,
            ColumnAction::Redact => 1,
        }
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
            ColumnAction::Null | ColumnAction::Redact => return None,
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

    /// A LIKE pattern (with `!` as the escape character) that matches
    /// exactly the tokens of this shape, length included, so values already
    /// pseudonymised are left alone and look-alikes are not.
    pub fn like_pattern(&self) -> String {
        format!(
            "{}{}{}",
            escape_like(self.prefix),
            "_".repeat(self.hex_len),
            escape_like(self.suffix)
        )
    }
}

/// The escape character used by every LIKE pattern glemsel binds.
pub const LIKE_ESCAPE: &str = "!";

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
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

    /// The pad blocks reproduce the hmac crate's HMAC with two plain SHA-256
    /// calls, which is exactly what the SQL does.
    #[test]
    fn pad_blocks_reproduce_hmac() {
        for key in [
            key(),
            HmacKey::from_bytes(vec![7u8; 64]),
            HmacKey::from_bytes((0..200).map(|i| i as u8).collect()),
        ] {
            let blocks = key.pad_blocks();
            for value in ["", "a", "Søren Æbelø", "😀 emoji", &"x".repeat(10_000)] {
                let inner = Sha256::new()
                    .chain_update(&blocks.inner)
                    .chain_update(value.as_bytes())
                    .finalize();
                let outer = Sha256::new()
                    .chain_update(&blocks.outer)
                    .chain_update(inner)
                    .finalize();
                assert_eq!(hex::encode(outer), key.hmac_hex(value));
            }
        }
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
        assert_eq!(
            shape.like_pattern(),
            format!("psn!_{}@invalid", "_".repeat(28))
        );
        assert!(TokenShape::for_column(ColumnAction::Null, Some(40)).is_none());
        assert_eq!(redacted_text(Some(4)), "[red");
        assert_eq!(redacted_text(None), "[redacted]");
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
        assert!(!format!("{key:?}").contains("abab"));
    }
}
