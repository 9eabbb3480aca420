//! The bytes of an account snapshot: `AccountState` behind a format tag, and the
//! untagged layouts older code wrote, so an existing data directory keeps loading.
//!
//! Snapshots used to be plain postcard of `AccountState`, which is positional: a
//! field added to the struct (issue 9 added some to `Security`) made every older
//! snapshot undecodable, and journals are trimmed at snapshots, so replaying
//! instead is no way out. Now a snapshot is `"OKST"` ‖ format version (u16 LE) ‖
//! body; [`decode_state`] reads every version it knows and the untagged layouts
//! written before the tag, each through a frozen copy of the shape it had
//! ([`legacy`]). Versions: 1 (issue 9), 2 (issue 12: the account's `locale` at
//! the end; a version-1 snapshot reads as `zh-CN`), 3 (issue 10: a remembered
//! credit is a `CreditMark` — when, the debit's position in its source shard's
//! log, refused or not — instead of a time; older entries read as legacy marks,
//! forgotten by age as they were), all three postcard of the state; 4
//! (2026-11-30: compact checkpoints) a layout written by hand in `state_v4/`
//! — amounts as integer mantissas, times as deltas, explicit enum tags, the
//! account's own id implied, other ids written once — under half of version
//! 3's bytes for a busy account. A legacy snapshot can't start with the tag: its first byte would
//! be a one-byte account-id varint and its second (`opened`) must be 0 or 1,
//! never `K`.
//!
//! [`encode_state`] writes version 4, which represents every state exactly
//! (decimals in one of three forms, times as wrapping deltas, maps and sets
//! written sorted; `arbitrary_states_round_trip_through_version_4`, a
//! proptest, pins it bit for bit) — except values only a deserializer can
//! make, which the version-4 reader refuses or rebuilds differently: a
//! currency `Currency::new` refuses, an amount not at its currency's scale, an
//! idempotency key `IdempotencyKey::parse` refuses (an old snapshot's). The
//! writer notes those as it meets them and the state is then written as
//! version 3, which still reads. Until 2026-12-01 every checkpoint instead
//! decoded its bytes back and compared them with the state: 40% of a
//! checkpoint's CPU. Debug builds (every test) still do, and panic on a
//! mismatch.
//!
//! Version 3 is postcard of `AccountState`, so changing `AccountState` (or
//! anything inside it) changes what version 3 means: freeze today's shape as
//! a legacy struct for version 3 first. Version 4 names every field it writes
//! (a new field fails to compile in `state_v4.rs` until it is encoded, in a
//! version 5). The golden-bytes tests below fail when a change would read an
//! existing snapshot differently.

use serde::de::DeserializeOwned;

use super::state_v4;
use crate::codec::CodecError;
use crate::domain::locale::Locale;
use crate::domain::security::Security;
use crate::domain::state::AccountState;

/// What every tagged snapshot starts with.
pub const STATE_MAGIC: [u8; 4] = *b"OKST";
/// The version [`encode_state`] writes: the compact layout of `state_v4.rs`.
pub const STATE_VERSION: u16 = 4;

/// A snapshot's bytes: the tag, the version, then the state. Version 4 unless
/// the state holds a value version 4 would not read back (see the module doc).
pub fn encode_state(state: &AccountState) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&STATE_VERSION.to_le_bytes());
    if !state_v4::encode(state, &mut out) {
        return encode_state_v3(state);
    }
    debug_assert!(
        state_v4::decode(&out[6..]).is_ok_and(|back| back == *state),
        "version 4 does not round-trip account {:?}",
        state.id
    );
    out
}

/// A snapshot in version 3: postcard of the state (what older builds wrote,
/// and what the version-3 golden tests pin).
pub fn encode_state_v3(state: &AccountState) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&3u16.to_le_bytes());
    // unwrap: postcard into a Vec only fails on writer errors, and a Vec never fails.
    postcard::to_extend(state, out).unwrap()
}

