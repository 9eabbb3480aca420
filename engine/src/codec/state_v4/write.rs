//! The writer of account state version 4 (the layout is in `mod.rs`): one
//! method per part of the state, each naming every field it writes.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;

use super::*;
use crate::codec::wire::put_varint;
use crate::domain::ops::Ops;

/// Accounts looked up by a scan of those met so far, up to this many.
const SCANNED_ACCOUNTS: usize = 8;

/// The writer: the output, the currencies and accounts met so far (with
/// their indexes), and what the body's header implies (own account, base
/// time, scale of currency-less decimals).
pub(in crate::codec) struct Enc<'a> {
    out: &'a mut Vec<u8>,
    /// Inline for the one or two of a record or a state: no allocation.
    currencies: SmallVec<[Currency; 2]>,
    /// The accounts met so far, in index order, looked up by a scan while
    /// there are at most [`SCANNED_ACCOUNTS`] (a record's events name one or
    /// two: no allocation per record)...
    accounts: SmallVec<[AccountId; 4]>,
    /// ...and by id beyond (a busy state names hundreds).
    by_id: HashMap<AccountId, u64>,
    own: AccountId,
    base: i64,
    scale: u32,
    /// False once a value was met that the reader would refuse or read
    /// differently (see [`Enc::exact`]).
    exact: bool,
}

impl<'a> Enc<'a> {
    /// `accounts` is a guess at how many other accounts the state names (room
    /// reserved up front instead of growing the table while writing).
    pub(in crate::codec) fn new(
        out: &'a mut Vec<u8>,
        own: AccountId,
        base: i64,
        scale: u32,
        accounts: usize,
    ) -> Self {
        let by_id = if accounts > SCANNED_ACCOUNTS {
            HashMap::with_capacity_and_hasher(accounts, Default::default())
        } else {
            HashMap::default()
        };
        Enc {
            out,
            currencies: SmallVec::new(),
            accounts: SmallVec::new(),
            by_id,
            own,
            base,
            scale,
            exact: true,
        }
    }

    /// Whether everything written reads back the same: false when a value met
    /// is one the reader refuses or rebuilds differently, which only a
    /// deserializer can make — a currency that `Currency::new` refuses, an
    /// amount not as `Amount::new` makes it, an idempotency key that
    /// `IdempotencyKey::parse` refuses. Everything else the layout represents
    /// exactly (pinned by the round-trip property test).
    pub(in crate::codec) fn exact(&self) -> bool {
        self.exact
    }

    /// The output so far.
    pub(in crate::codec) fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// An account: its index among those met so far, or a new index and the
    /// id (so each account's 8 bytes are written once).
    pub(in crate::codec) fn account(&mut self, a: AccountId) {
        let known = if self.accounts.len() <= SCANNED_ACCOUNTS {
            self.accounts.iter().position(|&k| k == a).map(|i| i as u64)
        } else {
            self.by_id.get(&a).copied()
        };
        if let Some(i) = known {
            return self.varint(i);
        }
        let next = self.accounts.len() as u64;
        self.varint(next);
        self.u64(a.0);
        self.accounts.push(a);
        if self.accounts.len() > SCANNED_ACCOUNTS {
            if self.by_id.is_empty() {
                let all = self.accounts.iter().enumerate();
                self.by_id.extend(all.map(|(i, &k)| (k, i as u64)));
            } else {
                self.by_id.insert(a, next);
            }
        }
    }
    pub(in crate::codec) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(in crate::codec) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(in crate::codec) fn varint(&mut self, v: u64) {
        put_varint(self.out, v);
    }

    pub(in crate::codec) fn count(&mut self, n: usize) {
        self.varint(n as u64);
    }

    pub(in crate::codec) fn time(&mut self, prev: &mut i64, t: Timestamp) {
        self.varint(zigzag(t.millis().wrapping_sub(*prev)));
        *prev = t.millis();
    }

