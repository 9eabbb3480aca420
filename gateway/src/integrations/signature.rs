//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), used both
//! ways: to check the processors' callbacks and to sign outgoing events.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature
//! is `v1,` followed by the base64 of its HMAC-SHA256 under the shared secret
//! (a `whsec_`-prefixed secret is base64 after the prefix; any other secret is used
//! as bytes). `webhook-signature` may hold several space-separated signatures
//! (during a secret rotation); one match is enough. Timestamps more than five
//! minutes away from now are refused, so a captured request cannot be replayed
//! later; within the window, replays are caught by the `webhook-id`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a signed timestamp may be from now.
pub const TOLERANCE_S: i64 = 300;

/// The key bytes of a secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => STANDARD
            .decode(b64)
            .unwrap_or_else(|_| b64.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

fn mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // unwrap: HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key_of(secret)).unwrap();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for a message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// Why a signed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing webhook-id, webhook-timestamp or webhook-signature header")]
    Missing,
    #[error("webhook-timestamp is not within 5 minutes of now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks the three headers against `body` at time `now` (Unix seconds).
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return Err(SignatureError::Missing);
    };
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Missing)?;
    if (now - timestamp).abs() > TOLERANCE_S {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, id, timestamp, body);
    for candidate in signatures.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        // Constant-time comparison.
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        // From the Standard Webhooks reference libraries' tests.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, ts, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let sig = sign(secret, id, ts, body);
        assert_eq!(
            verify(
                secret,
                Some(id),
                Some("1614265330"),
                Some(&sig),
                body,
                ts + 10
            ),
            Ok(())
        );
        let both = format!("v1,AAAA {sig}");
        assert_eq!(
            verify(secret, Some(id), Some("1614265330"), Some(&both), body, ts),
            Ok(())
        );
        assert_eq!(
            verify(secret, Some(id), Some("1614265330"), Some(&sig), b"{}", ts),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                secret,
                Some(id),
                Some("1614265330"),
                Some(&sig),
                body,
                ts + 301
            ),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(secret, None, Some("1614265330"), Some(&sig), body, ts),
            Err(SignatureError::Missing)
        );
    }
}
