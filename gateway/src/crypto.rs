//! The gateway's secrets: AES-256-GCM for personal data at rest (KYC names, ID
//! numbers and document images, TOTP secrets), one-time codes, and their hashes.
//!
//! The engine never holds a key or a code in clear: the gateway encrypts before a
//! value enters a command and hashes a code before it is compared. Each encrypted
//! value carries its own random 96-bit nonce in front of the ciphertext
//! (`nonce ‖ ciphertext ‖ tag`); with random nonces one key stays safe for far
//! more values than a wallet will ever store (the 2^32 bound of NIST SP 800-38D).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use okpay_engine::ids::AccountId;
use rand::Rng;
use sha2::{Digest, Sha256};

/// The length of the AES-GCM nonce stored in front of each ciphertext.
const NONCE_LEN: usize = 12;

/// The fixed key dev mode uses when none is configured: dev data is not secret,
/// and a stable key lets a dev server read what it wrote before a restart.
pub const DEV_KEY: [u8; 32] = *b"okpay-dev-only-kyc-key-not-secre";

/// Encrypts and decrypts personal data with the configured key.
#[derive(Clone)]
pub struct PiiCipher {
    cipher: Aes256Gcm,
}

/// A value that does not decrypt (wrong key, or tampered with).
#[derive(Debug, thiserror::Error)]
#[error("the value does not decrypt with the configured key")]
pub struct DecryptError;

impl PiiCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        PiiCipher {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// `nonce ‖ ciphertext` of `plain` under a fresh random nonce.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            // unwrap: AES-GCM encryption only fails for inputs over 64 GiB.
            .unwrap();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a value made by [`PiiCipher::encrypt`].
    pub fn decrypt(&self, sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if sealed.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| DecryptError)
    }

    /// A UTF-8 value decrypted; `None` when it does not decrypt.
    pub fn decrypt_text(&self, sealed: &[u8]) -> Option<String> {
        self.decrypt(sealed)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
    }
}

/// Parses a 32-byte key written as 64 hex digits or as base64.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())?
    } else {
        STANDARD
            .decode(t)
            .map_err(|_| "the key must be 64 hex digits or base64".to_string())?
    };
    bytes
        .try_into()
        .map_err(|_| "the key must be exactly 32 bytes (AES-256)".to_string())
}

/// A fresh 6-digit one-time code (uniform over 000000–999999).
pub fn six_digit_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
}

/// The hash of a one-time code as the engine stores and compares it:
/// SHA-256(account id bytes ‖ code). Binding the account makes a hash useless for
/// any other account.
pub fn code_hash(account: AccountId, code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(account.0.to_be_bytes());
    h.update(code.trim().as_bytes());
    h.finalize().into()
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_str_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_with_fresh_nonces_and_tampering_is_caught() {
        let c = PiiCipher::new(&DEV_KEY);
        let a = c.encrypt(b"110101199003077777");
        let b = c.encrypt(b"110101199003077777");
        assert_ne!(a, b, "each value gets its own nonce");
        assert_eq!(c.decrypt(&a).unwrap(), b"110101199003077777");
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert!(c.decrypt(&bad).is_err());
        assert!(PiiCipher::new(&[7; 32]).decrypt(&a).is_err());
        assert!(c.decrypt(&a[..5]).is_err());
    }

    #[test]
    fn keys_parse_from_hex_or_base64() {
        let hex = "00".repeat(31) + "ff";
        assert_eq!(parse_key(&hex).unwrap()[31], 0xff);
        assert_eq!(parse_key(&STANDARD.encode([9u8; 32])).unwrap(), [9u8; 32]);
        assert!(parse_key("abcd").is_err());
        assert!(parse_key(&STANDARD.encode([9u8; 16])).is_err());
    }

    #[test]
    fn codes_are_six_digits_and_hashes_bind_the_account() {
        for _ in 0..100 {
            let c = six_digit_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_ne!(
            code_hash(AccountId(1), "123456"),
            code_hash(AccountId(2), "123456")
        );
        assert!(constant_time_str_eq("123456", "123456"));
        assert!(!constant_time_str_eq("123456", "123457"));
    }
}
