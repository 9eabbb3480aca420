//! History rows in compact form: the members of the Redis row set, layout 4
//! (`okpay:{sNNN}:hist`, see `store/redis/keys.rs`).
//!
//! A row reaches the store as a text key (`<16 hex ms><public op id>`, see
//! `domain::history`) and a payload (postcard of `TxRecord`, whose id, kind and
//! creation time repeat what the key says, whose decimals are strings and whose
//! counterparty of an incoming transfer is the key's own op account). Layout 3
//! stored both as they came, 113 bytes for a typical transfer row; here a row
//! is about 40:
//!
//! ```text
//! member = account u64 BE | key | body
//! key    = ms (6 bytes BE, < 2^48) | kind u8 (1 dep_, 2 tx_, 3 wd_)
//!        | op account u64 BE | n: length u8 (0..=8) + that many bytes BE, minimal
//! body   = version u8 = 0 | the payload as given                      (raw)
//!        | version u8 = 1 | flags u8 | status u8 | currency 3 bytes + scale u8
//!          | amount: zigzag LEB128 mantissa [+ scale u8 when flag 0x10]
//!          | fee:    zigzag LEB128 mantissa [+ scale u8 when flag 0x20]
//!          | counterparty u64 LE when flag 0x02
//!          | memo: LEB128 length + UTF-8 when flag 0x08
//!          | updated - created ms: zigzag LEB128
//! flags  = 0x01 direction out, 0x02 counterparty stored, 0x04 counterparty is
//!          the key's op account, 0x08 memo, 0x10 / 0x20 amount / fee scale
//!          differs from the currency's
//! status = 0 processing, 1 completed, 2 failed, 3 reversed
//! ```
//!
//! The key encoding is prefix-free and orders exactly as the text keys do (the
//! time is fixed-width big-endian, the kind tags follow the prefixes' byte
//! order, the op account is fixed-width, and a minimal length-prefixed
//! big-endian number orders as its value), so a page read backwards from a
//! cursor is the page the text keys give; [`ceiling`] maps any cursor text to
//! the first key at or after it. Only keys of that shape are encoded
//! ([`encode_member`] answers `None` for others, which stay in layout 3). A body
//! is compact only when decoding it gives back the very payload bytes it was
//! made from (checked on every encode); any other payload is stored raw, so no
//! payload is ever read back different from what was written.
//!
//! A **group** member (body tag 2, Redis history layout 5 with groups) holds
//! several rows of one account from one write, all created within one
//! [`GROUP_SLOT_MS`] slot, in ascending key order; it starts like the single
//! member of its first row:
//!
//! ```text
//! group  = account u64 BE | key₀ | 2 | len₀ LEB128 | body₀
//!          | (keyᵢ | lenᵢ LEB128 | bodyᵢ)*        i ≥ 1, keys strictly ascending
//! keyᵢ   = kind u8 (| 0x80 when the op account is the member's account)
//!          | msᵢ − msᵢ₋₁ LEB128 | [op account u64 BE, unless 0x80] | n LEB128
//! bodyᵢ  = a single row's body (tag 0 or 1)
//! ```
//!
//! Only rows written for the first time go into groups; a later version of a
//! row is a single member, which a reader prefers to the row's copy in a
//! group ([`decode_members`]). A single member's removal range (its prefix
//! followed by tag 0 or 1) never covers a group that starts with the same key.

use rust_decimal::Decimal;

use super::wire::{put_varint, Reader};
use super::CodecError;
use crate::domain::history::TxRecord;
use crate::domain::notification::{Direction, TxStatus};
use crate::ids::{AccountId, OpId, OpKind};
use crate::money::Currency;
use crate::time::Timestamp;

/// Body tags: the payload as given, or [`TxRecord`] in compact form.
const BODY_RAW: u8 = 0;
const BODY_TX_V1: u8 = 1;
/// A group member's tag (see the module's comment): above every single body's.
pub const BODY_GROUP: u8 = 2;
/// In a group's later key: the op account is the member's own.
const GROUP_KEY_OWN: u8 = 0x80;

/// The time slots a group's rows share (10 s, dividing a week bucket): every
/// row of a group was created in the slot of its first row, so a reader that
/// has every member from a slot's start up has every row of that slot.
pub const GROUP_SLOT_MS: u64 = 10_000;

/// The start of the group slot holding `ms`.
pub fn slot_start(ms: u64) -> u64 {
    ms - ms % GROUP_SLOT_MS
}

const FLAG_OUT: u8 = 0x01;
const FLAG_COUNTERPARTY: u8 = 0x02;
const FLAG_COUNTERPARTY_IS_OP: u8 = 0x04;
const FLAG_MEMO: u8 = 0x08;
const FLAG_AMOUNT_SCALE: u8 = 0x10;
const FLAG_FEE_SCALE: u8 = 0x20;
const FLAGS_KNOWN: u8 = 0x3f;

