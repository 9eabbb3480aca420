//! Account state format version 4: `AccountState` in a compact layout written
//! by hand, so the bytes are defined here and not by the field order of domain
//! structs. Version 3 (postcard) spelled every decimal as a string, every time
//! in full and the account's own id inside every operation id; a busy account's
//! 256 notifications and its day of operations made it ~7 KB. Here amounts are
//! integer mantissas, times are deltas, the own account is implied and a
//! notification about one of the account's own operations refers to it.
//!
//! ```text
//! body   = id u64 LE | flags u8 | [opened_at: zigzag varint ms] | status u8
//!          | kyc_tier u8 | locale u8 | scale u8 | next_op varint
//!          | notification_seq varint | books | daily | ops | idempotency
//!          | credited | outgoing | recent_deposits | new_recipients
//!          | known_recipients | alerts | notifications
//!          | rest: postcard of (profile, password_hash, sessions, contacts,
//!            security, challenges, kyc, status_reason), to the last byte
//! flags  = 0x01 opened, 0x02 opened_at stored, 0x04 the velocity alert raised
//! ```
//!
//! - A list is `count varint | count × item`. Counts are bounded by the bytes
//!   left before anything is allocated.
//! - A time is `zigzag varint (ms − previous)`, where previous is the time
//!   before it in the same list and, for a list's first time, the base: the
//!   account's `opened_at`, or 0 when it has none (wrapping arithmetic, so any
//!   `i64` round-trips).
//! - A decimal `dec(s)` with an implied scale `s` (its currency's, or the
//!   body's `scale` byte for currency-less marks) is a varint `h`:
//!   `h & 3 = 0`: mantissa `unzigzag(h >> 2)` at scale `s`; `h & 3 = 1`:
//!   mantissa `unzigzag(h >> 2)`, then its scale u8 (≤ 28); `h = 2`: the 16
//!   bytes of `Decimal::serialize` follow (mantissas beyond 2^61 in magnitude,
//!   and negative zero). Every `Decimal` is exact in one of the three.
//! - A currency is a varint index into the currencies this body met so far,
//!   in order of first appearance; the index equal to their count introduces
//!   a new one: its 3 code bytes and scale u8. An account (other than the
//!   body's own) is alike: an index into the accounts met so far, the next
//!   index followed by the id u64 LE, so each id is written once.
//! - An amount is `currency | dec(currency's scale)`; a string is
//!   `varint length | UTF-8`; an optional string is `0 | 1 string`.
//!
//! ```text
//! books         = count × (currency | available | held | deposited | fees
//!                 | paid_out | in_flight_out), each dec(currency's scale)
//! daily         = day zigzag varint | count × (currency | dec(its scale))
//! ops           = count × (n − previous n varint (from 0) | op)
//! op            = 1 deposit:    amount | fee | method u8 | card string | at
//!               | 2 withdrawal: amount | fee | method u8 | destination
//!                 | wstatus | at | zigzag varint (updated − at)
//!               | 3 transfer:   to account | amount | fee | memo optional string
//!                 | tstatus | at | zigzag varint (updated − at)
//!                 (fee: dec(the amount's currency scale))
//! destination   = 1 clear: string | 2 sealed: masked string
//!                 | fingerprint 16 bytes | varint length + sealed bytes
//! wstatus       = 0 processing | 1 completed | 2 failed: reason string
//! tstatus       = 0 in flight | 1 completed | 2 reversed: rejection u8
//! idempotency   = count × (key string | fingerprint u64 LE | op varint | at),
//!                 ordered by (at, key)
//! credited      = count × (account | n varint | at
//!                 | varint (debit_lsn + 1, wrapping: a legacy mark is 0)
//!                 | refused u8: 0 none, else the rejection), ordered by (at, id)
//! outgoing, recent_deposits = count × (at | dec(scale))
//! new_recipients = count × (at | to account)
//! known_recipients = count × account, ascending
//! alerts        = count × (n varint | rule u8 | severity u8 | action u8
//!                 | message string | at)
//! notifications = count × (seq − previous seq varint (wrapping, from 0) | at
//!                 | kind u8 | body)
//!   1 balance:     currency | available | held
//!   8 balance step: currency | zigzag varint (available's mantissa − that of
//!                  the previous balance notification of that currency in
//!                  the list, at its scale) | held
//!   2 transaction: op kind × 4 + tx status u8 | tflags u8 | n varint
//!                  | [op account] | [currency | amount | fee]
//!                  | [counterparty account]
//!   3 alert:       aflags u8 | n varint | [op account] | rule u8 | severity u8
//!                  | action u8 | message string
//!   4 status:      from u8 | to u8 | reason string
//!   5 session:     sflags u8 | n varint | [op account] | device string
//!                  | [country string]
//!   6 kyc:         status u8 | tier u8 | reason optional string
//!   7 security:    change u8 | totp_enabled u8 | recovery_codes_left varint
//! tflags = 0x01 out, 0x02 op account stored (else the account's own),
//!          0x04 counterparty is the op account, 0x08 counterparty stored,
//!          0x10 currency, amount, fee and counterparty are those of the
//!          account's own operation n in `ops` (not stored)
//! aflags = 0x01 op account stored; sflags = 0x01 op account stored,
//!          0x02 country, 0x04 new device
//! ```
//!
//! Enum tags are the tables of `tags.rs`. The `rest` keeps postcard for the
//! small, rarely busy parts (their enums are pinned by `enum_order.rs`). A
//! reader refuses unknown tags and flags, bad UTF-8, out-of-range scales and
//! trailing bytes with a [`CodecError`], never a panic; `state.rs` writes a
//! body only after reading it back equal to the state (else version 3).

