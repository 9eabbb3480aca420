//! The events of one command as a log record's payload, in **events format 2**
//! (record kind 3, [`RecordKind::EventsV2`]): written by hand, so every stored
//! enum has an explicit numeric tag and every amount is an integer count of its
//! currency's minor unit. Format 1 (record kind 1, [`RecordKind::Events`]) is
//! postcard of the domain's `Event`s — enums by position, decimals as strings —
//! and is still read (every log written before 2026-11-30's seventh session),
//! and still written when a deployment pins it for a rolling upgrade
//! ([`EventsFormat`]).
//!
//! ```text
//! payload = count varint | count × event
//! event   = at | tag u8 | body
//! ```
//!
//! The primitives are those of account state version 4 (`state_v4/mod.rs`):
//! `at` is a zigzag varint of milliseconds minus the previous event's (the
//! first: minus 0); an account is an index into the accounts this payload met
//! so far, the next index followed by its id u64 LE; a currency likewise (3
//! code bytes and its scale on first use); an amount is `currency | dec` with
//! the currency's scale implied, so a CNY 12.50 is the varint of 1250 (times
//! 4, the form's two bits): its minor units; a fee is a `dec` at the amount's
//! scale. `op`, `n` and counts are varints; a string is `varint length |
//! UTF-8`; `opt` is `0 | 1 value`; `bool` is one byte 0 or 1; `hash` is 32
//! bytes; an op id (a transfer's) is `account | n varint`; a request is
//! `key string | fingerprint u64 LE`.
//!
//! ```text
//!  1 Opened:              display_name string | email opt string | phone opt string | password_hash string
//!  2 Deposited:           op | request | amount | fee | method u8 | card string
//!  3 WithdrawalRequested: op | request | amount | fee | method u8 | destination
//!  4 WithdrawalSettled:   op
//!  5 WithdrawalFailed:    op | reason string
//!  6 TransferDebited:     op | request | to account | amount | fee | memo opt string | new_recipient bool
//!  7 TransferCredited:    transfer op id | from account | amount | memo opt string
//!  8 TransferCompleted:   op
//!  9 TransferReversed:    op | rejection u8
//! 10 StatusChanged:       from u8 | to u8 | reason string
//! 11 KycTierChanged:      from u8 | to u8
//! 12 AlertRaised:         op | rule u8 | severity u8 | action u8 | message string
//! 13 SessionCreated:      op | token_hash hash | device_id string | device_name opt string
//!                         | country opt string | expires_at (absolute zigzag ms) | new_device bool
//! 14 LoginFailed:         locked_until opt (absolute zigzag ms)
//! 15 ResetStarted:        code
//! 16 ResetAttemptFailed
//! 17 PasswordChanged:     password_hash string
//! 18 TotpBegun:           secret (varint length | bytes)
//! 19 TotpEnabled:         step varint
//! 20 ChallengeCreated:    n | key string | fingerprint u64 LE | method u8 | code_hash opt hash
//!                         | created_at, expires_at (absolute zigzag ms) | attempts_left varint
//!                         | consumed bool | command (varint length | postcard of the command)
//! 21 ChallengeAttemptFailed: n
//! 22 ChallengeConsumed:   n | totp_step opt varint
//! 23 KycSubmitted:        full_name bytes | id_type u8 | id_number bytes | id_number_masked string
//!                         | documents count × string
//! 24 KycReviewed:         approved bool | reason opt string
//! 25 SessionRevoked:      n
//! 26 SessionsRevoked:     except opt varint
//! 27 ContactAdded:        op | alias string | account
//! 28 ContactRemoved:      n
//! 29 Refused:             rejection u8
//! 30 SecurityCodeSent:    code
//! 31 SecurityProofFailed
//! 32 SecurityProofPassed: 1 code | 2 totp step varint | 3 recovery hash
//! 33 TotpActivated:       step varint | count × hash
//! 34 TotpRemoved:         by_operator bool | reason opt string
//! 35 RecoveryCodesRegenerated: count × hash
//! 36 LocaleSet:           locale u8
//! 37 CreditAccepted:      transfer op id | from account | amount | memo opt string | debit_lsn varint
//! 38 CreditRefused:       transfer op id | from account | rejection u8 | debit_lsn varint
//! code = code_hash hash | expires_at (absolute zigzag ms) | attempts_left varint
//! ```
//!
//! Unit enums use the tables of `tags.rs`. The one part left postcard is the
//! operation a step-up challenge guards (a whole `Command`, written once per
//! challenge and read back only to run it; its enums are pinned by
//! `enum_order.rs`). A reader refuses unknown tags, bad UTF-8, out-of-range
//! values and trailing bytes with a [`CodecError`], never a panic. The writer
//! is infallible: every value the domain holds has an encoding.

