//! A 16-byte UUID, stored on the media in RFC 4122 byte order.
//!
//! Only what the format needs: random generation (v4), the canonical text form
//! and parsing the text form sysfs gives for NVDIMM namespaces.

use std::fmt;
use std::io::Read;

/// A UUID as 16 bytes in the order they are printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, which the format uses for "none".
    pub const NIL: Uuid = Uuid([0; 16]);

    /// A random (version 4) UUID from the kernel's CSPRNG.
    pub fn random() -> std::io::Result<Uuid> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        Ok(Uuid(bytes))
    }

    /// Whether this is the nil UUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// Parse the canonical `8-4-4-4-12` hex form (case-insensitive).
    pub fn parse(text: &str) -> Option<Uuid> {
        let text = text.trim();
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return None;
        }
        let hex: String = groups.concat();
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2)?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
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

impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Uuid::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("not a uuid: {text}")))
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
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn random_is_v4_and_distinct() {
        let a = Uuid::random().expect("urandom");
        let b = Uuid::random().expect("urandom");
        assert_ne!(a, b);
        assert_eq!(a.0[6] >> 4, 4);
        assert_eq!(a.0[8] >> 6, 0b10);
        assert!(!a.is_nil());
        assert!(Uuid::NIL.is_nil());
    }
}
