//! Identifiers that must never be mixed up: accounts, operations, idempotency keys.
//!
//! Account ids are random 64-bit numbers shown as `acc_<16 hex>`. Operation ids
//! (deposits, withdrawals, transfers, alerts) are minted by the account that starts
//! the operation from its own counter, so `decide` stays deterministic: the id is the
//! account's number and the account-local operation number, shown with the prefix of
//! its kind (`dep_`, `wd_`, `tx_`, `alr_`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An account, the unit of serialization: one actor, one journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub u64);

impl AccountId {
    /// A fresh random id (never zero, so zero can mean "none" in compact encodings).
    pub fn random() -> Self {
        loop {
            let n: u64 = rand::random();
            if n != 0 {
                return AccountId(n);
            }
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acc_{:016x}", self.0)
    }
}

/// Why a textual id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {kind} id")]
pub struct BadId {
    /// Which kind of id was expected (`account`, `transfer`, ...).
    pub kind: &'static str,
}

fn parse_hex(s: &str, prefix: &str, digits: usize, kind: &'static str) -> Result<u128, BadId> {
    let hex = s.strip_prefix(prefix).ok_or(BadId { kind })?;
    if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BadId { kind });
    }
    u128::from_str_radix(hex, 16).map_err(|_| BadId { kind })
}

impl FromStr for AccountId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // unwrap-free: 16 hex digits always fit in a u64.
        parse_hex(s, "acc_", 16, "account").map(|n| AccountId(n as u64))
    }
}

/// The kind of an operation, which decides the prefix of its public id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpKind {
    Deposit,
    Withdrawal,
    Transfer,
    Alert,
    Session,
    Contact,
    Challenge,
}

impl OpKind {
    fn prefix(self) -> &'static str {
        match self {
            OpKind::Deposit => "dep_",
            OpKind::Withdrawal => "wd_",
            OpKind::Transfer => "tx_",
            OpKind::Alert => "alr_",
            OpKind::Session => "ses_",
            OpKind::Contact => "ct_",
            OpKind::Challenge => "chl_",
        }
    }
}

/// An operation started by `account`, numbered `n` in that account's own sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpId {
    pub account: AccountId,
    pub n: u64,
}

impl OpId {
    /// The public id of this operation when it is of `kind`.
    pub fn display(self, kind: OpKind) -> String {
        let mut out = String::with_capacity(36);
        self.write_display(kind, &mut out);
        out
    }

    /// Appends [`OpId::display`] to `out` (without `format!`: history row keys
    /// are built for every operation on the hot path).
    pub fn write_display(self, kind: OpKind, out: &mut String) {
        out.push_str(kind.prefix());
        push_hex16(out, self.account.0);
        push_hex16(out, self.n);
    }

    /// Parses a public id of the given kind.
    pub fn parse(s: &str, kind: OpKind) -> Result<Self, BadId> {
        let n = parse_hex(s, kind.prefix(), 32, "operation")?;
        Ok(OpId {
            account: AccountId((n >> 64) as u64),
            n: n as u64,
        })
    }
}

/// A transfer's id: the source account and its operation number.
pub type TransferId = OpId;

/// A client-chosen idempotency key (1–255 characters), scoped to one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1–255 visible ASCII characters.
    pub fn parse(s: &str) -> Result<Self, BadId> {
        if IdempotencyKey::valid(s) {
            Ok(IdempotencyKey(s.to_owned()))
        } else {
            Err(BadId {
                kind: "idempotency key",
            })
        }
    }

    fn valid(s: &str) -> bool {
        (1..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
    }

    /// Whether [`IdempotencyKey::parse`] accepts this key (one a deserializer
    /// made may not be).
    pub fn is_valid(&self) -> bool {
        IdempotencyKey::valid(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends `v` as 16 lowercase hex digits (`{:016x}`).
pub fn push_hex16(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(char::from(DIGITS[((v >> (shift * 4)) & 0xf) as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_round_trip_and_reject_garbage() {
        let id = AccountId(0x0123_4567_89ab_cdef);
        assert_eq!(id.to_string(), "acc_0123456789abcdef");
        assert_eq!(id.to_string().parse::<AccountId>(), Ok(id));
        assert!("acc_123".parse::<AccountId>().is_err());
        assert!("acx_0123456789abcdef".parse::<AccountId>().is_err());
        assert!("acc_0123456789abcdeg".parse::<AccountId>().is_err());
    }

    #[test]
    fn op_ids_round_trip_with_their_prefix() {
        let op = OpId {
            account: AccountId(7),
            n: 42,
        };
        let s = op.display(OpKind::Transfer);
        assert!(s.starts_with("tx_"));
        assert_eq!(OpId::parse(&s, OpKind::Transfer), Ok(op));
        assert!(OpId::parse(&s, OpKind::Deposit).is_err());
    }

    #[test]
    fn op_ids_display_as_they_always_did() {
        // History row keys embed this text: it must never change.
        for (account, n) in [
            (0, 0),
            (7, 42),
            (u64::MAX, u64::MAX),
            (0x0123_4567_89ab_cdef, 1 << 40),
        ] {
            let op = OpId {
                account: AccountId(account),
                n,
            };
            for kind in [OpKind::Deposit, OpKind::Withdrawal, OpKind::Transfer] {
                assert_eq!(
                    op.display(kind),
                    format!("{}{account:016x}{n:016x}", kind.prefix())
                );
            }
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("a b").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
    }
}