use super::frame::RecordKind;
use super::state_v4::{Dec, Enc};
use super::{tags, CodecError};
use crate::domain::command::{NewSession, Profile};
use crate::domain::event::{Event, EventBody, RequestRef};
use crate::domain::security::{Challenge, KycSubmission, PassedProof, PendingCode};
use crate::ids::{AccountId, IdempotencyKey, OpId};
use crate::money::Amount;
use crate::time::Timestamp;
use rust_decimal::Decimal;

/// Which events format a node writes. Every build reads both; a deployment
/// upgrading node by node pins the older one until every node runs a build
/// that reads the newer (`[engine] events_format = 1`), then lifts the pin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EventsFormat {
    /// Postcard of the domain types (record kind 1).
    V1,
    /// This module's layout (record kind 3): the default.
    #[default]
    V2,
}

impl EventsFormat {
    /// The format numbered `n` (1 or 2).
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(EventsFormat::V1),
            2 => Some(EventsFormat::V2),
            _ => None,
        }
    }

    /// The record kind its payloads are stored under.
    pub fn record_kind(self) -> RecordKind {
        match self {
            EventsFormat::V1 => RecordKind::Events,
            EventsFormat::V2 => RecordKind::EventsV2,
        }
    }
}

/// The payload of `events` in `format`, with the record kind to store it under.
pub fn encode_record(events: &[Event], format: EventsFormat) -> (RecordKind, Vec<u8>) {
    let payload = match format {
        EventsFormat::V1 => crate::domain::event::encode_events(events),
        EventsFormat::V2 => encode(events),
    };
    (format.record_kind(), payload)
}

/// The events of a record of either events kind; `None` for a record kind
/// that holds no events (the reserved watermark).
pub fn decode_record(kind: RecordKind, payload: &[u8]) -> Result<Option<Vec<Event>>, CodecError> {
    match kind {
        RecordKind::Events => crate::domain::event::decode_events(payload)
            .map(Some)
            .map_err(|_| CodecError::Invalid("events format 1 (postcard) does not decode")),
        RecordKind::EventsV2 => decode(payload).map(Some),
        RecordKind::CreditWatermark => Ok(None),
    }
}