/// The state in a snapshot written by this or any earlier version.
pub fn decode_state(bytes: &[u8]) -> Result<AccountState, CodecError> {
    if let Some(rest) = bytes.strip_prefix(&STATE_MAGIC) {
        let [lo, hi, body @ ..] = rest else {
            return Err(CodecError::Truncated {
                needed: 2 - rest.len(),
            });
        };
        return match u16::from_le_bytes([*lo, *hi]) {
            1 => exact::<legacy::UntaggedState<Security>>(body)
                .map(AccountState::from)
                .ok_or(CodecError::Invalid(
                    "account state (version 1) does not decode",
                )),
            2 => exact::<(legacy::UntaggedState<Security>, Locale)>(body)
                .map(|(state, locale)| AccountState {
                    locale,
                    ..state.into()
                })
                .ok_or(CodecError::Invalid(
                    "account state (version 2) does not decode",
                )),
            3 => exact::<AccountState>(body).ok_or(CodecError::Invalid(
                "account state (version 3) does not decode",
            )),
            4 => state_v4::decode(body),
            v => Err(CodecError::UnknownVersion(v)),
        };
    }
    // Untagged: written before the tag (so before `locale`), newest layout
    // first. Each must consume every byte, so a layout that merely parses a
    // prefix is not taken for another.
    if let Some(s) = exact::<legacy::UntaggedState<Security>>(bytes) {
        return Ok(s.into());
    }
    if let Some(s) = exact::<legacy::UntaggedState<legacy::SecurityBeforeRecovery>>(bytes) {
        return Ok(s.into());
    }
    if let Some(s) = exact::<legacy::UntaggedState<legacy::SecurityBeforeIssue9>>(bytes) {
        return Ok(s.into());
    }
    Err(CodecError::Invalid(
        "account snapshot matches no known layout",
    ))
}

/// `T` decoded from all of `bytes` (none left over).
fn exact<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).ok()?;
    rest.is_empty().then_some(value)
}

/// Frozen shapes of older snapshots. Untagged ones differ from version 1 only
/// in `Security` (every other part of `AccountState` kept its layout, checked by
/// the golden bytes), version 1 differs from version 2 only by the missing
/// `locale` at the end, and version 2 from version 3 only by the values of
/// `credited` (a time, not a `CreditMark`), so one legacy state, version 1's
/// field list with a `Security` of choice, reads them all (version 2 as that
/// state followed by the locale).
pub mod legacy {
    use std::collections::{BTreeMap, VecDeque};

    use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
    use serde::Deserialize;

    use crate::domain::command::Profile;
    use crate::domain::locale::Locale;
    use crate::domain::notification::Notification;
    use crate::domain::security::{
        Challenge, Kyc, PendingCode, Security, TotpState, UnchallengedMark,
    };
    use crate::domain::state::{
        AccountState, AccountStatus, AlertRecord, Book, Contact, CreditMark, DailyUsage,
        IdempotencyEntry, NewRecipientMark, OpRecord, OutgoingMark, RaisedAlerts, Session,
        LEGACY_DEBIT_LSN,
    };
    use crate::ids::{AccountId, IdempotencyKey, TransferId};
    use crate::time::Timestamp;

    /// `Security` before issue 9 (the lockout as a status; no failure counts).
    #[derive(Deserialize)]
    pub struct SecurityBeforeIssue9 {
        pub failed_logins: u32,
        pub locked_until: Option<Timestamp>,
        pub recent_failures: VecDeque<Timestamp>,
        pub failed_burst_raised: bool,
        pub reset: Option<PendingCode>,
        pub totp: Option<TotpState>,
        pub known_devices: VecDeque<String>,
        pub last_login: Option<(Timestamp, Option<String>)>,
    }

    /// `Security` after the first half of issue 9 (failure counts, split-payment
    /// marks), before recovery codes and pending enrolments.
    #[derive(Deserialize)]
    pub struct SecurityBeforeRecovery {
        pub failed_logins: u32,
        pub locked_until: Option<Timestamp>,
        pub recent_failures: VecDeque<Timestamp>,
        pub failed_burst_raised: bool,
        pub reset: Option<PendingCode>,
        pub totp: Option<TotpState>,
        pub known_devices: VecDeque<String>,
        pub last_login: Option<(Timestamp, Option<String>)>,
        pub reset_failures: VecDeque<Timestamp>,
        pub step_up_failures: VecDeque<Timestamp>,
        pub unchallenged_out: VecDeque<UnchallengedMark>,
    }

    impl From<SecurityBeforeIssue9> for Security {
        fn from(s: SecurityBeforeIssue9) -> Security {
            Security {
                failed_logins: s.failed_logins,
                locked_until: s.locked_until,
                recent_failures: s.recent_failures,
                failed_burst_raised: s.failed_burst_raised,
                reset: s.reset.map(Box::new),
                totp: s.totp.map(Box::new),
                known_devices: s.known_devices,
                last_login: s.last_login.map(Box::new),
                ..Security::default()
            }
        }
    }