use rust_decimal::Decimal;

use super::tags;
use super::CodecError;
use crate::domain::command::Profile;
use crate::domain::destination::{PayoutDestination, SealedDestination};
use crate::domain::notification::{Notification, NotificationKind};
use crate::domain::security::{Challenge, Kyc, Security};
use crate::domain::state::{
    AccountState, AlertRecord, Book, Contact, CreditMark, DailyUsage, IdempotencyEntry,
    NewRecipientMark, OpRecord, OutgoingMark, RaisedAlerts, Session, TransferStatus,
    WithdrawalStatus,
};
use crate::ids::{AccountId, IdempotencyKey, OpId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;
pub(in crate::codec) use read::Dec;
pub(in crate::codec) use write::Enc;

mod read;
#[cfg(test)]
mod tests;
mod write;

const FLAG_OPENED: u8 = 0x01;
const FLAG_OPENED_AT: u8 = 0x02;
const FLAG_VELOCITY_RAISED: u8 = 0x04;

const OP_DEPOSIT: u8 = 1;
const OP_WITHDRAWAL: u8 = 2;
const OP_TRANSFER: u8 = 3;

const DEST_CLEAR: u8 = 1;
const DEST_SEALED: u8 = 2;

const NOTE_BALANCE: u8 = 1;
const NOTE_TRANSACTION: u8 = 2;
const NOTE_ALERT: u8 = 3;
const NOTE_STATUS: u8 = 4;
const NOTE_SESSION: u8 = 5;
const NOTE_KYC: u8 = 6;
const NOTE_SECURITY: u8 = 7;
const NOTE_BALANCE_STEP: u8 = 8;

const TX_OUT: u8 = 0x01;
const TX_OP_ACCOUNT: u8 = 0x02;
const TX_PEER_IS_OP_ACCOUNT: u8 = 0x04;
const TX_PEER: u8 = 0x08;
const TX_AS_OP: u8 = 0x10;
const ID_OP_ACCOUNT: u8 = 0x01;
const SESSION_COUNTRY: u8 = 0x02;
const SESSION_NEW_DEVICE: u8 = 0x04;

/// Decimal forms (the low two bits of a decimal's varint).
const DEC_IMPLIED_SCALE: u64 = 0;
const DEC_OWN_SCALE: u64 = 1;
const DEC_FULL: u64 = 2;
/// Mantissas whose zigzag value is below this take the short forms (the
/// varint keeps two bits for the form).
const DEC_SHORT_LIMIT: u64 = 1 << 62;

/// The parts that stay postcard (see the module doc): encoded by reference...
type RestRef<'a> = (
    &'a Profile,
    &'a String,
    &'a Vec<Session>,
    &'a Vec<Contact>,
    &'a Security,
    &'a Vec<Challenge>,
    &'a Kyc,
    &'a Option<String>,
);
/// ... and decoded owned, in the same order.
type RestOwned = (
    Profile,
    String,
    Vec<Session>,
    Vec<Contact>,
    Security,
    Vec<Challenge>,
    Kyc,
    Option<String>,
);

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Whether two decimals are the same bits (value, scale and sign), not only
/// the same number: `1.5` and `1.50` print differently.
fn same_decimal(a: Decimal, b: Decimal) -> bool {
    a.serialize() == b.serialize()
}

