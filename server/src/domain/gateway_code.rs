//! Gateway codes: the one-time codes an approved applicant types at a
//! gateway. A code is 24 Crockford base32 characters shown in groups of four
//! (`K7Q2-9MZX-...`): the first group is the public selector that finds the
//! stored row, the other 20 characters (100 bits from the OS CSPRNG) are the
//! secret, of which only a SHA-256 digest is stored. Typing is forgiving:
//! case, dashes and spaces do not matter, and `O`, `I`, `L` read as `0`, `1`,
//! `1`.

use std::fmt;

use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

/// Crockford's base32 alphabet: no I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of the selector (20 bits).
pub const SELECTOR_LEN: usize = 4;
/// Characters of the secret (100 bits).
pub const SECRET_LEN: usize = 20;
const CODE_LEN: usize = SELECTOR_LEN + SECRET_LEN;

/// A freshly generated code. Its `Display` is the grouped form for people;
/// it is never logged or stored (see [`GatewayCode::digest`]).
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayCode {
    /// The 24 normalized characters.
    chars: String,
}

impl fmt::Debug for GatewayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatewayCode({}-<redacted>)", self.selector())
    }
}

impl fmt::Display for GatewayCode {
    /// `XXXX-XXXX-XXXX-XXXX-XXXX-XXXX`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, group) in self.chars.as_bytes().chunks(4).enumerate() {
            if index > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// Why typed input is not a code at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeFormatError {
    #[error("a gateway code has {CODE_LEN} characters (dashes and spaces aside), got {0}")]
    Length(usize),
    #[error("a gateway code uses digits and letters other than U; got {0:?}")]
    Character(char),
}

impl GatewayCode {
    /// A new random code from the operating system's CSPRNG.
    pub fn generate() -> GatewayCode {
        let mut bytes = [0u8; CODE_LEN];
        OsRng
            .try_fill_bytes(&mut bytes)
            .expect("the operating system's random source is available");
        // 256 is a multiple of 32: taking 5 bits of each byte is unbiased.
        let chars = bytes
            .iter()
            .map(|byte| char::from(ALPHABET[usize::from(byte & 31)]))
            .collect();
        GatewayCode { chars }
    }

    /// Reads a code as typed: case, dashes and spaces are ignored and the
    /// look-alikes O, I, L are read as 0, 1, 1.
    pub fn parse(typed: &str) -> Result<GatewayCode, CodeFormatError> {
        let mut chars = String::with_capacity(CODE_LEN);
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return Err(CodeFormatError::Character(c)),
            };
            chars.push(c);
        }
        if chars.len() != CODE_LEN {
            return Err(CodeFormatError::Length(chars.len()));
        }
        Ok(GatewayCode { chars })
    }

    /// The public part that finds the stored code.
    pub fn selector(&self) -> &str {
        &self.chars[..SELECTOR_LEN]
    }

    /// What is stored instead of the code: SHA-256 of the whole normalized
    /// code, hex. The 100 secret bits make a slow hash unnecessary.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.chars.as_bytes()))
    }

    /// Whether `stored` (a [`GatewayCode::digest`]) is this code's digest,
    /// compared in constant time.
    pub fn matches(&self, stored: &str) -> bool {
        let ours = self.digest();
        ours.len() == stored.len()
            && ours
                .bytes()
                .zip(stored.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_thousand_codes_are_distinct_and_well_formed() {
        let codes: Vec<GatewayCode> = (0..1000).map(|_| GatewayCode::generate()).collect();
        let shown: HashSet<String> = codes.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 1000);
        for (code, text) in codes.iter().zip(codes.iter().map(ToString::to_string)) {
            assert_eq!(text.len(), 29, "{text}");
            assert!(text.split('-').all(|group| group.len() == 4), "{text}");
            assert!(
                text.chars()
                    .all(|c| c == '-' || ALPHABET.contains(&(c as u8))),
                "{text}"
            );
            assert_eq!(GatewayCode::parse(&text).unwrap(), *code);
        }
        // Every symbol shows up: the mapping is not stuck on a subset.
        let used: HashSet<char> = shown.iter().flat_map(|t| t.chars()).collect();
        assert_eq!(used.len(), 33, "32 symbols and the dash");
    }

    #[test]
    fn typing_is_forgiving_but_not_lax() {
        let code = GatewayCode::parse("K7Q2-9MZX-ABCD-EFGH-JKMN-PQRS").unwrap();
        assert_eq!(
            GatewayCode::parse("k7q2 9mzx abcd efgh jkmn pqrs").unwrap(),
            code
        );
        assert_eq!(
            GatewayCode::parse("1O00-0000-0000-0000-0000-0000").unwrap(),
            GatewayCode::parse("l000-0000-0000-0000-0000-000o").unwrap()
        );
        assert_eq!(
            GatewayCode::parse("K7Q2-9MZX"),
            Err(CodeFormatError::Length(8))
        );
        assert_eq!(
            GatewayCode::parse("K7Q2-9MZX-ABCD-EFGH-JKMN-PQRU"),
            Err(CodeFormatError::Character('U'))
        );
        assert!(GatewayCode::parse("K7Q2-9MZX-ABCD-EFGH-JKMN-PQR€").is_err());
    }

    #[test]
    fn only_the_digest_matches_and_nothing_leaks() {
        let code = GatewayCode::generate();
        let digest = code.digest();
        assert!(code.matches(&digest));
        assert!(!GatewayCode::generate().matches(&digest));
        assert!(!code.matches("short"));
        let debug = format!("{code:?}");
        assert!(debug.contains(code.selector()));
        assert!(!debug.contains(&code.to_string()[5..]), "{debug}");
    }
}
