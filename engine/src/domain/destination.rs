//! A withdrawal's payout destination (a bank card number, a wallet account) as
//! the engine holds it. A destination is personal data, so the gateway seals it
//! (AES-GCM, bound to the account and the field) before it enters a command: the
//! engine keeps the sealed bytes for the payout, a masked form (`**** 0000`) for
//! views and indexes, and a keyed fingerprint that tells two requests apart for
//! idempotency without the clear value. The engine never holds the key.
//!
//! Stored bytes: withdrawals recorded before destinations were sealed hold the
//! destination as a plain string, and so do their journal events, snapshots and
//! challenges. A destination is therefore encoded as one byte string that either
//! is that plain UTF-8 text ([`PayoutDestination::Clear`], byte for byte what a
//! `String` was) or starts with a 0 byte, which a validated destination (no
//! control characters) never does:
//!
//! ```text
//! 0x00 | version 1 | masked length u8 | masked (UTF-8) | fingerprint (16) | sealed
//! ```

use std::hash::{Hash, Hasher};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first byte of a sealed destination's encoding; never the first byte of a
/// clear one (the gateway refuses control characters in destinations).
const SEALED_MARK: u8 = 0;
/// The encoding of sealed destinations this build writes.
const SEALED_VERSION: u8 = 1;

/// Where a withdrawal is paid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayoutDestination {
    /// In clear text: what withdrawals recorded before destinations were sealed
    /// hold (and engine-only tests, which have no key). The gateway never writes
    /// one.
    Clear(String),
    /// Sealed by the gateway. Boxed: inline it made every operation record
    /// (`OpRecord`, one per operation of a day in each account's state) 144
    /// bytes instead of 104, for a variant only withdrawals have.
    Sealed(Box<SealedDestination>),
}

/// A destination the engine can show masked but not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedDestination {
    /// What views, indexes and answers show (at most 255 bytes).
    pub masked: String,
    /// A keyed digest of the clear destination (equal destinations, equal
    /// fingerprints): part of the request's idempotency fingerprint.
    pub fingerprint: [u8; 16],
    /// The ciphertext, opened only by the gateway to pay the withdrawal out.
    pub sealed: Vec<u8>,
}

impl PayoutDestination {
    /// What may be shown or indexed.
    pub fn masked(&self) -> String {
        match self {
            PayoutDestination::Clear(text) => mask(text),
            PayoutDestination::Sealed(s) => s.masked.clone(),
        }
    }

    fn encode_sealed(s: &SealedDestination) -> Vec<u8> {
        let masked = truncate_to(&s.masked, usize::from(u8::MAX));
        let mut out = Vec::with_capacity(3 + masked.len() + 16 + s.sealed.len());
        out.push(SEALED_MARK);
        out.push(SEALED_VERSION);
        // unwrap: truncated to at most 255 bytes just above.
        out.push(u8::try_from(masked.len()).unwrap());
        out.extend_from_slice(masked.as_bytes());
        out.extend_from_slice(&s.fingerprint);
        out.extend_from_slice(&s.sealed);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let Some(rest) = bytes.strip_prefix(&[SEALED_MARK]) else {
            return std::str::from_utf8(bytes)
                .map(|t| PayoutDestination::Clear(t.to_owned()))
                .map_err(|_| "a clear destination is not UTF-8");
        };
        let [version, len, rest @ ..] = rest else {
            return Err("a sealed destination is truncated");
        };
        if *version != SEALED_VERSION {
            return Err("unknown sealed destination version");
        }
        let len = usize::from(*len);
        if rest.len() < len + 16 {
            return Err("a sealed destination is truncated");
        }
        let (masked, rest) = rest.split_at(len);
        let (fingerprint, sealed) = rest.split_at(16);
        Ok(PayoutDestination::Sealed(Box::new(SealedDestination {
            masked: std::str::from_utf8(masked)
                .map_err(|_| "a masked destination is not UTF-8")?
                .to_owned(),
            // unwrap: split at exactly 16 bytes.
            fingerprint: fingerprint.try_into().unwrap(),
            sealed: sealed.to_vec(),
        })))
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character.
fn truncate_to(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The masked form of a destination: a card number (digits, spaces, dashes) as
/// `**** 1234`; an email-like wallet account as `l***@example.com`; anything else
/// as `****` and its last four characters when it has more than eight. A
/// `scheme:` prefix (`alipay:`) is kept. Short values show nothing.
pub fn mask(text: &str) -> String {
    let (scheme, rest) = match text.split_once(':') {
        Some((s, r)) if !s.is_empty() && s.len() <= 16 && s.chars().all(char::is_alphanumeric) => {
            (&text[..=s.len()], r)
        }
        _ => ("", text),
    };
    let digits: Vec<char> = rest.chars().filter(char::is_ascii_digit).collect();
    let card_like = rest
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    let masked = if card_like && digits.len() >= 8 {
        let last: String = digits[digits.len() - 4..].iter().collect();
        format!("**** {last}")
    } else if let Some((local, domain)) = rest
        .split_once('@')
        .filter(|(l, d)| !l.is_empty() && !d.is_empty())
    {
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    } else {
        let chars: Vec<char> = rest.chars().collect();
        if chars.len() > 8 {
            let last: String = chars[chars.len() - 4..].iter().collect();
            format!("****{last}")
        } else {
            "****".to_owned()
        }
    };
    format!("{scheme}{masked}")
}

impl From<&str> for PayoutDestination {
    fn from(text: &str) -> Self {
        PayoutDestination::Clear(text.to_owned())
    }
}

impl From<String> for PayoutDestination {
    fn from(text: String) -> Self {
        PayoutDestination::Clear(text)
    }
}

/// What a request's idempotency fingerprint sees: the clear text hashes as the
/// `String` it used to be (so fingerprints stored before stay equal); a sealed
/// destination by its keyed fingerprint, never by its ciphertext (a fresh nonce
/// each time would make every retry a different request).
impl Hash for PayoutDestination {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            PayoutDestination::Clear(text) => text.hash(state),
            PayoutDestination::Sealed(s) => {
                state.write_u8(SEALED_MARK);
                state.write(&s.fingerprint);
            }
        }
    }
}

impl Serialize for PayoutDestination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PayoutDestination::Clear(text) => serializer.serialize_str(text),
            PayoutDestination::Sealed(s) => {
                serializer.serialize_bytes(&PayoutDestination::encode_sealed(s))
            }
        }
    }
}