    impl From<SecurityBeforeRecovery> for Security {
        fn from(s: SecurityBeforeRecovery) -> Security {
            Security {
                failed_logins: s.failed_logins,
                locked_until: s.locked_until,
                recent_failures: s.recent_failures,
                failed_burst_raised: s.failed_burst_raised,
                reset: s.reset.map(Box::new),
                totp: s.totp.map(Box::new),
                known_devices: s.known_devices,
                last_login: s.last_login.map(Box::new),
                reset_failures: s.reset_failures,
                step_up_failures: s.step_up_failures,
                unchallenged_out: s.unchallenged_out.into(),
                ..Security::default()
            }
        }
    }

    /// `AccountState` as untagged and version-1 snapshots hold it, with security
    /// shape `S` (today's `Security` for version 1).
    #[derive(Deserialize)]
    pub struct UntaggedState<S> {
        pub id: AccountId,
        pub opened: bool,
        pub opened_at: Option<Timestamp>,
        pub profile: Profile,
        pub password_hash: String,
        pub sessions: Vec<Session>,
        pub contacts: Vec<Contact>,
        pub security: S,
        pub challenges: Vec<Challenge>,
        pub kyc: Kyc,
        pub alerts: VecDeque<AlertRecord>,
        pub recent_deposits: VecDeque<OutgoingMark>,
        pub status: AccountStatus,
        pub status_reason: Option<String>,
        pub kyc_tier: u8,
        pub books: Vec<Book>,
        pub next_op: u64,
        pub ops: BTreeMap<u64, OpRecord>,
        pub idempotency: HashMap<IdempotencyKey, IdempotencyEntry>,
        pub credited: HashMap<TransferId, Timestamp>,
        pub outgoing: VecDeque<OutgoingMark>,
        pub daily: DailyUsage,
        pub known_recipients: HashSet<AccountId>,
        pub new_recipients: VecDeque<NewRecipientMark>,
        pub raised: RaisedAlerts,
        pub notifications: VecDeque<Notification>,
        pub notification_seq: u64,
    }

