//! The gateway's secrets: AES-256-GCM for personal data at rest (KYC names, ID
//! numbers and document images, TOTP secrets, withdrawal destinations, card
//! numbers of deposits in progress, webhook secrets and queued messages), one-time
//! codes, and their hashes.
//!
//! The engine never holds a key or a code in clear: the gateway encrypts before a
//! value enters a command and hashes a code before it is compared.
//!
//! Stored bytes are a contract. A value sealed today is
//! `"OKS" ‖ version 1 ‖ nonce (12) ‖ ciphertext ‖ tag`, and its [`Field`] and
//! [`Owner`] (the account, or the record it is stored under) are bound into it as
//! associated data: a ciphertext copied to another account or another field does
//! not open. Values written before the version tag existed are
//! `nonce ‖ ciphertext ‖ tag` without associated data; they still open (anywhere,
//! since nothing binds them) until they are rewritten. Each value has its own
//! random 96-bit nonce; with random nonces one key stays safe for far more values
//! than a wallet will ever store (the 2^32 bound of NIST SP 800-38D).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use okpay_engine::ids::AccountId;
use rand::Rng;
use sha2::{Digest, Sha256};

/// The length of the AES-GCM nonce stored in each ciphertext.
const NONCE_LEN: usize = 12;

/// The first bytes of a versioned value: a magic and the format version. A value
/// of the untagged format starts with its random nonce instead; the one in 2^32
/// that starts with these bytes by chance still opens (see [`PiiCipher::open`]).
const TAG_V1: [u8; 4] = [b'O', b'K', b'S', 1];

/// The fixed key dev mode uses when none is configured: dev data is not secret,
/// and a stable key lets a dev server read what it wrote before a restart.
pub const DEV_KEY: [u8; 32] = *b"okpay-dev-only-kyc-key-not-secre";

/// What a sealed value is. The name is bound into the ciphertext, so it is part
/// of the stored format: never rename one, add a new one instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    KycFullName,
    KycIdNumber,
    KycDocument,
    TotpSecret,
    WithdrawalDestination,
    DepositCard,
    WebhookSecret,
    WebhookMessage,
    Delivery,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::KycFullName => "kyc.full_name",
            Field::KycIdNumber => "kyc.id_number",
            Field::KycDocument => "kyc.document",
            Field::TotpSecret => "totp.secret",
            Field::WithdrawalDestination => "withdrawal.destination",
            Field::DepositCard => "deposit.card",
            Field::WebhookSecret => "webhook.secret",
            Field::WebhookMessage => "webhook.message",
            Field::Delivery => "delivery",
        }
    }
}

/// Whom a sealed value belongs to: an account, or for values of no account (a
/// webhook endpoint's secret, a queued message) the key it is stored under.
#[derive(Clone, Copy, Debug)]
pub enum Owner<'a> {
    Account(AccountId),
    Record(&'a str),
}

/// The associated data of a value: `"okpay-pii" ‖ version ‖ field name length ‖
/// field name ‖ owner tag ‖ owner` (account: 8 bytes big-endian; record: its
/// bytes). Lengths and tags keep two different contexts from ever encoding alike.
fn associated_data(field: Field, owner: Owner<'_>) -> Vec<u8> {
    let name = field.name().as_bytes();
    let mut ad = Vec::with_capacity(32 + name.len());
    ad.extend_from_slice(b"okpay-pii");
    ad.push(TAG_V1[3]);
    // Every field name is a short literal; the length byte never saturates.
    ad.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    ad.extend_from_slice(name);
    match owner {
        Owner::Account(a) => {
            ad.push(1);
            ad.extend_from_slice(&a.0.to_be_bytes());
        }
        Owner::Record(key) => {
            ad.push(2);
            ad.extend_from_slice(key.as_bytes());
        }
    }
    ad
}

/// Encrypts and decrypts personal data with the configured key.
#[derive(Clone)]
pub struct PiiCipher {
    cipher: Aes256Gcm,
    /// The key of [`PiiCipher::fingerprint`], derived from the PII key so that
    /// one secret is configured, and distinct from it so that a fingerprint says
    /// nothing about the encryption key.
    fingerprint_key: [u8; 32],
}

/// A value that does not decrypt (wrong key, another account or field, or
/// tampered with).
#[derive(Debug, thiserror::Error)]
#[error("the value does not decrypt with the configured key in this context")]
pub struct DecryptError;

