//! TOTP (RFC 6238) as OKPay uses it: HMAC-SHA1, 6 digits, 30-second steps, and a
//! code accepted for the current step or one step either side (clock drift of a
//! phone). The gateway finds which step a code matches and hands the step to the
//! engine, which accepts each step at most once (`step > last_step`), so a code
//! seen over someone's shoulder cannot be replayed. The math is `totp-rs`.

use base64::Engine as _;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::crypto::constant_time_str_eq;

/// Seconds per step.
pub const STEP_S: u64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u64 = 1;

fn totp(secret: &[u8]) -> TOTP {
    // `new_unchecked`: our secrets are 160 random bits (RFC 4226's recommendation),
    // so the length check of `new` has nothing to refuse.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        SKEW_STEPS as u8,
        STEP_S,
        secret.to_vec(),
    )
}

/// A fresh 160-bit secret.
pub fn new_secret() -> [u8; 20] {
    rand::random()
}

/// The secret as authenticator apps take it: RFC 4648 base32 without padding.
pub fn base32(secret: &[u8]) -> String {
    match Secret::Raw(secret.to_vec()).to_encoded() {
        Secret::Encoded(s) => s,
        // `to_encoded` of a raw secret is always `Encoded`.
        Secret::Raw(_) => base64::engine::general_purpose::STANDARD.encode(secret),
    }
}

/// The `otpauth://` URI an authenticator app scans (Key Uri Format).
pub fn otpauth_uri(secret: &[u8], account_label: &str) -> String {
    format!(
        "otpauth://totp/OKPay:{}?secret={}&issuer=OKPay&algorithm=SHA1&digits={DIGITS}&period={STEP_S}",
        percent_encode(account_label),
        base32(secret)
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The code of `secret` for time step `step`.
pub fn code_at_step(secret: &[u8], step: u64) -> String {
    totp(secret).generate(step * STEP_S)
}

/// The time step (within ±1 of the one of `unix_s`) whose code is `code`,
/// preferring the newest. `None`: the code matches no acceptable step.
pub fn matching_step(secret: &[u8], code: &str, unix_s: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_s / STEP_S;
    let t = totp(secret);
    // Every candidate is computed and compared, so timing does not tell which
    // step matched.
    let mut found = None;
    for step in (now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS).rev() {
        if constant_time_str_eq(&t.generate(step * STEP_S), code) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// Characters of a recovery code: the RFC 4648 base32 alphabet (no 0, 1, 8, 9).
const RECOVERY_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of a recovery code without its dashes: 16 × 5 = 80 random bits, so
/// its stored SHA-256 can't be searched through.
pub const RECOVERY_LEN: usize = 16;

/// A fresh recovery code, shown as `XXXX-XXXX-XXXX-XXXX`.
pub fn new_recovery_code() -> String {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    let chars: Vec<char> = (0..RECOVERY_LEN)
        .map(|_| RECOVERY_ALPHABET[rng.gen_range(0..32)] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A typed recovery code in its canonical form (upper case, no dashes or
/// spaces), or `None` when it can't be one (then it is no recovery code at all).
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let canonical: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (canonical.len() == RECOVERY_LEN && canonical.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
        .then_some(canonical)
}

#[cfg(test)]
mod tests {
    #[test]
    fn recovery_codes_normalize_to_their_canonical_form() {
        let code = new_recovery_code();
        assert_eq!(code.len(), RECOVERY_LEN + 3);
        let canonical = normalize_recovery_code(&code).unwrap();
        assert_eq!(
            normalize_recovery_code(&code.to_lowercase().replace('-', " ")),
            Some(canonical)
        );
        assert_eq!(normalize_recovery_code("123456"), None);
        assert_ne!(new_recovery_code(), new_recovery_code());
    }

    use super::*;

    /// RFC 6238 Appendix B: the SHA-1 seed and 8-digit codes.
    #[test]
    fn rfc_6238_test_vectors() {
        let seed = b"12345678901234567890".to_vec();
        let rfc = TOTP::new(Algorithm::SHA1, 8, 0, 30, seed).unwrap();
        for (t, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(rfc.generate(t), code, "T = {t}");
        }
        let seed256 = b"12345678901234567890123456789012".to_vec();
        let rfc = TOTP::new(Algorithm::SHA256, 8, 0, 30, seed256).unwrap();
        assert_eq!(rfc.generate(59), "46119246");
        let seed512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let rfc = TOTP::new(Algorithm::SHA512, 8, 0, 30, seed512).unwrap();
        assert_eq!(rfc.generate(59), "90693936");
        // Our 6-digit codes are the last 6 digits of the same HOTP value.
        assert_eq!(code_at_step(b"12345678901234567890", 1), "287082");
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = new_secret();
        let now = 1_700_000_000u64;
        let step = now / STEP_S;
        for s in [step - 1, step, step + 1] {
            assert_eq!(
                matching_step(&secret, &code_at_step(&secret, s), now),
                Some(s)
            );
        }
        assert_eq!(
            matching_step(&secret, &code_at_step(&secret, step - 2), now),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn the_uri_carries_the_base32_secret() {
        let uri = otpauth_uri(b"12345678901234567890", "li.wei@example.com");
        assert!(uri.starts_with("otpauth://totp/OKPay:li.wei%40example.com?secret="));
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&"));
    }
}