    pub(in crate::codec) fn str(&mut self, s: &str) {
        self.count(s.len());
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(in crate::codec) fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    pub(in crate::codec) fn dec(&mut self, d: Decimal, implied_scale: u32) {
        let short = i64::try_from(d.mantissa())
            .ok()
            .map(zigzag)
            .filter(|&z| z < DEC_SHORT_LIMIT && !(z == 0 && d.is_sign_negative()));
        match short {
            Some(z) if d.scale() == implied_scale => self.varint(z << 2 | DEC_IMPLIED_SCALE),
            Some(z) => {
                self.varint(z << 2 | DEC_OWN_SCALE);
                // unwrap-free: a Decimal's scale is at most 28.
                self.u8(d.scale() as u8);
            }
            None => {
                self.varint(DEC_FULL);
                self.out.extend_from_slice(&d.serialize());
            }
        }
    }

    pub(in crate::codec) fn currency(&mut self, c: Currency) {
        match self.currencies.iter().position(|&k| k == c) {
            Some(i) => self.count(i),
            None => {
                self.exact &= c.is_valid();
                self.count(self.currencies.len());
                self.currencies.push(c);
                self.out.extend_from_slice(&c.code_bytes());
                self.u8(c.scale() as u8);
            }
        }
    }

    /// A payout destination: `1 clear: string | 2 sealed: masked string |
    /// fingerprint 16 bytes | varint length + sealed bytes`.
    pub(in crate::codec) fn destination(&mut self, destination: &PayoutDestination) {
        match destination {
            PayoutDestination::Clear(s) => {
                self.u8(DEST_CLEAR);
                self.str(s);
            }
            PayoutDestination::Sealed(d) => {
                let SealedDestination {
                    masked,
                    fingerprint,
                    sealed,
                } = &**d;
                self.u8(DEST_SEALED);
                self.str(masked);
                self.out.extend_from_slice(fingerprint);
                self.count(sealed.len());
                self.out.extend_from_slice(sealed);
            }
        }
    }

    pub(in crate::codec) fn amount(&mut self, a: &Amount) {
        self.exact &= a.is_canonical();
        self.currency(a.currency());
        self.dec(a.value(), a.currency().scale());
    }

    /// An op id whose account, when it is the own one, is left out: sets
    /// `flag` in the byte at `flags_at` when it is stored.
    pub(in crate::codec) fn op_id_flagged(&mut self, id: OpId, flags_at: usize, flag: u8) {
        self.varint(id.n);
        if id.account != self.own {
            self.out[flags_at] |= flag;
            self.account(id.account);
        }
    }

    pub(in crate::codec) fn books(&mut self, books: &[Book]) {
        self.count(books.len());
        for b in books {
            let Book {
                currency,
                available,
                held,
                deposited,
                fees,
                paid_out,
                in_flight_out,
            } = b;
            self.currency(*currency);
            let s = currency.scale();
            for d in [available, held, deposited, fees, paid_out, in_flight_out] {
                self.dec(*d, s);
            }
        }
    }

    pub(in crate::codec) fn daily(&mut self, daily: &DailyUsage) {
        let DailyUsage { day, used } = daily;
        self.varint(zigzag(*day));
        self.count(used.len());
        for (c, d) in used {
            self.currency(*c);
            self.dec(*d, c.scale());
        }
    }

    pub(in crate::codec) fn ops(&mut self, ops: &Ops) {
        self.count(ops.len());
        let (mut prev_n, mut prev_at) = (0u64, self.base);
        for (n, op) in ops {
            self.varint(n.wrapping_sub(prev_n));
            prev_n = *n;
            match op {
                OpRecord::Deposit {
                    amount,
                    fee,
                    method,
                    card,
                    at,
                } => {
                    self.u8(OP_DEPOSIT);
                    self.amount(amount);
                    self.dec(*fee, amount.currency().scale());
                    self.u8(tags::deposit_method_tag(*method));
                    self.str(card);
                    self.time(&mut prev_at, *at);
                }
                OpRecord::Withdrawal {
                    amount,
                    fee,
                    method,
                    destination,
                    status,
                    at,
                    updated,
                } => {
                    self.u8(OP_WITHDRAWAL);
                    self.amount(amount);
                    self.dec(*fee, amount.currency().scale());
                    self.u8(tags::withdrawal_method_tag(*method));
                    self.destination(destination);
                    match status {
                        WithdrawalStatus::Processing => self.u8(0),
                        WithdrawalStatus::Completed => self.u8(1),
                        WithdrawalStatus::Failed { reason } => {
                            self.u8(2);
                            self.str(reason);
                        }
                    }
                    self.time(&mut prev_at, *at);
                    self.varint(zigzag(updated.millis().wrapping_sub(at.millis())));
                }
                OpRecord::Transfer {
                    to,
                    amount,
                    fee,
                    memo,
                    status,
                    at,
                    updated,
                } => {
                    self.u8(OP_TRANSFER);
                    self.account(*to);
                    self.amount(amount);
                    self.dec(*fee, amount.currency().scale());
                    self.opt_str(memo);
                    match status {
                        TransferStatus::InFlight => self.u8(0),
                        TransferStatus::Completed => self.u8(1),
                        TransferStatus::Reversed(r) => {
                            self.u8(2);
                            self.u8(tags::rejection_tag(*r));
                        }
                    }
                    self.time(&mut prev_at, *at);
                    self.varint(zigzag(updated.millis().wrapping_sub(at.millis())));
                }
            }
        }
    }

    pub(in crate::codec) fn idempotency(
        &mut self,
        map: &HashMap<IdempotencyKey, IdempotencyEntry>,
    ) {
        // Sorted, so one state always gives the same bytes (and near deltas).
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_unstable_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        self.count(entries.len());
        let mut prev = self.base;
        for (key, entry) in entries {
            let IdempotencyEntry {
                fingerprint,
                op,
                at,
            } = entry;
            self.exact &= key.is_valid();
            self.str(key.as_str());
            self.u64(*fingerprint);
            self.varint(*op);
            self.time(&mut prev, *at);
        }
    }

    pub(in crate::codec) fn credited(&mut self, map: &HashMap<OpId, CreditMark>) {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_unstable_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
        self.count(entries.len());
        let mut prev = self.base;
        for (id, mark) in entries {
            let CreditMark {
                at,
                debit_lsn,
                refused,
            } = mark;
            self.account(id.account);
            self.varint(id.n);
            self.time(&mut prev, *at);
            self.varint(debit_lsn.wrapping_add(1));
            self.u8(refused.map_or(0, tags::rejection_tag));
        }
    }

    pub(in crate::codec) fn marks(&mut self, marks: &VecDeque<OutgoingMark>) {
        self.count(marks.len());
        let mut prev = self.base;
        for OutgoingMark { at, amount } in marks {
            self.time(&mut prev, *at);
            self.dec(*amount, self.scale);
        }
    }

    pub(in crate::codec) fn new_recipients(&mut self, marks: &VecDeque<NewRecipientMark>) {
        self.count(marks.len());
        let mut prev = self.base;
        for NewRecipientMark { at, to } in marks {
            self.time(&mut prev, *at);
            self.account(*to);
        }
    }

    pub(in crate::codec) fn known_recipients(&mut self, set: &HashSet<AccountId>) {
        let mut ids: Vec<AccountId> = set.iter().copied().collect();
        ids.sort_unstable();
        self.count(ids.len());
        for id in ids {
            self.account(id);
        }
    }

    pub(in crate::codec) fn alerts(&mut self, alerts: &VecDeque<AlertRecord>) {
        self.count(alerts.len());
        let mut prev = self.base;
        for a in alerts {
            let AlertRecord {
                n,
                rule,
                severity,
                action,
                message,
                at,
            } = a;
            self.varint(*n);
            self.u8(tags::fraud_rule_tag(*rule));
            self.u8(tags::severity_tag(*severity));
            self.u8(tags::fraud_action_tag(*action));
            self.str(message);
            self.time(&mut prev, *at);
        }
    }

    pub(in crate::codec) fn notifications(&mut self, notes: &VecDeque<Notification>, ops: &Ops) {
        self.count(notes.len());
        let (mut prev_seq, mut prev_at) = (0u64, self.base);
        // The last balance notified per currency: the next one is a step from it.
        let mut balances: Vec<(Currency, Decimal)> = Vec::new();
        for Notification { seq, at, kind } in notes {
            self.varint(seq.wrapping_sub(prev_seq));
            prev_seq = *seq;
            self.time(&mut prev_at, *at);
            match kind {
                NotificationKind::BalanceUpdated {
                    currency,
                    available,
                    held,
                } => {
                    let last = balances.iter_mut().find(|(c, _)| c == currency);
                    match last
                        .as_ref()
                        .and_then(|(_, prev)| balance_step(*prev, *available))
                    {
                        Some(step) => {
                            self.u8(NOTE_BALANCE_STEP);
                            self.currency(*currency);
                            self.varint(zigzag(step));
                        }
                        None => {
                            self.u8(NOTE_BALANCE);
                            self.currency(*currency);
                            self.dec(*available, currency.scale());
                        }
                    }
                    self.dec(*held, currency.scale());
                    match last {
                        Some((_, prev)) => *prev = *available,
                        None => balances.push((*currency, *available)),
                    }
                }
                NotificationKind::TransactionUpdated {
                    id,
                    kind,
                    status,
                    amount,
                    fee,
                    currency,
                    direction,
                    counterparty,
                } => {
                    self.u8(NOTE_TRANSACTION);
                    self.u8(tags::op_kind_tag(*kind) * 4 + tags::tx_status_tag(*status));
                    let flags_at = self.out.len();
                    self.u8(tags::direction_tag(*direction));
                    self.op_id_flagged(*id, flags_at, TX_OP_ACCOUNT);
                    let as_op = id.account == self.own
                        && ops.get(&id.n).is_some_and(|op| {
                            same_terms(&op_terms(op), &(*currency, *amount, *fee, *counterparty))
                        });
                    if as_op {
                        self.out[flags_at] |= TX_AS_OP;
                        continue;
                    }
                    self.currency(*currency);
                    self.dec(*amount, currency.scale());
                    self.dec(*fee, currency.scale());
                    match counterparty {
                        None => {}
                        Some(c) if *c == id.account => self.out[flags_at] |= TX_PEER_IS_OP_ACCOUNT,
                        Some(c) => {
                            self.out[flags_at] |= TX_PEER;
                            self.account(*c);
                        }
                    }
                }
                NotificationKind::AlertRaised {
                    id,
                    rule,
                    severity,
                    message,
                    action,
                } => {
                    self.u8(NOTE_ALERT);
                    let flags_at = self.out.len();
                    self.u8(0);
                    self.op_id_flagged(*id, flags_at, ID_OP_ACCOUNT);
                    self.u8(tags::fraud_rule_tag(*rule));
                    self.u8(tags::severity_tag(*severity));
                    self.u8(tags::fraud_action_tag(*action));
                    self.str(message);
                }
                NotificationKind::StatusChanged { from, to, reason } => {
                    self.u8(NOTE_STATUS);
                    self.u8(tags::status_tag(*from));
                    self.u8(tags::status_tag(*to));
                    self.str(reason);
                }
                NotificationKind::SessionCreated {
                    session,
                    device_id,
                    country,
                    new_device,
                } => {
                    self.u8(NOTE_SESSION);
                    let flags_at = self.out.len();
                    let mut flags = 0;
                    if country.is_some() {
                        flags |= SESSION_COUNTRY;
                    }
                    if *new_device {
                        flags |= SESSION_NEW_DEVICE;
                    }
                    self.u8(flags);
                    self.op_id_flagged(*session, flags_at, ID_OP_ACCOUNT);
                    self.str(device_id);
                    if let Some(c) = country {
                        self.str(c);
                    }
                }
                NotificationKind::KycUpdated {
                    status,
                    tier,
                    reason,
                } => {
                    self.u8(NOTE_KYC);
                    self.u8(tags::kyc_status_tag(*status));
                    self.u8(*tier);
                    self.opt_str(reason);
                }
                NotificationKind::SecurityChanged {
                    change,
                    totp_enabled,
                    recovery_codes_left,
                } => {
                    self.u8(NOTE_SECURITY);
                    self.u8(tags::security_change_tag(*change));
                    self.u8(u8::from(*totp_enabled));
                    self.varint(u64::from(*recovery_codes_left));
                }
            }
        }
    }
}