impl PiiCipher {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            // unwrap: HMAC takes a key of any length.
            .unwrap();
        mac.update(b"okpay-pii fingerprint key");
        PiiCipher {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            fingerprint_key: mac.finalize().into_bytes().into(),
        }
    }

    /// `plain` sealed as `field` of `owner` under a fresh random nonce.
    pub fn seal(&self, field: Field, owner: Owner<'_>, plain: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(field, owner, plain, rand::random())
    }

    fn seal_with_nonce(
        &self,
        field: Field,
        owner: Owner<'_>,
        plain: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let ad = associated_data(field, owner);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &ad,
                },
            )
            // unwrap: AES-GCM encryption only fails for inputs over 64 GiB.
            .unwrap();
        let mut out = Vec::with_capacity(TAG_V1.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(&TAG_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a value sealed as `field` of `owner`; a value of the
    /// untagged format (written before associated data) opens without context.
    pub fn open(
        &self,
        field: Field,
        owner: Owner<'_>,
        sealed: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        if let Some(body) = sealed.strip_prefix(&TAG_V1) {
            if body.len() >= NONCE_LEN {
                let (nonce, ciphertext) = body.split_at(NONCE_LEN);
                let ad = associated_data(field, owner);
                let opened = self.cipher.decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &ad,
                    },
                );
                if let Ok(plain) = opened {
                    return Ok(plain);
                }
            }
        }
        // The untagged format. A tagged value moved to another context fails here
        // too: its tag bytes, read as a nonce, don't authenticate.
        self.open_untagged(sealed)
    }

    fn open_untagged(&self, sealed: &[u8]) -> Result<Vec<u8>, DecryptError> {
        if sealed.len() < NONCE_LEN {
            return Err(DecryptError);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| DecryptError)
    }

    /// A UTF-8 value opened; `None` when it does not open.
    pub fn open_text(&self, field: Field, owner: Owner<'_>, sealed: &[u8]) -> Option<String> {
        self.open(field, owner, sealed)
            .ok()
            .and_then(|p| String::from_utf8(p).ok())
    }

    /// A keyed digest of `plain` as `field` of `owner` (HMAC-SHA-256, first 16
    /// bytes): equal values give equal fingerprints, so two requests can be told
    /// apart without keeping the value in clear, and without the key nobody can
    /// test guesses against it (a plain hash of a card number is brute-forceable).
    pub fn fingerprint(&self, field: Field, owner: Owner<'_>, plain: &[u8]) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            // unwrap: HMAC takes a key of any length.
            .unwrap();
        mac.update(&associated_data(field, owner));
        mac.update(plain);
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
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

    const ALICE: Owner<'static> = Owner::Account(AccountId(0x0678_02d9_5c42_618c));
    const BOB: Owner<'static> = Owner::Account(AccountId(0x1a91_e3a2_a972_26b6));

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len() / 2)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    /// `110101199003077777` sealed with [`DEV_KEY`] and nonce `00 01 .. 0b` by the
    /// code before the version tag (`nonce ‖ ciphertext ‖ tag`, no associated data).
    const UNTAGGED: &str = "000102030405060708090a0bfa14cdf0e160f0e895709b3ec56c63f3eaab75170c32345287656addad35299fbfb5";
    /// The same value sealed as [`Field::KycIdNumber`] of [`ALICE`] in format 1.
    const TAGGED_V1: &str = "4f4b5301000102030405060708090a0bfa14cdf0e160f0e895709b3ec56c63f3eaabf67367036140613422a0206f79e373ef";

    #[test]
    fn values_round_trip_with_fresh_nonces_and_tampering_is_caught() {
        let c = PiiCipher::new(&DEV_KEY);
        let f = Field::KycIdNumber;
        let a = c.seal(f, ALICE, b"110101199003077777");
        let b = c.seal(f, ALICE, b"110101199003077777");
        assert_ne!(a, b, "each value gets its own nonce");
        assert_eq!(&a[..4], b"OKS\x01");
        assert_eq!(c.open(f, ALICE, &a).unwrap(), b"110101199003077777");
        let mut bad = a.clone();
        bad[20] ^= 1;
        assert!(c.open(f, ALICE, &bad).is_err());
        assert!(PiiCipher::new(&[7; 32]).open(f, ALICE, &a).is_err());
        assert!(c.open(f, ALICE, &a[..5]).is_err());
        assert!(c.open(f, ALICE, &a[..15]).is_err());
    }

    #[test]
    fn a_value_moved_to_another_account_or_field_does_not_open() {
        let c = PiiCipher::new(&DEV_KEY);
        let number = c.seal(Field::KycIdNumber, ALICE, b"110101199003077777");
        assert!(c.open(Field::KycIdNumber, BOB, &number).is_err());
        assert!(c.open(Field::KycFullName, ALICE, &number).is_err());
        assert!(c
            .open(Field::WithdrawalDestination, ALICE, &number)
            .is_err());
        let secret = c.seal(Field::WebhookSecret, Owner::Record("whk_1"), b"whsec_x");
        assert!(c
            .open(Field::WebhookSecret, Owner::Record("whk_2"), &secret)
            .is_err());
        assert!(c
            .open(Field::WebhookSecret, Owner::Account(AccountId(0)), &secret)
            .is_err());
        // Stripping the version tag does not downgrade it to the unbound format.
        assert!(c.open(Field::KycIdNumber, BOB, &number[4..]).is_err());
        assert_eq!(
            c.open(Field::WebhookSecret, Owner::Record("whk_1"), &secret)
                .unwrap(),
            b"whsec_x"
        );
    }

    #[test]
    fn both_stored_formats_are_pinned() {
        let c = PiiCipher::new(&DEV_KEY);
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        let v1 = c.seal_with_nonce(Field::KycIdNumber, ALICE, b"110101199003077777", nonce);
        assert_eq!(
            hex(&v1),
            TAGGED_V1,
            "format 1 changed: add a version instead"
        );
        for (bytes, owner) in [(UNTAGGED, ALICE), (UNTAGGED, BOB), (TAGGED_V1, ALICE)] {
            assert_eq!(
                c.open(Field::KycIdNumber, owner, &unhex(bytes)).unwrap(),
                b"110101199003077777"
            );
        }
        assert!(c.open(Field::KycIdNumber, BOB, &unhex(TAGGED_V1)).is_err());
    }

    #[test]
    fn fingerprints_are_keyed_and_bound_to_their_context() {
        let c = PiiCipher::new(&DEV_KEY);
        let f = Field::WithdrawalDestination;
        let a = c.fingerprint(f, ALICE, b"6222020000000000");
        assert_eq!(a, c.fingerprint(f, ALICE, b"6222020000000000"));
        assert_ne!(a, c.fingerprint(f, ALICE, b"6222020000000001"));
        assert_ne!(a, c.fingerprint(f, BOB, b"6222020000000000"));
        assert_ne!(
            a,
            PiiCipher::new(&[7; 32]).fingerprint(f, ALICE, b"6222020000000000")
        );
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
