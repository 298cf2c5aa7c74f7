//! Sizes as users type and read them.
//!
//! One grammar for every size argument, the one coreutils (`truncate -s`,
//! `dd`) and ndctl users already know: a whole number of bytes, or a whole
//! number with a suffix, case ignored —
//!
//! - `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB`: powers of 1024
//!   (`512M` = `512MiB` = 536870912, as `truncate -s 512M` and ndctl);
//! - `KB`, `MB`, `GB`, `TB`: powers of 1000 (`512MB` = 512000000, as
//!   `truncate -s 512MB`) — reading them as binary would hand a user who
//!   typed coreutils' spelling 37 MiB more than they asked for;
//! - `B`: bytes.
//!
//! Fractions, signs, hex and spaces inside are refused with the grammar in
//! the message. What a layout rounds a size to is said where it happens
//! (`layout`), quoting the size as typed.

use std::fmt;

/// The grammar, for help texts and messages.
pub const GRAMMAR: &str = "bytes, or a whole number with K, M, G, T (or KiB, MiB, GiB, TiB: powers of 1024, e.g. 512M = 536870912) or KB, MB, GB, TB (powers of 1000, as coreutils: 512MB = 512000000)";

/// A size argument that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size '{0}': give {GRAMMAR}")]
    Syntax(String),
    #[error("size '{0}' is too large (more than 16 EiB)")]
    Overflow(String),
}

/// Parse a size in the module's grammar: `512M`, `2G`, `4096`, `64KiB`
/// (binary), `512MB` (decimal).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let unit: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KIB" => 1 << 10,
        "M" | "MIB" => 1 << 20,
        "G" | "GIB" => 1 << 30,
        "T" | "TIB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(SizeError::Syntax(text.to_string())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    value
        .checked_mul(unit)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

/// A size for a message that compares it with another: [`Human`] when
/// that is exact, else the exact byte count with the rounded form beside it
/// (`5905580032 bytes (5.50 GiB)`), so two different sizes never read the
/// same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exact(pub u64);

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if Human(self.0).is_exact() {
            write!(f, "{}", Human(self.0))
        } else {
            write!(f, "{} bytes ({})", self.0, Human(self.0))
        }
    }
}

/// A byte count for people: exact with a binary suffix when it divides evenly
/// (`512 MiB`), otherwise two decimals (`1.50 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub u64);

impl Human {
    const UNITS: [(&'static str, u32); 5] = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];

    /// Whether the display is the exact value (no decimals).
    pub fn is_exact(self) -> bool {
        Human::UNITS
            .iter()
            .find(|(_, shift)| self.0 >= 1u64 << shift)
            .is_none_or(|(_, shift)| self.0.is_multiple_of(1u64 << shift))
    }
}

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, shift) in Human::UNITS {
            let scale = 1u64 << shift;
            if bytes >= scale {
                if bytes.is_multiple_of(scale) {
                    return write!(f, "{} {unit}", bytes >> shift);
                }
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "two decimals of a size for display"
                )]
                let value = bytes as f64 / scale as f64;
                return write!(f, "{value:.2} {unit}");
            }
        }
        write!(f, "{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_suffixes() {
        assert_eq!(parse_size("512M"), Ok(536_870_912));
        assert_eq!(parse_size("512m"), Ok(536_870_912));
        assert_eq!(parse_size("512MiB"), Ok(536_870_912));
        assert_eq!(parse_size("512mib"), Ok(536_870_912));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size(" 8M "), Ok(8 << 20));
        assert_eq!(parse_size("64B"), Ok(64));
    }

    #[test]
    fn si_suffixes_are_powers_of_ten_as_in_coreutils() {
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("512mb"), Ok(512_000_000));
        assert_eq!(parse_size("4KB"), Ok(4_000));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
    }

    #[test]
    fn exact_sizes_never_read_the_same_when_they_differ() {
        let a = (11 << 29) + (2 << 20);
        let b = 11 << 29;
        assert_eq!(Human(a).to_string(), Human(b).to_string());
        assert_ne!(Exact(a).to_string(), Exact(b).to_string());
        assert_eq!(Exact(4 << 20).to_string(), "4 MiB");
        assert_eq!(Exact(a).to_string(), format!("{a} bytes (5.50 GiB)"));
    }

    #[test]
    fn rejects_garbage_with_a_helpful_message() {
        for bad in ["", "M", "12X", "1.5G", "-1", "0x10", "10 M", "5MM"] {
            let err = parse_size(bad).expect_err(bad);
            assert!(matches!(err, SizeError::Syntax(_)), "{bad}");
            assert!(err.to_string().contains("512M"));
        }
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("17000000T"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(Human(512 << 20).to_string(), "512 MiB");
        assert_eq!(Human(3 << 29).to_string(), "1.50 GiB");
        assert_eq!(Human(4096).to_string(), "4 KiB");
        assert_eq!(Human(100).to_string(), "100 B");
    }
}