const OPENED: u8 = 1;
const DEPOSITED: u8 = 2;
const WITHDRAWAL_REQUESTED: u8 = 3;
const WITHDRAWAL_SETTLED: u8 = 4;
const WITHDRAWAL_FAILED: u8 = 5;
const TRANSFER_DEBITED: u8 = 6;
const TRANSFER_CREDITED: u8 = 7;
const TRANSFER_COMPLETED: u8 = 8;
const TRANSFER_REVERSED: u8 = 9;
const STATUS_CHANGED: u8 = 10;
const KYC_TIER_CHANGED: u8 = 11;
const ALERT_RAISED: u8 = 12;
const SESSION_CREATED: u8 = 13;
const LOGIN_FAILED: u8 = 14;
const RESET_STARTED: u8 = 15;
const RESET_ATTEMPT_FAILED: u8 = 16;
const PASSWORD_CHANGED: u8 = 17;
const TOTP_BEGUN: u8 = 18;
const TOTP_ENABLED: u8 = 19;
const CHALLENGE_CREATED: u8 = 20;
const CHALLENGE_ATTEMPT_FAILED: u8 = 21;
const CHALLENGE_CONSUMED: u8 = 22;
const KYC_SUBMITTED: u8 = 23;
const KYC_REVIEWED: u8 = 24;
const SESSION_REVOKED: u8 = 25;
const SESSIONS_REVOKED: u8 = 26;
const CONTACT_ADDED: u8 = 27;
const CONTACT_REMOVED: u8 = 28;
const REFUSED: u8 = 29;
const SECURITY_CODE_SENT: u8 = 30;
const SECURITY_PROOF_FAILED: u8 = 31;
const SECURITY_PROOF_PASSED: u8 = 32;
const TOTP_ACTIVATED: u8 = 33;
const TOTP_REMOVED: u8 = 34;
const RECOVERY_CODES_REGENERATED: u8 = 35;
const LOCALE_SET: u8 = 36;
const CREDIT_ACCEPTED: u8 = 37;
const CREDIT_REFUSED: u8 = 38;

const PROOF_CODE: u8 = 1;
const PROOF_TOTP_STEP: u8 = 2;
const PROOF_RECOVERY: u8 = 3;

/// The format-2 payload of `events`.
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 48 * events.len());
    // No own account or base time: ids and times are written relative to what
    // the payload met before.
    let mut e = Enc::new(&mut out, AccountId(0), 0, 0, 2);
    e.count(events.len());
    let mut prev = 0i64;
    for event in events {
        e.time(&mut prev, event.at);
        body(&mut e, &event.body);
    }
    out
}

fn abs_time(e: &mut Enc<'_>, t: Timestamp) {
    e.time(&mut 0, t);
}

fn request(e: &mut Enc<'_>, r: &RequestRef) {
    e.str(r.key.as_str());
    e.u64(r.fingerprint);
}

/// What a deposit and a withdrawal start with: `op | request | amount | fee`.
fn money_head(e: &mut Enc<'_>, op: u64, r: &RequestRef, amount: &Amount, fee: Decimal) {
    e.varint(op);
    request(e, r);
    e.amount(amount);
    e.dec(fee, amount.currency().scale());
}

fn op_id(e: &mut Enc<'_>, id: OpId) {
    e.account(id.account);
    e.varint(id.n);
}

fn bool(e: &mut Enc<'_>, b: bool) {
    e.u8(u8::from(b));
}

fn opt_varint(e: &mut Enc<'_>, v: Option<u64>) {
    match v {
        None => e.u8(0),
        Some(v) => {
            e.u8(1);
            e.varint(v);
        }
    }
}

fn bytes(e: &mut Enc<'_>, b: &[u8]) {
    e.count(b.len());
    e.out().extend_from_slice(b);
}

fn code(e: &mut Enc<'_>, c: &PendingCode) {
    e.out().extend_from_slice(&c.code_hash);
    abs_time(e, c.expires_at);
    e.varint(u64::from(c.attempts_left));
}