/// Appends the version-4 body of `state` to `out`: `false` when it would not
/// read back as `state` ([`Enc::exact`]; then write version 3).
pub(crate) fn encode(state: &AccountState, out: &mut Vec<u8>) -> bool {
    // Every field named: a new one fails to compile until it is encoded.
    let AccountState {
        id,
        opened,
        opened_at,
        profile,
        password_hash,
        sessions,
        contacts,
        security,
        challenges,
        kyc,
        alerts,
        recent_deposits,
        status,
        status_reason,
        kyc_tier,
        books,
        next_op,
        ops,
        idempotency,
        credited,
        outgoing,
        daily,
        known_recipients,
        new_recipients,
        raised,
        notifications,
        notification_seq,
        locale,
    } = state;
    let RaisedAlerts { velocity } = raised;
    let scale = books.first().map_or(2, |b| b.currency.scale() as u8);
    let base = opened_at.map_or(0, Timestamp::millis);
    // Room for a typical body (most items take a few bytes to a few dozen),
    // and for the accounts it names, so neither grows while writing.
    let items = ops.len() + idempotency.len() + credited.len() + known_recipients.len();
    out.reserve(128 + 12 * notifications.len() + 24 * items);
    let accounts = ops.len() + credited.len() + known_recipients.len();
    let mut e = Enc::new(out, *id, base, u32::from(scale), accounts);
    e.u64(id.0);
    let mut flags = 0;
    if *opened {
        flags |= FLAG_OPENED;
    }
    if opened_at.is_some() {
        flags |= FLAG_OPENED_AT;
    }
    if *velocity {
        flags |= FLAG_VELOCITY_RAISED;
    }
    e.u8(flags);
    if let Some(at) = opened_at {
        e.varint(zigzag(at.millis()));
    }
    e.u8(tags::status_tag(*status));
    e.u8(*kyc_tier);
    e.u8(tags::locale_tag(*locale));
    e.u8(scale);
    e.varint(*next_op);
    e.varint(*notification_seq);
    e.books(books);
    e.daily(daily);
    e.ops(ops);
    e.idempotency(idempotency);
    e.credited(credited);
    e.marks(outgoing.marks());
    e.marks(recent_deposits);
    e.new_recipients(new_recipients);
    e.known_recipients(known_recipients);
    e.alerts(alerts);
    e.notifications(notifications, ops);
    let rest: RestRef<'_> = (
        profile,
        password_hash,
        sessions,
        contacts,
        security,
        challenges,
        kyc,
        status_reason,
    );
    let exact = e.exact();
    let out = e.out();
    // unwrap: postcard into a Vec only fails on writer errors, and a Vec never fails.
    *out = postcard::to_extend(&rest, std::mem::take(out)).unwrap();
    exact
}

