//! A 16-byte UUID, stored on the media in RFC 4122 byte order.
//!
//! Only what the format needs: the canonical text form and parsing the text
//! form sysfs gives for NVDIMM namespaces. Making a random one needs the
//! platform's random source, so that lives with the caller (the server's
//! `format::random_uuid`).

use core::fmt;

/// A UUID as 16 bytes in the order they are printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

/// Where the four dashes of the canonical `8-4-4-4-12` form are.
const DASHES: [usize; 4] = [8, 13, 18, 23];
/// Length of the canonical text form.
const TEXT_LEN: usize = 36;

/// The value of one hex digit.
const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Uuid {
    /// The all-zero UUID, which the format uses for "none".
    pub const NIL: Uuid = Uuid([0; 16]);

    /// Whether this is the nil UUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Make a random (version 4, RFC 4122 variant) UUID of 16 random bytes.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Uuid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        Uuid(bytes)
    }

    /// Parse the canonical `8-4-4-4-12` hex form (case-insensitive,
    /// surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<Uuid> {
        let text = text.trim().as_bytes();
        if text.len() != TEXT_LEN {
            return None;
        }
        let mut digits = [0u8; 32];
        let mut count = 0;
        for (i, &c) in text.iter().enumerate() {
            if DASHES.contains(&i) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            *digits.get_mut(count)? = hex_digit(c)?;
            count += 1;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_chunks::<2>().0) {
            *byte = (pair[0] << 4) | pair[1];
        }
        Some(Uuid(bytes))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        /// Accepts a string in the canonical form, borrowed or not.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Uuid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a uuid")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Uuid, E> {
                Uuid::parse(text)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let text = "0f2d4c1e-9a3b-4c5d-8e7f-102132435465";
        let uuid = Uuid::parse(text).expect("parses");
        assert_eq!(uuid.to_string(), text);
        assert_eq!(Uuid::parse(&text.to_uppercase()), Some(uuid));
        assert_eq!(
            Uuid::parse(" 0f2d4c1e-9a3b-4c5d-8e7f-102132435465\n"),
            Some(uuid)
        );
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "0f2d4c1e9a3b4c5d8e7f102132435465",
            "0f2d4c1e-9a3b-4c5d-8e7f-10213243546",
            "0f2d4c1e-9a3b-4c5d-8e7f-10213243546g",
            "0f2d4c1e-9a3b-4c5d-8e7f1-02132435465",
            "+f2d4c1e-9a3b-4c5d-8e7f-102132435465",
            "0f2d4c1e-9a3b-4c5d-8e7f-1021324354650",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_bytes_become_v4() {
        for fill in [0x00u8, 0xFF, 0x5A] {
            let a = Uuid::from_random_bytes([fill; 16]);
            assert_eq!(a.0[6] >> 4, 4);
            assert_eq!(a.0[8] >> 6, 0b10);
            assert!(!a.is_nil());
        }
        assert!(Uuid::NIL.is_nil());
    }
}