/// Kinds of rows with an encoded key, with their tags (ordered as their
/// prefixes are: `dep_` < `tx_` < `wd_`).
const KINDS: [(u8, &str, OpKind); 3] = [
    (1, "dep_", OpKind::Deposit),
    (2, "tx_", OpKind::Transfer),
    (3, "wd_", OpKind::Withdrawal),
];
/// Times are stored in 6 bytes: keys from year 10889 on stay in layout 3.
const TIME_LIMIT: u64 = 1 << 48;

/// A parsed row key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    ms: u64,
    tag: u8,
    op: OpId,
}

/// 16 lower-case hex digits as a number (a key's time, an id's part), in one
/// pass: it is read for every row written and every bucket looked up.
pub(crate) fn hex16(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

fn parse_key(key: &str) -> Option<Key> {
    let b = key.as_bytes();
    let ms = hex16(b.get(..16)?)?;
    if ms >= TIME_LIMIT {
        return None;
    }
    let rest = &b[16..];
    let &(tag, prefix, _) = KINDS
        .iter()
        .find(|(_, p, _)| rest.starts_with(p.as_bytes()))?;
    let ids = &rest[prefix.len()..];
    if ids.len() != 32 {
        return None;
    }
    let op = OpId {
        account: AccountId(hex16(&ids[..16])?),
        n: hex16(&ids[16..])?,
    };
    Some(Key { ms, tag, op })
}

fn kind_of(tag: u8) -> Option<OpKind> {
    KINDS.iter().find(|k| k.0 == tag).map(|k| k.2)
}

fn key_text(k: &Key) -> Option<String> {
    let mut out = String::with_capacity(52);
    crate::ids::push_hex16(&mut out, k.ms);
    k.op.write_display(kind_of(k.tag)?, &mut out);
    Some(out)
}

fn put_key(out: &mut Vec<u8>, k: &Key) {
    out.extend_from_slice(&k.ms.to_be_bytes()[2..]);
    out.push(k.tag);
    out.extend_from_slice(&k.op.account.0.to_be_bytes());
    let n = k.op.n.to_be_bytes();
    let skip = n.iter().take_while(|&&b| b == 0).count();
    out.push((8 - skip) as u8);
    out.extend_from_slice(&n[skip..]);
}

fn read_key(r: &mut Reader<'_>) -> Result<Key, CodecError> {
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(r.take(6)?);
    let tag = r.u8()?;
    if kind_of(tag).is_none() {
        return Err(CodecError::UnknownTag {
            what: "history row kind",
            tag,
        });
    }
    let mut account = [0u8; 8];
    account.copy_from_slice(r.take(8)?);
    let len = r.u8()? as usize;
    if len > 8 {
        return Err(CodecError::Invalid("history row number over 8 bytes"));
    }
    let bytes = r.take(len)?;
    if bytes.first() == Some(&0) {
        return Err(CodecError::Invalid("history row number not minimal"));
    }
    let mut n = [0u8; 8];
    n[8 - len..].copy_from_slice(bytes);
    Ok(Key {
        ms: u64::from_be_bytes(ms),
        tag,
        op: OpId {
            account: AccountId(u64::from_be_bytes(account)),
            n: u64::from_be_bytes(n),
        },
    })
}

/// The time (ms since the epoch) a row key of the encoded shape starts with,
/// or `None` for any other key: what the store's time buckets are made of
/// (`store::retention`), so only rows of this shape have a bucket.
pub fn key_ms(key: &str) -> Option<u64> {
    parse_key(key).map(|k| k.ms)
}

/// `<account BE><encoded key>`: what the members of one row start with (the
/// range a replaced row's earlier versions are removed from), or `None` when
/// the key does not have the encoded shape.
pub fn member_prefix(account: AccountId, key: &str) -> Option<Vec<u8>> {
    let k = parse_key(key)?;
    let mut out = Vec::with_capacity(8 + 24);
    out.extend_from_slice(&account.0.to_be_bytes());
    put_key(&mut out, &k);
    Some(out)
}

/// `(prefix, body)` of a row's member (the member is their concatenation), or
/// `None` when the key does not have the encoded shape (layout 3 keeps those).
pub fn encode_member(account: AccountId, key: &str, payload: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let k = parse_key(key)?;
    let mut prefix = Vec::with_capacity(8 + 24);
    prefix.extend_from_slice(&account.0.to_be_bytes());
    put_key(&mut prefix, &k);
    Some((prefix, body_of(&k, payload)))
}

/// A row's single-member body: compact when it decodes back to `payload`
/// byte for byte, else raw.
fn body_of(k: &Key, payload: &[u8]) -> Vec<u8> {
    compact_body(k, payload)
        .filter(|body| decode_body(k, body).ok().as_deref() == Some(payload))
        .unwrap_or_else(|| {
            let mut raw = Vec::with_capacity(1 + payload.len());
            raw.push(BODY_RAW);
            raw.extend_from_slice(payload);
            raw
        })
}

/// A group's later key: its kind, its time after the row before it, its op
/// account unless the member's own, its number (see the module's comment).
fn put_group_key(out: &mut Vec<u8>, k: &Key, prev_ms: u64, account: AccountId) {
    let own = k.op.account == account;
    out.push(k.tag | if own { GROUP_KEY_OWN } else { 0 });
    put_varint(out, k.ms - prev_ms);
    if !own {
        out.extend_from_slice(&k.op.account.0.to_be_bytes());
    }
    put_varint(out, k.op.n);
}

fn read_group_key(r: &mut Reader<'_>, prev_ms: u64, account: AccountId) -> Result<Key, CodecError> {
    let head = r.u8()?;
    let tag = head & !GROUP_KEY_OWN;
    if kind_of(tag).is_none() {
        return Err(CodecError::UnknownTag {
            what: "history group row kind",
            tag: head,
        });
    }
    let ms = prev_ms
        .checked_add(r.varint()?)
        .filter(|&ms| ms < TIME_LIMIT)
        .ok_or(CodecError::Invalid("history group row time"))?;
    let op_account = if head & GROUP_KEY_OWN != 0 {
        account
    } else {
        AccountId(u64::from_be_bytes(
            r.take(8)?
                .try_into()
                .map_err(|_| CodecError::Invalid("history group row account"))?,
        ))
    };
    Ok(Key {
        ms,
        tag,
        op: OpId {
            account: op_account,
            n: r.varint()?,
        },
    })
}

/// `(prefix, rest)` of one group member holding `rows` of `account` (`(key,
/// payload)`, ascending by key, at least two, all in the first one's
/// [`GROUP_SLOT_MS`] slot), or `None` when a key lacks the encoded shape, the
/// keys are not strictly ascending or leave the first one's slot. The prefix
/// is the first row's single-member prefix.
pub fn encode_group(account: AccountId, rows: &[(&str, &[u8])]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (first, rest) = rows.split_first()?;
    if rest.is_empty() {
        return None;
    }
    let k0 = parse_key(first.0)?;
    let mut prefix = Vec::with_capacity(8 + 24);
    prefix.extend_from_slice(&account.0.to_be_bytes());
    put_key(&mut prefix, &k0);
    let mut out = Vec::with_capacity(rows.len() * 48);
    out.push(BODY_GROUP);
    let body = body_of(&k0, first.1);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    let (slot, mut last, mut prev) = (slot_start(k0.ms), first.0, k0.ms);
    for (key, payload) in rest {
        let k = parse_key(key)?;
        if *key <= last || slot_start(k.ms) != slot {
            return None;
        }
        last = key;
        put_group_key(&mut out, &k, prev, account);
        prev = k.ms;
        let body = body_of(&k, payload);
        put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
    }
    Some((prefix, out))
}

/// The time (ms) of a member's first row, read from its key without decoding
/// the rest (a group's rows are all in that row's [`GROUP_SLOT_MS`] slot).
pub fn member_ms(member: &[u8]) -> Option<u64> {
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(member.get(8..14)?);
    Some(u64::from_be_bytes(ms))
}

/// A row read back from a member by [`decode_members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub key: String,
    pub payload: Vec<u8>,
    /// It came out of a group member (its first version): a single member
    /// of the same key is a later version.
    pub grouped: bool,
}