fn body(e: &mut Enc<'_>, body: &EventBody) {
    match body {
        EventBody::Opened {
            profile:
                Profile {
                    display_name,
                    email,
                    phone,
                },
            password_hash,
        } => {
            e.u8(OPENED);
            e.str(display_name);
            e.opt_str(email);
            e.opt_str(phone);
            e.str(password_hash);
        }
        EventBody::Deposited {
            op,
            request: r,
            amount,
            fee,
            method,
            card,
        } => {
            e.u8(DEPOSITED);
            money_head(e, *op, r, amount, *fee);
            e.u8(tags::deposit_method_tag(*method));
            e.str(card);
        }
        EventBody::WithdrawalRequested {
            op,
            request: r,
            amount,
            fee,
            method,
            destination,
        } => {
            e.u8(WITHDRAWAL_REQUESTED);
            money_head(e, *op, r, amount, *fee);
            e.u8(tags::withdrawal_method_tag(*method));
            e.destination(destination);
        }
        EventBody::WithdrawalSettled { op } => {
            e.u8(WITHDRAWAL_SETTLED);
            e.varint(*op);
        }
        EventBody::WithdrawalFailed { op, reason } => {
            e.u8(WITHDRAWAL_FAILED);
            e.varint(*op);
            e.str(reason);
        }
        EventBody::TransferDebited {
            op,
            request: r,
            to,
            amount,
            fee,
            memo,
            new_recipient,
        } => {
            e.u8(TRANSFER_DEBITED);
            e.varint(*op);
            request(e, r);
            e.account(*to);
            e.amount(amount);
            e.dec(*fee, amount.currency().scale());
            e.opt_str(memo);
            bool(e, *new_recipient);
        }
        EventBody::TransferCredited {
            transfer,
            from,
            amount,
            memo,
        } => {
            e.u8(TRANSFER_CREDITED);
            op_id(e, *transfer);
            e.account(*from);
            e.amount(amount);
            e.opt_str(memo);
        }
        EventBody::TransferCompleted { op } => {
            e.u8(TRANSFER_COMPLETED);
            e.varint(*op);
        }
        EventBody::TransferReversed { op, reason } => {
            e.u8(TRANSFER_REVERSED);
            e.varint(*op);
            e.u8(tags::rejection_tag(*reason));
        }
        EventBody::StatusChanged { from, to, reason } => {
            e.u8(STATUS_CHANGED);
            e.u8(tags::status_tag(*from));
            e.u8(tags::status_tag(*to));
            e.str(reason);
        }
        EventBody::KycTierChanged { from, to } => {
            e.u8(KYC_TIER_CHANGED);
            e.u8(*from);
            e.u8(*to);
        }
        EventBody::AlertRaised {
            op,
            rule,
            severity,
            action,
            message,
        } => {
            e.u8(ALERT_RAISED);
            e.varint(*op);
            e.u8(tags::fraud_rule_tag(*rule));
            e.u8(tags::severity_tag(*severity));
            e.u8(tags::fraud_action_tag(*action));
            e.str(message);
        }
        EventBody::SessionCreated {
            op,
            session:
                NewSession {
                    token_hash,
                    device_id,
                    device_name,
                    country,
                    expires_at,
                },
            new_device,
        } => {
            e.u8(SESSION_CREATED);
            e.varint(*op);
            e.out().extend_from_slice(token_hash);
            e.str(device_id);
            e.opt_str(device_name);
            e.opt_str(country);
            abs_time(e, *expires_at);
            bool(e, *new_device);
        }
        EventBody::LoginFailed { locked_until } => {
            e.u8(LOGIN_FAILED);
            match locked_until {
                None => e.u8(0),
                Some(t) => {
                    e.u8(1);
                    abs_time(e, *t);
                }
            }
        }
        EventBody::ResetStarted { code: c } => {
            e.u8(RESET_STARTED);
            code(e, c);
        }
        EventBody::ResetAttemptFailed => e.u8(RESET_ATTEMPT_FAILED),
        EventBody::PasswordChanged { password_hash } => {
            e.u8(PASSWORD_CHANGED);
            e.str(password_hash);
        }
        EventBody::TotpBegun { secret } => {
            e.u8(TOTP_BEGUN);
            bytes(e, secret);
        }
        EventBody::TotpEnabled { step } => {
            e.u8(TOTP_ENABLED);
            e.varint(*step);
        }
        EventBody::ChallengeCreated {
            challenge:
                Challenge {
                    n,
                    key,
                    fingerprint,
                    command,
                    method,
                    code_hash,
                    created_at,
                    expires_at,
                    attempts_left,
                    consumed,
                },
        } => {
            e.u8(CHALLENGE_CREATED);
            e.varint(*n);
            e.str(key.as_str());
            e.u64(*fingerprint);
            e.u8(tags::challenge_method_tag(*method));
            match code_hash {
                None => e.u8(0),
                Some(h) => {
                    e.u8(1);
                    e.out().extend_from_slice(h);
                }
            }
            abs_time(e, *created_at);
            abs_time(e, *expires_at);
            e.varint(u64::from(*attempts_left));
            bool(e, *consumed);
            // unwrap: postcard into a Vec only fails on writer errors, and a
            // Vec never fails.
            bytes(e, &postcard::to_allocvec(command).unwrap());
        }
        EventBody::ChallengeAttemptFailed { n } => {
            e.u8(CHALLENGE_ATTEMPT_FAILED);
            e.varint(*n);
        }
        EventBody::ChallengeConsumed { n, totp_step } => {
            e.u8(CHALLENGE_CONSUMED);
            e.varint(*n);
            opt_varint(e, *totp_step);
        }
        EventBody::KycSubmitted {
            submission:
                KycSubmission {
                    full_name,
                    id_type,
                    id_number,
                    id_number_masked,
                    documents,
                },
        } => {
            e.u8(KYC_SUBMITTED);
            bytes(e, full_name);
            e.u8(tags::id_type_tag(*id_type));
            bytes(e, id_number);
            e.str(id_number_masked);
            e.count(documents.len());
            for d in documents {
                e.str(d);
            }
        }
        EventBody::KycReviewed { approved, reason } => {
            e.u8(KYC_REVIEWED);
            bool(e, *approved);
            e.opt_str(reason);
        }
        EventBody::SessionRevoked { n } => {
            e.u8(SESSION_REVOKED);
            e.varint(*n);
        }
        EventBody::SessionsRevoked { except } => {
            e.u8(SESSIONS_REVOKED);
            opt_varint(e, *except);
        }
        EventBody::ContactAdded { op, alias, account } => {
            e.u8(CONTACT_ADDED);
            e.varint(*op);
            e.str(alias);
            e.account(*account);
        }
        EventBody::ContactRemoved { n } => {
            e.u8(CONTACT_REMOVED);
            e.varint(*n);
        }
        EventBody::Refused { rejection } => {
            e.u8(REFUSED);
            e.u8(tags::rejection_tag(*rejection));
        }
        EventBody::SecurityCodeSent { code: c } => {
            e.u8(SECURITY_CODE_SENT);
            code(e, c);
        }
        EventBody::SecurityProofFailed => e.u8(SECURITY_PROOF_FAILED),
        EventBody::SecurityProofPassed { proof } => {
            e.u8(SECURITY_PROOF_PASSED);
            match proof {
                PassedProof::Code => e.u8(PROOF_CODE),
                PassedProof::TotpStep(step) => {
                    e.u8(PROOF_TOTP_STEP);
                    e.varint(*step);
                }
                PassedProof::Recovery(h) => {
                    e.u8(PROOF_RECOVERY);
                    e.out().extend_from_slice(h);
                }
            }
        }
        EventBody::TotpActivated { step, recovery } => {
            e.u8(TOTP_ACTIVATED);
            e.varint(*step);
            hashes(e, recovery);
        }
        EventBody::TotpRemoved {
            by_operator,
            reason,
        } => {
            e.u8(TOTP_REMOVED);
            bool(e, *by_operator);
            e.opt_str(reason);
        }
        EventBody::RecoveryCodesRegenerated { hashes: h } => {
            e.u8(RECOVERY_CODES_REGENERATED);
            hashes(e, h);
        }
        EventBody::LocaleSet { locale } => {
            e.u8(LOCALE_SET);
            e.u8(tags::locale_tag(*locale));
        }
        EventBody::CreditAccepted {
            transfer,
            from,
            amount,
            memo,
            debit_lsn,
        } => {
            e.u8(CREDIT_ACCEPTED);
            op_id(e, *transfer);
            e.account(*from);
            e.amount(amount);
            e.opt_str(memo);
            e.varint(*debit_lsn);
        }
        EventBody::CreditRefused {
            transfer,
            from,
            reason,
            debit_lsn,
        } => {
            e.u8(CREDIT_REFUSED);
            op_id(e, *transfer);
            e.account(*from);
            e.u8(tags::rejection_tag(*reason));
            e.varint(*debit_lsn);
        }
    }
}

