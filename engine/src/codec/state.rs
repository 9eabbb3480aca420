//! The bytes of an account snapshot: `AccountState` behind a format tag, and the
//! untagged layouts older code wrote, so an existing data directory keeps loading.
//!
//! Snapshots used to be plain postcard of `AccountState`, which is positional: a
//! field added to the struct (issue 9 added some to `Security`) made every older
//! snapshot undecodable, and journals are trimmed at snapshots, so replaying
//! instead is no way out. Now a snapshot is `"OKST"` ‖ format version (u16 LE) ‖
//! postcard of the state; [`decode_state`] reads every version it knows and the
//! untagged layouts written before the tag, each through a frozen copy of the
//! shape it had ([`legacy`]). A legacy snapshot can't start with the tag: its
//! first byte would be a one-byte account-id varint and its second (`opened`)
//! must be 0 or 1, never `K`.
//!
//! Changing `AccountState` (or anything inside it) changes what version
//! [`STATE_VERSION`] means: freeze today's shape as a legacy struct for the old
//! version first, then bump the version. The golden-bytes tests below fail when
//! a change would read an existing snapshot differently.

use serde::de::DeserializeOwned;

use crate::codec::CodecError;
use crate::domain::state::AccountState;

/// What every tagged snapshot starts with.
pub const STATE_MAGIC: [u8; 4] = *b"OKST";
/// The version [`encode_state`] writes: postcard of today's `AccountState`.
pub const STATE_VERSION: u16 = 1;

/// A snapshot's bytes: the tag, the version, then the state.
pub fn encode_state(state: &AccountState) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&STATE_VERSION.to_le_bytes());
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
            1 => exact::<AccountState>(body).ok_or(CodecError::Invalid(
                "account state (version 1) does not decode",
            )),
            v => Err(CodecError::UnknownVersion(v)),
        };
    }
    // Untagged: written before the tag, newest layout first. Each must consume
    // every byte, so a layout that merely parses a prefix is not taken for another.
    if let Some(s) = exact::<AccountState>(bytes) {
        return Ok(s);
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

/// Frozen shapes of untagged snapshots. Only `Security` differs between them and
/// today (every other part of `AccountState` kept its layout, checked by the
/// golden bytes), so the legacy state is today's field list with the old
/// `Security` in its place.
pub mod legacy {
    use std::collections::{BTreeMap, VecDeque};

    use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
    use serde::Deserialize;

    use crate::domain::command::Profile;
    use crate::domain::notification::Notification;
    use crate::domain::security::{
        Challenge, Kyc, PendingCode, Security, TotpState, UnchallengedMark,
    };
    use crate::domain::state::{
        AccountState, AccountStatus, AlertRecord, Book, Contact, DailyUsage, IdempotencyEntry,
        NewRecipientMark, OpRecord, OutgoingMark, RaisedAlerts, Session,
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
                reset: s.reset,
                totp: s.totp,
                known_devices: s.known_devices,
                last_login: s.last_login,
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
                reset: s.reset,
                totp: s.totp,
                known_devices: s.known_devices,
                last_login: s.last_login,
                reset_failures: s.reset_failures,
                step_up_failures: s.step_up_failures,
                unchallenged_out: s.unchallenged_out,
                ..Security::default()
            }
        }
    }

    /// `AccountState` as untagged snapshots hold it, with security shape `S`.
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
                ops: s.ops,
                idempotency: s.idempotency,
                credited: s.credited,
                outgoing: s.outgoing,
                daily: s.daily,
                known_recipients: s.known_recipients,
                new_recipients: s.new_recipients,
                raised: s.raised,
                notifications: s.notifications,
                notification_seq: s.notification_seq,
            }
        }
    }
}
