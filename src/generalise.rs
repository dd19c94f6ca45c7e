//! Generalisations: what `anonymise` (and `pseudonymise`) write where a
//! value must stay useful but must no longer identify anyone.
//!
//! * `year` and `month` truncate a date or a wall-clock timestamp to the
//!   first instant of its year or month. They are computed in SQL by each
//!   dialect; this module only names the unit.
//! * `ip_prefix` keeps an IPv4 address's /24 (`192.0.2.17` → `192.0.2.0`)
//!   and an IPv6 address's /48 (`2001:db8:1:2::5` → `2001:db8:1::`). It is
//!   computed here, in the worker, like tokens: text that is no IP address
//!   becomes the redacted text. Done is "the value is already what
//!   [`ip_prefix`] would write", and the SQL check ([`ip_prefix_regex`])
//!   must agree with [`is_ip_prefix_done`] exactly, on every engine; a test
//!   runs the same values through both.
//! * `prefix:N` keeps the first N characters (a postcode to its region),
//!   computed in SQL.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The part of a date a `year` or `month` generalisation keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatePart {
    Year,
    Month,
}

impl DatePart {
    pub fn as_str(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
        }
    }
}

/// The text `ip_prefix` writes for `value` in a column of at most
/// `max_len` characters (`None`: unbounded), with `redacted` for what is
/// no IP address (or would not fit).
///
/// Surrounding whitespace is ignored when reading the address; anything
/// else that [`std::net`] does not read as one address (a port, a /mask,
/// a zone, a list) is no address.
pub fn ip_prefix(value: &str, max_len: Option<usize>, redacted: &str) -> String {
    let prefix = match parse_ip(value) {
        Some(Ip::V4(v4)) => Some(v4_prefix(v4)),
        Some(Ip::V6(v6)) => Some(match v6.to_ipv4_mapped() {
            // An IPv4 client seen through an IPv6 socket: its /24, in the
            // mapped form it came in.
            Some(v4) => format!("::ffff:{}", v4_prefix(v4)),
            None => v6_prefix(v6),
        }),
        None => None,
    };
    match prefix {
        Some(prefix) if max_len.is_none_or(|max| prefix.chars().count() <= max) => prefix,
        _ => redacted.to_string(),
    }
}

/// Whether `value` is already what [`ip_prefix`] writes for it, so a re-run
/// leaves it alone.
pub fn is_ip_prefix_done(value: &str, max_len: Option<usize>, redacted: &str) -> bool {
    ip_prefix(value, max_len, redacted) == value
}

