//! Sizes as users type and read them: bytes, or a number with a binary suffix.

use std::fmt;

/// A size argument that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "invalid size '{0}': give bytes or a number with K, M, G or T (binary, e.g. 512M = 536870912)"
    )]
    Syntax(String),
    #[error("size '{0}' is too large (more than 16 EiB)")]
    Overflow(String),
}

/// Parse `512M`, `2G`, `4096`, `1t`, `64KiB`: binary multiples.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(SizeError::Syntax(text.to_string())),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_string()))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(text.to_string()))
}

/// A byte count for people: exact with a binary suffix when it divides evenly
/// (`512 MiB`), otherwise two decimals (`1.50 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human(pub u64);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 5] = [
            ("PiB", 50),
            ("TiB", 40),
            ("GiB", 30),
            ("MiB", 20),
            ("KiB", 10),
        ];
        let bytes = self.0;
        for (unit, shift) in UNITS {
            let scale = 1u64 << shift;
            if bytes >= scale {
                if bytes.is_multiple_of(scale) {
                    return write!(f, "{} {unit}", bytes >> shift);
                }
                // Precision loss in the float is fine for display.
                #[allow(clippy::cast_precision_loss)]
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
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size(" 8M "), Ok(8 << 20));
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