fn hashes(e: &mut Enc<'_>, hashes: &[[u8; 32]]) {
    e.count(hashes.len());
    for h in hashes {
        e.out().extend_from_slice(h);
    }
}

/// The events of a format-2 payload.
pub fn decode(payload: &[u8]) -> Result<Vec<Event>, CodecError> {
    let mut d = Dec::new(payload);
    let n = d.count()?;
    // `count` bounded n by the bytes left, but an event in memory is far
    // larger than its two smallest bytes: reserve for a typical record only
    // (one to three events) and let a real long one grow.
    let mut events = Vec::with_capacity(n.min(8));
    let mut prev = 0i64;
    for _ in 0..n {
        let at = d.time(&mut prev)?;
        let body = read_body(&mut d)?;
        events.push(Event { at, body });
    }
    if d.r.remaining() != 0 {
        return Err(CodecError::Invalid("events format 2: trailing bytes"));
    }
    Ok(events)
}

fn read_abs_time(d: &mut Dec<'_>) -> Result<Timestamp, CodecError> {
    d.time(&mut 0)
}

fn read_request(d: &mut Dec<'_>) -> Result<RequestRef, CodecError> {
    let key = IdempotencyKey::parse(&d.str()?)
        .map_err(|_| CodecError::Invalid("events format 2: idempotency key"))?;
    Ok(RequestRef {
        key,
        fingerprint: d.r.u64()?,
    })
}