impl<'de> Deserialize<'de> for PayoutDestination {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = PayoutDestination;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a payout destination (text, or sealed bytes)")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                PayoutDestination::decode(v).map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                PayoutDestination::decode(v.as_bytes()).map_err(E::custom)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> PayoutDestination {
        PayoutDestination::Sealed(Box::new(SealedDestination {
            masked: "**** 0000".into(),
            fingerprint: [7; 16],
            sealed: vec![1, 2, 3],
        }))
    }

    /// Postcard of the struct a withdrawal event had before: the destination a
    /// plain string.
    #[derive(Serialize)]
    struct Before {
        op: u64,
        destination: String,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Now {
        op: u64,
        destination: PayoutDestination,
    }

    #[test]
    fn destinations_stored_as_text_still_decode_and_encode_alike() {
        let old = postcard::to_stdvec(&Before {
            op: 3,
            destination: "6222020000000000".into(),
        })
        .unwrap();
        assert_eq!(
            old,
            b"\x03\x106222020000000000".to_vec(),
            "the old layout, pinned"
        );
        let now: Now = postcard::from_bytes(&old).unwrap();
        assert_eq!(now.destination, "6222020000000000".into());
        assert_eq!(postcard::to_stdvec(&now).unwrap(), old);
    }

    #[test]
    fn the_sealed_encoding_is_pinned_and_round_trips() {
        let now = Now {
            op: 3,
            destination: sealed(),
        };
        let bytes = postcard::to_stdvec(&now).unwrap();
        let mut expected = vec![3, 31, 0, 1, 9];
        expected.extend_from_slice(b"**** 0000");
        expected.extend_from_slice(&[7; 16]);
        expected.extend_from_slice(&[1, 2, 3]);
        assert_eq!(bytes, expected);
        assert_eq!(postcard::from_bytes::<Now>(&bytes).unwrap(), now);
        let mut unknown = bytes.clone();
        unknown[3] = 2;
        assert!(postcard::from_bytes::<Now>(&unknown).is_err());
        assert!(postcard::from_bytes::<Now>(&[3, 3, 0, 1, 9]).is_err());
    }

    #[test]
    fn a_sealed_destination_hashes_by_its_fingerprint_only() {
        fn h(d: &PayoutDestination) -> u64 {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            d.hash(&mut s);
            s.finish()
        }
        let a = sealed();
        let PayoutDestination::Sealed(mut other_nonce) = sealed() else {
            unreachable!()
        };
        other_nonce.sealed = vec![9, 9, 9, 9];
        assert_eq!(h(&a), h(&PayoutDestination::Sealed(other_nonce.clone())));
        other_nonce.fingerprint = [8; 16];
        assert_ne!(h(&a), h(&PayoutDestination::Sealed(other_nonce)));
        let clear: PayoutDestination = "6222".into();
        let mut s = std::collections::hash_map::DefaultHasher::new();
        "6222".to_string().hash(&mut s);
        assert_eq!(h(&clear), s.finish(), "clear text hashes as the String did");
    }

    #[test]
    fn masks_show_little() {
        assert_eq!(mask("6222020000001234"), "**** 1234");
        assert_eq!(mask("6222 0200 0000 1234"), "**** 1234");
        assert_eq!(mask("alipay:li.wei@example.com"), "alipay:l***@example.com");
        assert_eq!(mask("wechat:wxid_abcdefgh1234"), "wechat:****1234");
        assert_eq!(mask("wallet-1"), "****");
        assert_eq!(mask("6222"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(sealed().masked(), "**** 0000");
        assert_eq!(
            PayoutDestination::from("6222020000001234").masked(),
            "**** 1234"
        );
    }
}