enum Ip {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

fn parse_ip(value: &str) -> Option<Ip> {
    let text = value.trim();
    if let Ok(v4) = text.parse::<Ipv4Addr>() {
        return Some(Ip::V4(v4));
    }
    text.parse::<Ipv6Addr>().ok().map(Ip::V6)
}

fn v4_prefix(v4: Ipv4Addr) -> String {
    let [a, b, c, _] = v4.octets();
    format!("{a}.{b}.{c}.0")
}

/// The /48 of an address in RFC 5952's canonical text: lowercase hex
/// without leading zeros, and the zero groups from the fourth on (the
/// longest run of zeros, always) written as `::`. The text is built here
/// rather than by `Display`, so the regular expression that recognises it
/// depends on nothing but this function.
fn v6_prefix(v6: Ipv6Addr) -> String {
    let segments = v6.segments();
    let mut head: Vec<u16> = segments[..3].to_vec();
    // Zeros before the run of zeros join it: 2001:0:0:: is 2001::.
    while head.last() == Some(&0) {
        head.pop();
    }
    let head: Vec<String> = head.iter().map(|g| format!("{g:x}")).collect();
    format!("{}::", head.join(":"))
}

/// A regular expression (PostgreSQL ARE and PCRE alike, given the end
/// anchor the dialect needs) that matches exactly the values
/// [`is_ip_prefix_done`] accepts for a column without a length limit:
/// a /24 or /48 prefix as [`ip_prefix`] writes it, or the redacted text.
///
/// `end` is the end-of-text anchor: `$` on PostgreSQL; `\z` for PCRE
/// (MariaDB), where `$` would also match before a final newline.
pub fn ip_prefix_regex(redacted: &str, end: &str) -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
    let v4 = format!("{octet}\\.{octet}\\.{octet}\\.0");
    let group = "(0|[1-9a-f][0-9a-f]{0,3})";
    let nonzero = "[1-9a-f][0-9a-f]{0,3}";
    let v6 = format!("{group}:{group}:{nonzero}::|{group}:{nonzero}::|{nonzero}::|::");
    format!("^({v4}|::ffff:{v4}|{v6}|{}){end}", escape_regex(redacted))
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() && c != ' ' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Values on which the SQL "already generalised" checks and the worker's
/// must agree: the edge cases of the IP-prefix shape. Shared by the unit
/// test here and the engine test in `tests/anonymise.rs`.
#[doc(hidden)]
pub const IP_EDGE_CASES: &[&str] = &[
    "192.0.2.0",
    "192.0.2.17",
    "0.0.0.0",
    "255.255.255.0",
    "256.1.1.0",
    "01.2.3.0",
    "1.2.3.00",
    "1.2.3.0 ",
    " 1.2.3.0",
    "1.2.3.0\n",
    "1.2.3",
    "1.2.3.0.0",
    "::",
    "::1",
    ":::",
    "2001:db8:1::",
    "2001:DB8:1::",
    "2001:0db8:1::",
    "2001:db8:0::",
    "2001:db8::",
    "2001::",
    "0:0:1::",
    "0:0:0::",
    "0::",
    "0:1::",
    "1:0:1::",
    "2001:db8:1:0::",
    "2001:db8:1::1",
    "12345::",
    "ffff:ffff:ffff::",
    "::ffff:1.2.3.0",
    "::ffff:1.2.3.4",
    "::FFFF:1.2.3.0",
    "::ffff:0:0",
    "[redacted]",
    "[REDACTED]",
    "[redacted] ",
    "[redacted]\n",
    "x[redacted]",
    "",
    "psn_0123456789abcdef",
    "fe80::",
    "fe80::1%eth0",
    "0:0:0:0:0:0:0:0",
    "::0.0.0.0",
    "2001:db8::\n",
    "Ⅻ.1.2.0",
    "１.2.3.0",
];

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "[redacted]";

    #[test]
    fn ipv4_keeps_its_24() {
        assert_eq!(ip_prefix("192.0.2.17", None, R), "192.0.2.0");
        assert_eq!(ip_prefix(" 10.1.2.3\n", None, R), "10.1.2.0");
        assert_eq!(ip_prefix("192.0.2.0", None, R), "192.0.2.0");
        assert_eq!(ip_prefix("255.255.255.255", None, R), "255.255.255.0");
        // Leading zeros, ports, masks and lists are no address.
        for not_one in [
            "010.1.2.3",
            "192.0.2.1:443",
            "192.0.2.0/24",
            "1.2.3",
            "1.2.3.4, 5.6.7.8",
            "",
            "localhost",
            "[redacted]",
        ] {
            assert_eq!(ip_prefix(not_one, None, R), R, "{not_one:?}");
        }
    }