/// What [`money_head`] writes.
fn read_money_head(d: &mut Dec<'_>) -> Result<(u64, RequestRef, Amount, Decimal), CodecError> {
    let op = d.r.varint()?;
    let request = read_request(d)?;
    let amount = d.amount()?;
    let fee = d.dec(amount.currency().scale())?;
    Ok((op, request, amount, fee))
}

fn read_op_id(d: &mut Dec<'_>) -> Result<OpId, CodecError> {
    let account = d.account()?;
    Ok(OpId {
        account,
        n: d.r.varint()?,
    })
}

fn read_opt_varint(d: &mut Dec<'_>) -> Result<Option<u64>, CodecError> {
    Ok(if d.bool()? { Some(d.r.varint()?) } else { None })
}

fn read_bytes(d: &mut Dec<'_>) -> Result<Vec<u8>, CodecError> {
    let n = d.count()?;
    Ok(d.r.take(n)?.to_vec())
}

fn read_hash(d: &mut Dec<'_>) -> Result<[u8; 32], CodecError> {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.r.take(32)?);
    Ok(h)
}

fn read_hashes(d: &mut Dec<'_>) -> Result<Vec<[u8; 32]>, CodecError> {
    let n = d.count()?;
    (0..n).map(|_| read_hash(d)).collect()
}

fn read_u32(d: &mut Dec<'_>) -> Result<u32, CodecError> {
    u32::try_from(d.r.varint()?).map_err(|_| CodecError::Invalid("events format 2: u32 over range"))
}

fn read_code(d: &mut Dec<'_>) -> Result<PendingCode, CodecError> {
    Ok(PendingCode {
        code_hash: read_hash(d)?,
        expires_at: read_abs_time(d)?,
        attempts_left: read_u32(d)?,
    })
}