/// The rows of one member of `account`: one for a single member, every row
/// of a group (ascending by key).
pub fn decode_members(account: AccountId, member: &[u8]) -> Result<Vec<MemberRow>, CodecError> {
    let mut r = Reader::new(member);
    if r.take(8)? != account.0.to_be_bytes() {
        return Err(CodecError::Invalid("history row of another account"));
    }
    let k0 = read_key(&mut r)?;
    let text = |k: &Key| key_text(k).ok_or(CodecError::Invalid("history row kind"));
    let body = r.take(r.remaining())?;
    if body.first() != Some(&BODY_GROUP) {
        return Ok(vec![MemberRow {
            key: text(&k0)?,
            payload: decode_body(&k0, body)?,
            grouped: false,
        }]);
    }
    let mut r = Reader::new(&body[1..]);
    let mut rows = Vec::new();
    let mut k = k0;
    loop {
        let len = usize::try_from(r.varint()?)
            .map_err(|_| CodecError::Invalid("history group row length"))?;
        let body = r.take(len)?;
        if body.first() == Some(&BODY_GROUP) {
            return Err(CodecError::Invalid("history group inside a group"));
        }
        rows.push(MemberRow {
            key: text(&k)?,
            payload: decode_body(&k, body)?,
            grouped: true,
        });
        if r.remaining() == 0 {
            break;
        }
        let next = read_group_key(&mut r, k.ms, account)?;
        if slot_start(next.ms) != slot_start(k0.ms) {
            return Err(CodecError::Invalid("history group row outside its slot"));
        }
        k = next;
        if rows
            .last()
            .is_some_and(|last| text(&k).is_ok_and(|t| t <= last.key))
        {
            return Err(CodecError::Invalid("history group rows out of order"));
        }
    }
    if rows.len() < 2 {
        return Err(CodecError::Invalid("history group of one row"));
    }
    Ok(rows)
}