    #[test]
    fn ipv6_keeps_its_48() {
        for (value, prefix) in [
            ("2001:db8:1:2::5", "2001:db8:1::"),
            ("2001:DB8:0001:0002:0:0:0:5", "2001:db8:1::"),
            ("2001:db8::1", "2001:db8::"),
            ("2001:0:0:1::", "2001::"),
            ("0:0:1:2:3:4:5:6", "0:0:1::"),
            ("0:1:0::", "0:1::"),
            ("0:1:2::9", "0:1:2::"),
            ("::1", "::"),
            ("::", "::"),
            ("fe80::1", "fe80::"),
            (
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                "ffff:ffff:ffff::",
            ),
            // IPv4 seen through an IPv6 socket: its /24.
            ("::ffff:192.0.2.17", "::ffff:192.0.2.0"),
            ("::FFFF:c000:0211", "::ffff:192.0.2.0"),
        ] {
            assert_eq!(ip_prefix(value, None, R), prefix, "{value}");
            // The prefix is what std's Display writes for the same address.
            let written: Ipv6Addr = prefix.parse().unwrap();
            assert_eq!(written.to_string(), prefix, "{value}");
        }
        for not_one in [
            "fe80::1%eth0",
            "2001:db8::/32",
            "[2001:db8::1]:443",
            "1:2:3:4:5:6:7:8:9",
        ] {
            assert_eq!(ip_prefix(not_one, None, R), R, "{not_one:?}");
        }
    }

    #[test]
    fn a_prefix_that_does_not_fit_is_redacted() {
        assert_eq!(
            ip_prefix("::ffff:a:b", Some(10), "[redacted]"),
            "[redacted]"
        );
        assert_eq!(ip_prefix("::ffff:a:b", Some(20), R), "::ffff:0.10.0.0");
        assert_eq!(ip_prefix("garbage", Some(4), "[red"), "[red");
    }

    /// The values the regular expression and the Rust check are compared
    /// on (`tests/anonymise.rs` compares the engines on a corpus like it).
    fn corpus() -> Vec<String> {
        let mut values: Vec<String> = IP_EDGE_CASES.iter().map(|s| s.to_string()).collect();
        // Every generalised form of a spread of addresses is done.
        for raw in [
            "198.51.100.7",
            "2001:db8:abcd:12::1",
            "::ffff:203.0.113.9",
            "::2",
        ] {
            values.push(ip_prefix(raw, None, R));
        }
        // And random addresses, their prefixes, and near misses of both.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let bits = u128::from(next()) << 64 | u128::from(next());
            // Short groups and zeros are common in real addresses.
            let masked = bits
                & u128::from(next() as u16).wrapping_mul(0x0001_0001_0001_0001_0001_0001_0001_0001);
            for v6 in [Ipv6Addr::from(bits), Ipv6Addr::from(masked)] {
                let prefix = ip_prefix(&v6.to_string(), None, R);
                values.push(v6.to_string());
                values.push(prefix.replace("::", ":0::"));
                values.push(prefix.to_uppercase());
                values.push(prefix);
            }
            let v4 = Ipv4Addr::from(next() as u32);
            values.push(v4.to_string());
            values.push(ip_prefix(&v4.to_string(), None, R));
        }
        values
    }

    /// The pattern the servers test and the worker's check agree on every
    /// value of the corpus (read here by the `regex` crate, whose `$` is
    /// PostgreSQL's: the end of the text).
    #[test]
    fn the_regex_agrees_with_the_check() {
        let pattern = regex::Regex::new(&ip_prefix_regex(R, "$")).unwrap();
        let pcre = regex::Regex::new(&ip_prefix_regex(R, "\\z")).unwrap();
        let mut done = 0;
        for value in corpus() {
            let expected = is_ip_prefix_done(&value, None, R);
            assert_eq!(pattern.is_match(&value), expected, "{value:?}");
            assert_eq!(pcre.is_match(&value), expected, "{value:?}");
            done += usize::from(expected);
        }
        assert!(done > 2_000, "{done}");
        assert!(is_ip_prefix_done("2001:db8:1::", None, R));
        assert!(!is_ip_prefix_done("2001:db8:1::1", None, R));
        assert!(!is_ip_prefix_done("2001:DB8:1::", None, R));
        assert!(!is_ip_prefix_done("[redacted] ", None, R));
        assert!(!is_ip_prefix_done("1.2.3.0 ", None, R));
    }
}