fn read_body(d: &mut Dec<'_>) -> Result<EventBody, CodecError> {
    Ok(match d.r.u8()? {
        OPENED => EventBody::Opened {
            profile: Profile {
                display_name: d.str()?,
                email: d.opt_str()?,
                phone: d.opt_str()?,
            },
            password_hash: d.str()?,
        },
        DEPOSITED => {
            let (op, request, amount, fee) = read_money_head(d)?;
            EventBody::Deposited {
                op,
                request,
                amount,
                fee,
                method: tags::deposit_method_of(d.r.u8()?)?,
                card: d.str()?,
            }
        }
        WITHDRAWAL_REQUESTED => {
            let (op, request, amount, fee) = read_money_head(d)?;
            EventBody::WithdrawalRequested {
                op,
                request,
                amount,
                fee,
                method: tags::withdrawal_method_of(d.r.u8()?)?,
                destination: d.destination()?,
            }
        }
        WITHDRAWAL_SETTLED => EventBody::WithdrawalSettled { op: d.r.varint()? },
        WITHDRAWAL_FAILED => EventBody::WithdrawalFailed {
            op: d.r.varint()?,
            reason: d.str()?,
        },
        TRANSFER_DEBITED => {
            let op = d.r.varint()?;
            let request = read_request(d)?;
            let to = d.account()?;
            let amount = d.amount()?;
            EventBody::TransferDebited {
                op,
                request,
                to,
                fee: d.dec(amount.currency().scale())?,
                amount,
                memo: d.opt_str()?,
                new_recipient: d.bool()?,
            }
        }
        TRANSFER_CREDITED => EventBody::TransferCredited {
            transfer: read_op_id(d)?,
            from: d.account()?,
            amount: d.amount()?,
            memo: d.opt_str()?,
        },
        TRANSFER_COMPLETED => EventBody::TransferCompleted { op: d.r.varint()? },
        TRANSFER_REVERSED => EventBody::TransferReversed {
            op: d.r.varint()?,
            reason: tags::rejection_of(d.r.u8()?)?,
        },
        STATUS_CHANGED => EventBody::StatusChanged {
            from: tags::status_of(d.r.u8()?)?,
            to: tags::status_of(d.r.u8()?)?,
            reason: d.str()?,
        },
        KYC_TIER_CHANGED => EventBody::KycTierChanged {
            from: d.r.u8()?,
            to: d.r.u8()?,
        },
        ALERT_RAISED => EventBody::AlertRaised {
            op: d.r.varint()?,
            rule: tags::fraud_rule_of(d.r.u8()?)?,
            severity: tags::severity_of(d.r.u8()?)?,
            action: tags::fraud_action_of(d.r.u8()?)?,
            message: d.str()?,
        },
        SESSION_CREATED => EventBody::SessionCreated {
            op: d.r.varint()?,
            session: NewSession {
                token_hash: read_hash(d)?,
                device_id: d.str()?,
                device_name: d.opt_str()?,
                country: d.opt_str()?,
                expires_at: read_abs_time(d)?,
            },
            new_device: d.bool()?,
        },
        LOGIN_FAILED => EventBody::LoginFailed {
            locked_until: if d.bool()? {
                Some(read_abs_time(d)?)
            } else {
                None
            },
        },
        RESET_STARTED => EventBody::ResetStarted {
            code: read_code(d)?,
        },
        RESET_ATTEMPT_FAILED => EventBody::ResetAttemptFailed,
        PASSWORD_CHANGED => EventBody::PasswordChanged {
            password_hash: d.str()?,
        },
        TOTP_BEGUN => EventBody::TotpBegun {
            secret: read_bytes(d)?,
        },
        TOTP_ENABLED => EventBody::TotpEnabled {
            step: d.r.varint()?,
        },
        CHALLENGE_CREATED => {
            let n = d.r.varint()?;
            let key = IdempotencyKey::parse(&d.str()?)
                .map_err(|_| CodecError::Invalid("events format 2: idempotency key"))?;
            let fingerprint = d.r.u64()?;
            let method = tags::challenge_method_of(d.r.u8()?)?;
            let code_hash = if d.bool()? { Some(read_hash(d)?) } else { None };
            let created_at = read_abs_time(d)?;
            let expires_at = read_abs_time(d)?;
            let attempts_left = read_u32(d)?;
            let consumed = d.bool()?;
            let command = postcard::from_bytes(&read_bytes(d)?)
                .map_err(|_| CodecError::Invalid("events format 2: challenge command"))?;
            EventBody::ChallengeCreated {
                challenge: Challenge {
                    n,
                    key,
                    fingerprint,
                    command,
                    method,
                    code_hash,
                    created_at,
                    expires_at,
                    attempts_left,
                    consumed,
                },
            }
        }
        CHALLENGE_ATTEMPT_FAILED => EventBody::ChallengeAttemptFailed { n: d.r.varint()? },
        CHALLENGE_CONSUMED => EventBody::ChallengeConsumed {
            n: d.r.varint()?,
            totp_step: read_opt_varint(d)?,
        },
        KYC_SUBMITTED => {
            let full_name = read_bytes(d)?;
            let id_type = tags::id_type_of(d.r.u8()?)?;
            let id_number = read_bytes(d)?;
            let id_number_masked = d.str()?;
            let n = d.count()?;
            let documents = (0..n).map(|_| d.str()).collect::<Result<_, _>>()?;
            EventBody::KycSubmitted {
                submission: KycSubmission {
                    full_name,
                    id_type,
                    id_number,
                    id_number_masked,
                    documents,
                },
            }
        }
        KYC_REVIEWED => EventBody::KycReviewed {
            approved: d.bool()?,
            reason: d.opt_str()?,
        },
        SESSION_REVOKED => EventBody::SessionRevoked { n: d.r.varint()? },
        SESSIONS_REVOKED => EventBody::SessionsRevoked {
            except: read_opt_varint(d)?,
        },
        CONTACT_ADDED => EventBody::ContactAdded {
            op: d.r.varint()?,
            alias: d.str()?,
            account: d.account()?,
        },
        CONTACT_REMOVED => EventBody::ContactRemoved { n: d.r.varint()? },
        REFUSED => EventBody::Refused {
            rejection: tags::rejection_of(d.r.u8()?)?,
        },
        SECURITY_CODE_SENT => EventBody::SecurityCodeSent {
            code: read_code(d)?,
        },
        SECURITY_PROOF_FAILED => EventBody::SecurityProofFailed,
        SECURITY_PROOF_PASSED => EventBody::SecurityProofPassed {
            proof: match d.r.u8()? {
                PROOF_CODE => PassedProof::Code,
                PROOF_TOTP_STEP => PassedProof::TotpStep(d.r.varint()?),
                PROOF_RECOVERY => PassedProof::Recovery(read_hash(d)?),
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "passed proof",
                        tag,
                    })
                }
            },
        },
        TOTP_ACTIVATED => EventBody::TotpActivated {
            step: d.r.varint()?,
            recovery: read_hashes(d)?,
        },
        TOTP_REMOVED => EventBody::TotpRemoved {
            by_operator: d.bool()?,
            reason: d.opt_str()?,
        },
        RECOVERY_CODES_REGENERATED => EventBody::RecoveryCodesRegenerated {
            hashes: read_hashes(d)?,
        },
        LOCALE_SET => EventBody::LocaleSet {
            locale: tags::locale_of(d.r.u8()?)?,
        },
        CREDIT_ACCEPTED => EventBody::CreditAccepted {
            transfer: read_op_id(d)?,
            from: d.account()?,
            amount: d.amount()?,
            memo: d.opt_str()?,
            debit_lsn: d.r.varint()?,
        },
        CREDIT_REFUSED => EventBody::CreditRefused {
            transfer: read_op_id(d)?,
            from: d.account()?,
            reason: tags::rejection_of(d.r.u8()?)?,
            debit_lsn: d.r.varint()?,
        },
        tag => return Err(CodecError::UnknownTag { what: "event", tag }),
    })
}

#[cfg(test)]
mod tests;