/// The state in a version-4 body (all of `body`, nothing left over).
pub(crate) fn decode(body: &[u8]) -> Result<AccountState, CodecError> {
    let mut d = Dec::new(body);
    let id = AccountId(d.r.u64()?);
    d.own = id;
    let flags = d.r.u8()?;
    if flags & !(FLAG_OPENED | FLAG_OPENED_AT | FLAG_VELOCITY_RAISED) != 0 {
        return Err(CodecError::Invalid("account state flags"));
    }
    let opened_at = if flags & FLAG_OPENED_AT != 0 {
        Some(Timestamp(unzigzag(d.r.varint()?)))
    } else {
        None
    };
    d.base = opened_at.map_or(0, Timestamp::millis);
    let status = tags::status_of(d.r.u8()?)?;
    let kyc_tier = d.r.u8()?;
    let locale = tags::locale_of(d.r.u8()?)?;
    let scale = d.r.u8()?;
    if scale > 28 {
        return Err(CodecError::Invalid("account state decimal scale over 28"));
    }
    d.scale = u32::from(scale);
    let next_op = d.r.varint()?;
    let notification_seq = d.r.varint()?;
    let books = d.books()?;
    let daily = d.daily()?;
    let ops = d.ops()?;
    let idempotency = d.idempotency()?;
    let credited = d.credited()?;
    let outgoing = d.marks()?;
    let recent_deposits = d.marks()?;
    let new_recipients = d.new_recipients()?;
    let known_recipients = d.known_recipients()?;
    let alerts = d.alerts()?;
    let notifications = d.notifications(&ops)?;
    let rest = d.r.take(d.r.remaining())?;
    let (profile, password_hash, sessions, contacts, security, challenges, kyc, status_reason) =
        match postcard::take_from_bytes::<RestOwned>(rest) {
            Ok((rest, [])) => rest,
            _ => {
                return Err(CodecError::Invalid(
                    "account state (version 4) profile and security do not decode",
                ))
            }
        };
    Ok(AccountState {
        id,
        opened: flags & FLAG_OPENED != 0,
        opened_at,
        profile,
        password_hash,
        sessions,
        contacts,
        security,
        challenges,
        kyc,
        alerts,
        recent_deposits,
        status,
        status_reason,
        kyc_tier,
        books,
        next_op,
        ops,
        idempotency,
        credited,
        outgoing: outgoing.into(),
        daily,
        known_recipients,
        new_recipients,
        raised: RaisedAlerts {
            velocity: flags & FLAG_VELOCITY_RAISED != 0,
        },
        notifications,
        notification_seq,
        locale,
    })
}

/// The available balance `next` as a step in mantissa from `prev`, when both
/// have the same scale and fit 64 bits (and `next` is not negative zero).
fn balance_step(prev: Decimal, next: Decimal) -> Option<i64> {
    if prev.scale() != next.scale() || (next.is_zero() && next.is_sign_negative()) {
        return None;
    }
    let prev = i64::try_from(prev.mantissa()).ok()?;
    i64::try_from(next.mantissa()).ok()?.checked_sub(prev)
}

/// What a transaction notification about an operation says of it when it
/// repeats the operation: currency, amount, fee and counterparty.
type OpTerms = (Currency, Decimal, Decimal, Option<AccountId>);

fn op_terms(op: &OpRecord) -> OpTerms {
    let (amount, fee, to) = match op {
        OpRecord::Deposit { amount, fee, .. } | OpRecord::Withdrawal { amount, fee, .. } => {
            (amount, fee, None)
        }
        OpRecord::Transfer {
            amount, fee, to, ..
        } => (amount, fee, Some(*to)),
    };
    (amount.currency(), amount.value(), *fee, to)
}

/// Whether a notification's terms are exactly (bit for bit) the operation's.
fn same_terms(a: &OpTerms, b: &OpTerms) -> bool {
    a.0 == b.0 && same_decimal(a.1, b.1) && same_decimal(a.2, b.2) && a.3 == b.3
}