/// A single member of `account` read back: `(key, payload)` (a group is
/// refused: its rows are read with [`decode_members`]).
pub fn decode_member(account: AccountId, member: &[u8]) -> Result<(String, Vec<u8>), CodecError> {
    match decode_members(account, member)?.pop() {
        Some(row) if !row.grouped => Ok((row.key, row.payload)),
        _ => Err(CodecError::Invalid("a group where one row was expected")),
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn status_tag(s: TxStatus) -> u8 {
    match s {
        TxStatus::Processing => 0,
        TxStatus::Completed => 1,
        TxStatus::Failed => 2,
        TxStatus::Reversed => 3,
    }
}

fn status_of(tag: u8) -> Result<TxStatus, CodecError> {
    Ok(match tag {
        0 => TxStatus::Processing,
        1 => TxStatus::Completed,
        2 => TxStatus::Failed,
        3 => TxStatus::Reversed,
        tag => {
            return Err(CodecError::UnknownTag {
                what: "history row status",
                tag,
            })
        }
    })
}

/// A decimal's mantissa (when it fits 64 bits) and scale.
fn parts(d: Decimal) -> Option<(i64, u8)> {
    Some((
        i64::try_from(d.mantissa()).ok()?,
        u8::try_from(d.scale()).ok()?,
    ))
}

/// The compact body of the row the payload encodes, when it is a [`TxRecord`]
/// of this key (the caller checks it decodes back to the same bytes).
fn compact_body(k: &Key, payload: &[u8]) -> Option<Vec<u8>> {
    let r = TxRecord::decode(payload).ok()?;
    if r.id != k.op
        || Some(r.kind) != kind_of(k.tag)
        || r.created_at.millis() != i64::try_from(k.ms).ok()?
    {
        return None;
    }
    let scale = u8::try_from(r.currency.scale()).ok()?;
    let (amount, amount_scale) = parts(r.amount)?;
    let (fee, fee_scale) = parts(r.fee)?;
    let mut flags = 0;
    if r.direction == Direction::Out {
        flags |= FLAG_OUT;
    }
    match r.counterparty {
        Some(c) if c == k.op.account => flags |= FLAG_COUNTERPARTY_IS_OP,
        Some(_) => flags |= FLAG_COUNTERPARTY,
        None => {}
    }
    if r.memo.is_some() {
        flags |= FLAG_MEMO;
    }
    if amount_scale != scale {
        flags |= FLAG_AMOUNT_SCALE;
    }
    if fee_scale != scale {
        flags |= FLAG_FEE_SCALE;
    }
    let mut out = Vec::with_capacity(24);
    out.push(BODY_TX_V1);
    out.push(flags);
    out.push(status_tag(r.status));
    out.extend_from_slice(r.currency.code().as_bytes());
    out.push(scale);
    put_varint(&mut out, zigzag(amount));
    if flags & FLAG_AMOUNT_SCALE != 0 {
        out.push(amount_scale);
    }
    put_varint(&mut out, zigzag(fee));
    if flags & FLAG_FEE_SCALE != 0 {
        out.push(fee_scale);
    }
    if let (Some(c), true) = (r.counterparty, flags & FLAG_COUNTERPARTY != 0) {
        out.extend_from_slice(&c.0.to_le_bytes());
    }
    if let Some(memo) = &r.memo {
        put_varint(&mut out, memo.len() as u64);
        out.extend_from_slice(memo.as_bytes());
    }
    let delta = r.updated_at.millis().checked_sub(r.created_at.millis())?;
    put_varint(&mut out, zigzag(delta));
    Some(out)
}

fn decimal(mantissa: i64, scale: u8) -> Result<Decimal, CodecError> {
    Decimal::try_from_i128_with_scale(i128::from(mantissa), u32::from(scale))
        .map_err(|_| CodecError::Invalid("history row amount out of range"))
}

/// The payload (postcard of [`TxRecord`], or the raw bytes) a body holds.
fn decode_body(k: &Key, body: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut r = Reader::new(body);
    match r.u8()? {
        BODY_RAW => Ok(r.take(r.remaining())?.to_vec()),
        BODY_TX_V1 => {
            let flags = r.u8()?;
            if flags & !FLAGS_KNOWN != 0
                || flags & (FLAG_COUNTERPARTY | FLAG_COUNTERPARTY_IS_OP)
                    == FLAG_COUNTERPARTY | FLAG_COUNTERPARTY_IS_OP
            {
                return Err(CodecError::Invalid("history row flags"));
            }
            let status = status_of(r.u8()?)?;
            let code = std::str::from_utf8(r.take(3)?)
                .map_err(|_| CodecError::Invalid("history row currency"))?
                .to_owned();
            let scale = r.u8()?;
            let currency = Currency::new(&code, scale)
                .map_err(|_| CodecError::Invalid("history row currency"))?;
            let amount = unzigzag(r.varint()?);
            let amount_scale = if flags & FLAG_AMOUNT_SCALE != 0 {
                r.u8()?
            } else {
                scale
            };
            let fee = unzigzag(r.varint()?);
            let fee_scale = if flags & FLAG_FEE_SCALE != 0 {
                r.u8()?
            } else {
                scale
            };
            let counterparty = if flags & FLAG_COUNTERPARTY != 0 {
                Some(AccountId(r.u64()?))
            } else if flags & FLAG_COUNTERPARTY_IS_OP != 0 {
                Some(k.op.account)
            } else {
                None
            };
            let memo = if flags & FLAG_MEMO != 0 {
                let len = usize::try_from(r.varint()?)
                    .map_err(|_| CodecError::Invalid("history row memo length"))?;
                let bytes = r.take(len)?;
                Some(
                    std::str::from_utf8(bytes)
                        .map_err(|_| CodecError::Invalid("history row memo"))?
                        .to_owned(),
                )
            } else {
                None
            };
            let created = i64::try_from(k.ms).map_err(|_| CodecError::Invalid("row time"))?;
            let updated = created
                .checked_add(unzigzag(r.varint()?))
                .ok_or(CodecError::Invalid("history row update time"))?;
            if r.remaining() != 0 {
                return Err(CodecError::Invalid("history row has trailing bytes"));
            }
            let record = TxRecord {
                id: k.op,
                kind: kind_of(k.tag).ok_or(CodecError::Invalid("history row kind"))?,
                direction: if flags & FLAG_OUT != 0 {
                    Direction::Out
                } else {
                    Direction::In
                },
                amount: decimal(amount, amount_scale)?,
                fee: decimal(fee, fee_scale)?,
                currency,
                status,
                counterparty,
                memo,
                created_at: Timestamp(created),
                updated_at: Timestamp(updated),
            };
            Ok(record.encode())
        }
        tag => Err(CodecError::UnknownTag {
            what: "history row body",
            tag,
        }),
    }
}

/// The smallest key of the encoded shape that is at or after `text` in byte
/// order, or `None` when every such key is before it: what a page of rows
/// "before `text`" is bounded by in layout 4 (every encoded key below the
/// result is below `text`, and no other is).
pub fn ceiling(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut j = 0;
    while j < b.len() && next_bytes(&b[..j]).contains(&b[j]) {
        j += 1;
    }
    if j == b.len() {
        return Some(min_completion(b.to_vec()));
    }
    for i in (0..=j).rev() {
        if let Some(&d) = next_bytes(&b[..i]).iter().find(|&&d| d > b[i]) {
            let mut path = b[..i].to_vec();
            path.push(d);
            return Some(min_completion(path));
        }
    }
    None
}

/// The ceiling's key, parsed, as a member prefix of `account`.
pub fn ceiling_prefix(account: AccountId, text: &str) -> Option<Vec<u8>> {
    // unwrap-free: the ceiling always has the encoded shape.
    member_prefix(account, &ceiling(text)?)
}

/// `<account BE><6-byte time>` of the start of the group slot of the ceiling
/// of `text`: a lower member bound that keeps every group holding a row at or
/// after `text` (groups start up to a slot before their last row).
pub fn slot_floor_prefix(account: AccountId, text: &str) -> Option<Vec<u8>> {
    let ms = key_ms(&ceiling(text)?)?;
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&account.0.to_be_bytes());
    out.extend_from_slice(&slot_start(ms).to_be_bytes()[2..]);
    Some(out)
}

const HEX: &[u8] = b"0123456789abcdef";

/// The bytes that may follow `path` in a key of the encoded shape, ascending
/// (empty once `path` is a whole key or can't start one).
fn next_bytes(path: &[u8]) -> Vec<u8> {
    let i = path.len();
    if i < 4 {
        // Times below 2^48: 16 hex digits, the first four zero.
        return vec![b'0'];
    }
    if i < 16 {
        return HEX.to_vec();
    }
    let rest = &path[16..];
    let mut out = Vec::new();
    for (_, prefix, _) in KINDS {
        let p = prefix.as_bytes();
        if rest.len() < p.len() {
            if p.starts_with(rest) {
                out.push(p[rest.len()]);
            }
        } else if rest.starts_with(p) {
            if rest.len() - p.len() < 32 {
                return HEX.to_vec();
            }
            return Vec::new();
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The smallest whole key starting with `path` (a prefix of one).
fn min_completion(mut path: Vec<u8>) -> String {
    while let Some(&d) = next_bytes(&path).first() {
        path.push(d);
    }
    // unwrap-free: every byte pushed or matched is ASCII.
    String::from_utf8(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(direction: Direction, counterparty: Option<AccountId>, memo: Option<&str>) -> TxRecord {
        let cny = Currency::new("CNY", 2).unwrap();
        TxRecord {
            id: OpId {
                account: AccountId(0x0102_0304_0506_0708),
                n: 0x1234,
            },
            kind: OpKind::Transfer,
            direction,
            amount: Decimal::new(1, 2),
            fee: Decimal::new(0, 2),
            currency: cny,
            status: TxStatus::Completed,
            counterparty,
            memo: memo.map(str::to_owned),
            created_at: Timestamp(1_800_000_000_123),
            updated_at: Timestamp(1_800_000_000_223),
        }
    }

    fn key_of(r: &TxRecord) -> String {
        let mut key = String::new();
        crate::ids::push_hex16(&mut key, r.created_at.millis() as u64);
        r.id.write_display(r.kind, &mut key);
        key
    }

    #[test]
    fn golden_member_of_an_outgoing_transfer() {
        // Stored bytes: a member written today must keep reading the same.
        let account = AccountId(0x0102_0304_0506_0708);
        let r = tx(Direction::Out, Some(AccountId(0xaabb)), None);
        let (prefix, body) = encode_member(account, &key_of(&r), &r.encode()).unwrap();
        let golden_prefix: &[u8] = &[
            1, 2, 3, 4, 5, 6, 7, 8, // account
            0x01, 0xa3, 0x18, 0x5c, 0x50, 0x7b, // ms 1_800_000_000_123
            2,    // tx_
            1, 2, 3, 4, 5, 6, 7, 8, // op account
            2, 0x12, 0x34, // n
        ];
        let golden_body: &[u8] = &[
            1, // compact v1
            FLAG_OUT | FLAG_COUNTERPARTY,
            1, // completed
            b'C',
            b'N',
            b'Y',
            2,
            2, // amount 1 (zigzag)
            0, // fee 0
            0xbb,
            0xaa,
            0,
            0,
            0,
            0,
            0,
            0,    // counterparty LE
            0xc8, // +100 ms zigzag = 200
            1,
        ];
        assert_eq!(prefix, golden_prefix);
        assert_eq!(body, golden_body);
        let member = [golden_prefix, golden_body].concat();
        assert_eq!(
            decode_member(account, &member).unwrap(),
            (key_of(&r), r.encode())
        );
        assert_eq!(member.len(), 45);
    }

    #[test]
    fn golden_member_of_an_incoming_transfer_and_a_raw_one() {
        let account = AccountId(0x0909);
        let r = tx(
            Direction::In,
            Some(AccountId(0x0102_0304_0506_0708)),
            Some("hi"),
        );
        let (prefix, body) = encode_member(account, &key_of(&r), &r.encode()).unwrap();
        assert_eq!(&prefix[..8], &0x0909u64.to_be_bytes());
        let golden_body: &[u8] = &[
            1,
            FLAG_COUNTERPARTY_IS_OP | FLAG_MEMO,
            1,
            b'C',
            b'N',
            b'Y',
            2,
            2,
            0,
            2,
            b'h',
            b'i',
            0xc8,
            1,
        ];
        assert_eq!(body, golden_body);
        // A payload that is not a TxRecord of its key is kept as it came.
        let (_, raw) = encode_member(account, &key_of(&r), b"not a row").unwrap();
        assert_eq!(raw, b"\0not a row");
        let member = [&prefix[..], &raw[..]].concat();
        assert_eq!(
            decode_member(account, &member).unwrap(),
            (key_of(&r), b"not a row".to_vec())
        );
        // So is one whose id is not its key's.
        let mut other = r.clone();
        other.id.n += 1;
        let (_, raw) = encode_member(account, &key_of(&r), &other.encode()).unwrap();
        assert_eq!(raw[0], BODY_RAW);
    }

    #[test]
    fn payloads_come_back_byte_for_byte() {
        let account = AccountId(5);
        let mut cases = vec![
            tx(Direction::Out, None, None),
            tx(Direction::In, Some(AccountId(u64::MAX)), Some("")),
        ];
        let mut odd = tx(Direction::Out, Some(AccountId(1)), Some("中文"));
        odd.amount = Decimal::new(-123_456_789, 5); // scale unlike the currency's
        odd.fee = Decimal::new(7, 0);
        odd.status = TxStatus::Reversed;
        odd.updated_at = Timestamp(odd.created_at.millis() - 5);
        cases.push(odd);
        let mut big = tx(Direction::Out, None, None);
        big.amount = Decimal::MAX; // mantissa over 64 bits: raw
        cases.push(big);
        for r in cases {
            let payload = r.encode();
            let (prefix, body) = encode_member(account, &key_of(&r), &payload).unwrap();
            let member = [prefix, body].concat();
            assert_eq!(
                decode_member(account, &member).unwrap(),
                (key_of(&r), payload)
            );
        }
    }

    #[test]
    fn keys_of_other_shapes_are_not_encoded() {
        for key in [
            "00ab",
            "",
            "0000018c00000000tx_0000000000000001000000000000000",
            "0000018c00000000tx_00000000000000010000000000000001x",
            "0000018C00000000tx_0000000000000001000000000000000a",
            "0001000000000000tx_00000000000000010000000000000001",
            "0000018c00000000alr_00000000000000010000000000000001",
        ] {
            assert!(member_prefix(AccountId(1), key).is_none(), "{key}");
        }
        assert!(member_prefix(
            AccountId(1),
            "0000018c00000000wd_00000000000000010000000000000001"
        )
        .is_some());
    }

    #[test]
    fn malformed_members_are_refused() {
        let account = AccountId(5);
        let r = tx(Direction::Out, None, None);
        let (prefix, body) = encode_member(account, &key_of(&r), &r.encode()).unwrap();
        let member = [&prefix[..], &body[..]].concat();
        for cut in 0..member.len() {
            assert!(decode_member(account, &member[..cut]).is_err(), "{cut}");
        }
        assert!(decode_member(AccountId(6), &member).is_err());
        let mut bad = member.clone();
        bad[prefix.len()] = 9; // unknown body tag
        assert!(decode_member(account, &bad).is_err());
        let mut bad = member.clone();
        bad[14] = 7; // unknown kind
        assert!(decode_member(account, &bad).is_err());
        let mut trailing = member.clone();
        trailing.push(0);
        assert!(decode_member(account, &trailing).is_err());
    }

    #[test]
    fn hex16_reads_exactly_16_lower_case_hex_digits() {
        assert_eq!(hex16(b"000001a3185cc4a9"), Some(0x1a3185cc4a9));
        assert_eq!(hex16(b"ffffffffffffffff"), Some(u64::MAX));
        for bad in [
            &b"000001A3185CC4A9"[..],
            b"000001a3185cc4a",
            b"000001a3185cc4a90",
            b"000001a3185cc4g9",
            b"+00001a3185cc4a9",
        ] {
            assert_eq!(hex16(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn golden_group_of_two_rows() {
        // Stored bytes: a group written today must keep reading the same.
        let account = AccountId(0x0102_0304_0506_0708);
        let r = tx(Direction::Out, Some(AccountId(0xaabb)), None);
        let mut later = r.clone();
        later.id.n = 0x1235;
        later.created_at = Timestamp(1_800_000_000_124);
        let (k1, k2) = (key_of(&r), key_of(&later));
        let (p1, b1) = encode_member(account, &k1, &r.encode()).unwrap();
        let (prefix, rest) = encode_group(account, &[(&k1, &r.encode()), (&k2, b"raw")]).unwrap();
        assert_eq!(
            prefix, p1,
            "a group starts as its first row's single member"
        );
        let golden_rest: &[u8] = &[
            2,  // group
            19, // the first row's body length
            1,
            FLAG_OUT | FLAG_COUNTERPARTY,
            1,
            b'C',
            b'N',
            b'Y',
            2,
            2,
            0,
            0xbb,
            0xaa,
            0,
            0,
            0,
            0,
            0,
            0,
            0xc8,
            1,    // the first row's body, as in its single member
            0x82, // tx_, the op account is the member's
            1,    // 1 ms after the row before
            0xb5,
            0x24, // n 0x1235
            4,    // the second row's body length
            0,
            b'r',
            b'a',
            b'w', // raw body
        ];
        assert_eq!(&rest[2..21], &b1[..], "the first body is the single's");
        assert_eq!(rest, golden_rest);
        let member = [&prefix[..], &rest[..]].concat();
        assert_eq!(
            member_ms(&member),
            Some(1_800_000_000_123),
            "the first row's time"
        );
        assert_eq!(member_ms(&member[..13]), None);
        let rows = decode_members(account, &member).unwrap();
        let got: Vec<(&str, &[u8], bool)> = rows
            .iter()
            .map(|m| (m.key.as_str(), m.payload.as_slice(), m.grouped))
            .collect();
        let first = r.encode();
        assert_eq!(
            got,
            vec![
                (k1.as_str(), &first[..], true),
                (k2.as_str(), &b"raw"[..], true)
            ]
        );
        // A single member reads as one row, not grouped.
        let single = [&p1[..], &b1[..]].concat();
        let rows = decode_members(account, &single).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].grouped);
        assert_eq!(
            (rows[0].key.as_str(), &rows[0].payload),
            (k1.as_str(), &first)
        );
        // The single-member reader refuses a group (an older build's reader
        // must not read its first row alone).
        assert!(decode_member(account, &member).is_err());
    }

    #[test]
    fn groups_only_of_ordered_rows_of_one_slot() {
        let account = AccountId(9);
        let r = tx(Direction::Out, None, None);
        let mut other = r.clone();
        other.id.n = 0x9999;
        let (k1, k2) = (key_of(&r), key_of(&other));
        let (a, b) = (r.encode(), other.encode());
        assert!(encode_group(account, &[(&k1, &a)]).is_none(), "one row");
        assert!(
            encode_group(account, &[(&k2, &b), (&k1, &a)]).is_none(),
            "descending"
        );
        assert!(
            encode_group(account, &[(&k1, &a), (&k1, &a)]).is_none(),
            "a key twice"
        );
        let mut next_slot = r.clone();
        next_slot.created_at = Timestamp(slot_start(1_800_000_000_123) as i64 + 10_000);
        let k3 = key_of(&next_slot);
        assert!(
            encode_group(account, &[(&k1, &a), (&k3, &next_slot.encode())]).is_none(),
            "another slot"
        );
        assert!(encode_group(account, &[(&k1, &a), ("not a key", &b)]).is_none());
        let (prefix, rest) = encode_group(account, &[(&k1, &a), (&k2, &b)]).unwrap();
        let member = [&prefix[..], &rest[..]].concat();
        // Another account's ops (the op account written out) come back whole.
        let back: Vec<(String, Vec<u8>)> = decode_members(account, &member)
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.payload))
            .collect();
        assert_eq!(back, vec![(k1.clone(), a.clone()), (k2.clone(), b.clone())]);
        for cut in 0..member.len() {
            assert!(decode_members(account, &member[..cut]).is_err(), "{cut}");
        }
        assert!(decode_members(AccountId(10), &member).is_err());
        // A second key below the first (same time, a lower number), or of an
        // unknown kind: refused.
        let at = prefix.len() + 2 + rest[1] as usize;
        let mut bad = member[..at].to_vec();
        bad.extend_from_slice(&[0x82, 0]);
        put_varint(&mut bad, 0x1000);
        bad.extend_from_slice(&[1, 0]);
        assert!(decode_members(account, &bad).is_err());
        bad[at] = 0x87;
        assert!(decode_members(account, &bad).is_err());
        // A group nested in a group, or a group of one row, is refused.
        let mut nested = member.clone();
        nested[prefix.len() + 2] = BODY_GROUP;
        assert!(decode_members(account, &nested).is_err());
        let one = [&prefix[..], &[BODY_GROUP, 1, 0][..]].concat();
        assert!(decode_members(account, &one).is_err());
    }

    /// Every key of the encoded shape over a small alphabet of components.
    fn sample_keys() -> Vec<String> {
        let mut keys = Vec::new();
        for ms in [0u64, 1, 0xff, 0x100, 0x18c_0000_0000, TIME_LIMIT - 1] {
            for (_, _, kind) in KINDS {
                for account in [0u64, 1, 0x100, u64::MAX] {
                    for n in [0u64, 1, 0xff, 0x100, u64::MAX] {
                        let mut key = String::new();
                        crate::ids::push_hex16(&mut key, ms);
                        OpId {
                            account: AccountId(account),
                            n,
                        }
                        .write_display(kind, &mut key);
                        keys.push(key);
                    }
                }
            }
        }
        keys
    }

    #[test]
    fn encoded_keys_order_as_their_text() {
        let account = AccountId(3);
        let mut keys = sample_keys();
        keys.sort();
        let prefixes: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| member_prefix(account, k).unwrap())
            .collect();
        for w in prefixes.windows(2) {
            assert!(w[0] < w[1]);
            // Prefix-free: no key's bytes start another's.
            assert!(!w[1].starts_with(&w[0]));
        }
    }

    #[test]
    fn ceiling_is_the_first_key_at_or_after_any_text() {
        let mut keys = sample_keys();
        keys.sort();
        let mut cursors: Vec<String> = keys.clone();
        for k in &keys {
            for cut in [1, 4, 5, 15, 16, 17, 18, 19, 20, 30, 50, 51] {
                if let Some(p) = k.get(..cut.min(k.len())) {
                    cursors.push(p.to_owned());
                    cursors.push(format!("{p}~"));
                    cursors.push(format!("{p}!"));
                }
            }
        }
        cursors.extend(
            [
                "",
                "0",
                "1",
                "0000ffffffffffff",
                "0000ffffffffffffwd_ffffffffffffffffffffffffffffffff",
                "0000ffffffffffffz",
                "~",
                "0000018c00000000u",
                "0000018c00000000ta",
                "0000018c00000000e",
                "0000018c00000000tx_g",
            ]
            .map(str::to_owned),
        );
        for c in cursors {
            let want = keys.iter().find(|k| k.as_str() >= c.as_str());
            let got = ceiling(&c);
            // The sample holds every key's neighbours only approximately, so
            // compare against the true ceiling's order: nothing of the sample
            // may lie in [c, got) and got must be >= c.
            if let Some(g) = &got {
                assert!(g.as_str() >= c.as_str(), "{c}: {g}");
                assert!(member_prefix(AccountId(1), g).is_some(), "{c}: {g}");
                assert!(
                    !keys.iter().any(|k| k.as_str() >= c.as_str() && k < g),
                    "{c}: {g} skips a key"
                );
            } else {
                assert!(want.is_none(), "{c}: none, but {want:?}");
            }
            if let Some(w) = want {
                assert!(got.as_deref().is_some_and(|g| g <= w.as_str()), "{c}");
            }
        }
    }
}