    impl<S: Into<Security>> From<UntaggedState<S>> for AccountState {
        fn from(s: UntaggedState<S>) -> AccountState {
            AccountState {
                id: s.id,
                opened: s.opened,
                opened_at: s.opened_at,
                profile: s.profile,
                password_hash: s.password_hash,
                sessions: s.sessions,
                contacts: s.contacts,
                security: s.security.into(),
                challenges: s.challenges,
                kyc: s.kyc,
                alerts: s.alerts,
                recent_deposits: s.recent_deposits,
                status: s.status,
                status_reason: s.status_reason,
                kyc_tier: s.kyc_tier,
                books: s.books,
                next_op: s.next_op,
                ops: s.ops.into(),
                idempotency: s.idempotency,
                credited: s
                    .credited
                    .into_iter()
                    .map(|(id, at)| {
                        let mark = CreditMark {
                            at,
                            debit_lsn: LEGACY_DEBIT_LSN,
                            refused: None,
                        };
                        (id, mark)
                    })
                    .collect(),
                outgoing: s.outgoing.into(),
                daily: s.daily,
                known_recipients: s.known_recipients,
                new_recipients: s.new_recipients,
                raised: s.raised,
                notifications: s.notifications,
                notification_seq: s.notification_seq,
                // Chosen by nobody before version 2: the default.
                locale: Locale::default(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::domain::locale::Locale;
    use crate::domain::state::{CreditMark, LEGACY_DEBIT_LSN};
    use crate::ids::AccountId;
    use crate::money::Currency;

    /// Written by the code before issue 9 (commit `aef11fd^`): account 7, opened,
    /// tier 1, 123.45 CNY deposited, one session, TOTP enrolled at step 1000 with
    /// secret `[1, 2, 3, 4]`, one failed login. Untagged postcard.
    const BEFORE_ISSUE_9: &[&str] = &[
        "07010180d4a697bf6306757365722037010e7537406578616d706c652e636f6d0000010203030303",
        "03030303030303030303030303030303030303030303030303030303056465762d31010550686f6e",
        "650102434e80d4a697bf6380c4d9e9bf630001000180d4a697bf63000001040102030401e8070105",
        "6465762d310180d4a697bf630102434e00000000000001809aef93bf63063132332e343500000101",
        "434e5902063132332e343504302e3030063132332e343504302e303004302e303004302e30300301",
        "0100063132332e3435434e590204302e30300000809aef93bf63010766756e64696e67e6ddaf80ad",
        "8cb9e1e40101809aef93bf63000000000000000301809aef93bf6300434e5902063132332e343504",
        "302e303002809aef93bf630107010001063132332e343504302e3030434e590200000380d4a697bf",
        "63040702056465762d310102434e0103",
    ];

    /// The same account written by the first half of issue 9 (commit `7d9d8a5`):
    /// `Security` had gained the failure counts and split-payment marks.
    const BEFORE_RECOVERY_CODES: &[&str] = &[
        "07010180d4a697bf6306757365722037010e7537406578616d706c652e636f6d0000010203030303",
        "03030303030303030303030303030303030303030303030303030303056465762d31010550686f6e",
        "650102434e80d4a697bf6380c4d9e9bf630001000180d4a697bf63000001040102030401e8070105",
        "6465762d310180d4a697bf630102434e00000000000000000001809aef93bf63063132332e343500",
        "000101434e5902063132332e343504302e3030063132332e343504302e303004302e303004302e30",
        "3003010100063132332e3435434e590204302e30300000809aef93bf63010766756e64696e67e6dd",
        "af80ad8cb9e1e40101809aef93bf63000000000000000301809aef93bf6300434e5902063132332e",
        "343504302e303002809aef93bf630107010001063132332e343504302e3030434e590200000380d4",
        "a697bf63040702056465762d310102434e0103",
    ];

    /// The same account in format version 1 (tag, version, postcard), as
    /// `encode_state` writes it since issue 9's recovery codes.
    const VERSION_1: &[&str] = &[
        "4f4b5354010007010180d4a697bf6306757365722037010e7537406578616d706c652e636f6d0000",
        "01020303030303030303030303030303030303030303030303030303030303030303056465762d31",
        "010550686f6e650102434e80d4a697bf6380c4d9e9bf630001000180d4a697bf6300000104010203",
        "0401e80701056465762d310180d4a697bf630102434e00000000000000000000000001809aef93bf",
        "63063132332e343500000101434e5902063132332e343504302e3030063132332e343504302e3030",
        "04302e303004302e303003010100063132332e3435434e590204302e30300000809aef93bf630107",
        "66756e64696e67e6ddaf80ad8cb9e1e40101809aef93bf63000000000000000301809aef93bf6300",
        "434e5902063132332e343504302e303002809aef93bf630107010001063132332e343504302e3030",
        "434e590200000380d4a697bf63040702056465762d310102434e0103",
    ];
    /// The same account in format version 2 with `locale` set to `en`: version
    /// 1's body followed by the locale's index.
    const VERSION_2: &[&str] = &[
        "4f4b5354020007010180d4a697bf6306757365722037010e7537406578616d706c652e636f6d0000",
        "01020303030303030303030303030303030303030303030303030303030303030303056465762d31",
        "010550686f6e650102434e80d4a697bf6380c4d9e9bf630001000180d4a697bf6300000104010203",
        "0401e80701056465762d310180d4a697bf630102434e00000000000000000000000001809aef93bf",
        "63063132332e343500000101434e5902063132332e343504302e3030063132332e343504302e3030",
        "04302e303004302e303003010100063132332e3435434e590204302e30300000809aef93bf630107",
        "66756e64696e67e6ddaf80ad8cb9e1e40101809aef93bf63000000000000000301809aef93bf6300",
        "434e5902063132332e343504302e303002809aef93bf630107010001063132332e343504302e3030",
        "434e590200000380d4a697bf63040702056465762d310102434e010301",
    ];

    fn bytes(hex: &[&str]) -> Vec<u8> {
        let hex: String = hex.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn check_golden_account(s: &AccountState) {
        let cny = Currency::new("CNY", 2).unwrap();
        assert_eq!(s.id, AccountId(7));
        assert!(s.opened);
        assert_eq!(s.profile.email.as_deref(), Some("u7@example.com"));
        assert_eq!(s.kyc_tier, 1);
        assert_eq!(s.available(cny), dec!(123.45));
        assert_eq!(s.sessions.len(), 1);
        assert_eq!(s.sessions[0].device_id, "dev-1");
        let totp = s.security.totp.as_ref().unwrap();
        assert_eq!((totp.enabled, totp.last_step), (true, 1000));
        assert_eq!(totp.secret, vec![1, 2, 3, 4]);
        assert_eq!(s.security.failed_logins, 1);
        assert!(s.security.recovery_codes.is_empty());
        assert!(s.security.totp_pending.is_none());
        assert!(s.security.change_code.is_none());
    }

    #[test]
    fn snapshots_from_before_issue_9_still_decode() {
        let s = decode_state(&bytes(BEFORE_ISSUE_9)).unwrap();
        check_golden_account(&s);
        assert!(s.security.step_up_failures.is_empty());
        assert_eq!(s.locale, Locale::ZhCn);
    }

    #[test]
    fn snapshots_from_before_recovery_codes_still_decode() {
        let s = decode_state(&bytes(BEFORE_RECOVERY_CODES)).unwrap();
        check_golden_account(&s);
        assert_eq!(s.locale, Locale::ZhCn);
    }

    #[test]
    fn version_1_still_decodes_with_the_default_locale() {
        let v1 = bytes(VERSION_1);
        let s = decode_state(&v1).unwrap();
        check_golden_account(&s);
        assert_eq!(s.locale, Locale::ZhCn);
        // Untagged bytes of version 1's layout (written before the call sites
        // moved to `encode_state`) decode too.
        assert_eq!(decode_state(&v1[6..]).unwrap(), s);
        // Version 1 read as version 2 is refused (it lacks the locale), not misread.
        let mut as_v2 = v1.clone();
        as_v2[4] = 2;
        assert!(decode_state(&as_v2).is_err());
    }

    #[test]
    fn the_tagged_format_round_trips_and_is_pinned() {
        let mut s = decode_state(&bytes(BEFORE_ISSUE_9)).unwrap();
        s.locale = Locale::En;
        let tagged = encode_state_v3(&s);
        assert_eq!(&tagged[..6], b"OKST\x03\x00");
        assert_eq!(decode_state(&tagged).unwrap(), s);
        // Version 3 is exactly postcard of today's state: a change to
        // `AccountState` must bump the version (and freeze this shape).
        assert_eq!(tagged[6..], postcard::to_stdvec(&s).unwrap()[..]);
        // With no credit remembered, version 3's body is version 2's.
        let mut v3 = bytes(VERSION_2);
        v3[4] = 3;
        assert_eq!(tagged, v3, "version 3 must read as it was written");
        let v2 = decode_state(&bytes(VERSION_2)).unwrap();
        check_golden_account(&v2);
        assert_eq!(v2.locale, Locale::En);
        // The default locale round-trips as well.
        s.locale = Locale::ZhCn;
        assert_eq!(decode_state(&encode_state(&s)).unwrap(), s);
    }

    /// Account 7, opened, remembering a credit of transfer 3 of account 9 at
    /// 1,764,000,000,000 ms, as version 2 wrote it (code of `664676e`).
    const VERSION_2_CREDITED: &str = "4f4b535402000701000000000000000000000000000000000000000000000000000000000000000001000001090380a0bfe9d666000000000000000000";

    #[test]
    fn version_2_credits_read_as_legacy_marks() {
        let s = decode_state(&bytes(&[VERSION_2_CREDITED])).unwrap();
        assert_eq!(s.id, AccountId(7));
        let id = crate::ids::OpId {
            account: AccountId(9),
            n: 3,
        };
        assert_eq!(
            s.credited[&id],
            CreditMark {
                at: crate::time::Timestamp(1_764_000_000_000),
                debit_lsn: LEGACY_DEBIT_LSN,
                refused: None,
            }
        );
    }

    /// The same account in version 3, remembering transfer 3 of account 9
    /// credited (debit at 0x0102) and transfer 4 refused (debit at 5) for
    /// `RecipientUnavailable`.
    const VERSION_3_CREDITED: &str = "4f4b535403000701000000000000000000000000000000000000000000000000000000000000000001000001090380a0bfe9d666820200000000000000000000";

    #[test]
    fn version_3_credit_marks_are_pinned() {
        let mut s = AccountState::new(AccountId(7));
        s.opened = true;
        let at = crate::time::Timestamp(1_764_000_000_000);
        let op = |n| crate::ids::OpId {
            account: AccountId(9),
            n,
        };
        s.credited.insert(
            op(3),
            CreditMark {
                at,
                debit_lsn: 0x0102,
                refused: None,
            },
        );
        let bytes_now = encode_state_v3(&s);
        let hex: String = bytes_now.iter().map(|b| format!("{b:02x}")).collect();
        let mut both = s.clone();
        both.credited.insert(
            op(4),
            CreditMark {
                at,
                debit_lsn: 5,
                refused: Some(crate::domain::Rejection::RecipientUnavailable),
            },
        );
        assert_eq!(decode_state(&encode_state(&both)).unwrap(), both);
        assert_eq!(
            hex, VERSION_3_CREDITED,
            "version 3 must read as it was written"
        );
        assert_eq!(decode_state(&bytes(&[VERSION_3_CREDITED])).unwrap(), s);
    }

    #[test]
    fn a_state_version_4_would_read_differently_is_written_as_version_3() {
        // An idempotency key that `IdempotencyKey::parse` refuses (only a
        // deserializer can make one): version 4 reads keys through `parse`.
        let key: crate::ids::IdempotencyKey = serde_json::from_str("\"a b\"").unwrap();
        let mut s = AccountState::new(AccountId(7));
        s.idempotency.insert(
            key,
            crate::domain::state::IdempotencyEntry {
                fingerprint: 1,
                op: 1,
                at: crate::time::Timestamp(5),
            },
        );
        let bytes = encode_state(&s);
        assert_eq!(&bytes[..6], b"OKST\x03\x00");
        assert_eq!(decode_state(&bytes).unwrap(), s);
        s.idempotency.clear();
        assert_eq!(&encode_state(&s)[..6], b"OKST\x04\x00");
    }

    /// A state whose one operation has `amount` (as a deserializer made it).
    fn with_op_amount(amount: crate::money::Amount) -> AccountState {
        let mut s = AccountState::new(AccountId(7));
        s.ops.insert(
            1,
            crate::domain::state::OpRecord::Transfer {
                to: AccountId(8),
                amount,
                fee: dec!(0),
                memo: None,
                status: crate::domain::state::TransferStatus::Completed,
                at: crate::time::Timestamp(5),
                updated: crate::time::Timestamp(6),
            },
        );
        s
    }

    #[test]
    fn amounts_and_currencies_version_4_would_read_differently_are_written_as_version_3() {
        let usd = crate::money::Currency::new("USD", 2).unwrap();
        let good = crate::money::Amount::new(dec!(1.5), usd).unwrap();
        let mut json = serde_json::to_value(good).unwrap();
        assert_eq!(&encode_state(&with_op_amount(good))[..6], b"OKST\x04\x00");
        // Off its currency's scale (`Amount::new` would make 1.50): version 4
        // would read it back as 1.50, or refuse it.
        json["value"] = serde_json::json!("1.5");
        let off_scale: crate::money::Amount = serde_json::from_value(json.clone()).unwrap();
        assert!(!off_scale.is_canonical());
        // A currency `Currency::new` refuses (lower-case code): version 4
        // refuses to read it.
        json["value"] = serde_json::to_value(good.value()).unwrap();
        json["currency"]["code"] = serde_json::json!([117, 115, 100]);
        let bad_currency: crate::money::Amount = serde_json::from_value(json).unwrap();
        assert!(!bad_currency.currency().is_valid());
        for amount in [off_scale, bad_currency] {
            let s = with_op_amount(amount);
            let bytes = encode_state(&s);
            assert_eq!(&bytes[..6], b"OKST\x03\x00", "{amount:?}");
            let back = decode_state(&bytes).unwrap();
            assert_eq!(back, s);
            let crate::domain::state::OpRecord::Transfer { amount: read, .. } = back.ops[&1] else {
                unreachable!("a transfer was written")
            };
            assert_eq!(read.value().serialize(), amount.value().serialize());
            assert_eq!(read.currency().code_bytes(), amount.currency().code_bytes());
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let mut tagged = encode_state(&AccountState::new(AccountId(1)));
        tagged[4] = 9;
        assert_eq!(decode_state(&tagged), Err(CodecError::UnknownVersion(9)));
        assert_eq!(
            decode_state(b"OKST\x01"),
            Err(CodecError::Truncated { needed: 1 })
        );
        assert!(decode_state(&[0xff; 40]).is_err());
        let mut legacy = bytes(BEFORE_ISSUE_9);
        legacy.push(0);
        assert!(
            decode_state(&legacy).is_err(),
            "trailing bytes match no layout"
        );
    }
}
