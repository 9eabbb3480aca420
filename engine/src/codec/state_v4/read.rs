//! The reader of account state version 4 (the layout is in `mod.rs`),
//! mirroring `write.rs`. It never panics: short input, unknown tags or flags,
//! bad UTF-8 and out-of-range values are a `CodecError`, and every count is
//! bounded by the bytes left before anything is allocated.

use std::collections::VecDeque;

use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::*;
use crate::codec::wire::Reader;
use crate::domain::ops::Ops;

/// The reader, mirroring [`Enc`].
pub(in crate::codec) struct Dec<'a> {
    pub(in crate::codec) r: Reader<'a>,
    currencies: Vec<Currency>,
    accounts: Vec<AccountId>,
    pub(super) own: AccountId,
    pub(super) base: i64,
    pub(super) scale: u32,
}

impl<'a> Dec<'a> {
    /// A reader of `body` with the header's values still to be read.
    pub(in crate::codec) fn new(body: &'a [u8]) -> Self {
        Dec {
            r: Reader::new(body),
            currencies: Vec::new(),
            accounts: Vec::new(),
            own: AccountId(0),
            base: 0,
            scale: 0,
        }
    }

    /// An account: one met before, by index, or a new one (the next index).
    pub(in crate::codec) fn account(&mut self) -> Result<AccountId, CodecError> {
        let i = self.r.varint()?;
        if let Some(a) = self.accounts.get(i as usize) {
            return Ok(*a);
        }
        if i != self.accounts.len() as u64 {
            return Err(CodecError::Invalid("account state account index"));
        }
        let a = AccountId(self.r.u64()?);
        self.accounts.push(a);
        Ok(a)
    }
    /// A list's length, refused when the bytes left could not hold it (every
    /// item takes at least one byte), so a corrupt count allocates nothing.
    pub(in crate::codec) fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.r.varint()?;
        if n > self.r.remaining() as u64 {
            return Err(CodecError::Truncated {
                needed: usize::try_from(n).unwrap_or(usize::MAX) - self.r.remaining(),
            });
        }
        Ok(n as usize)
    }

    pub(in crate::codec) fn time(&mut self, prev: &mut i64) -> Result<Timestamp, CodecError> {
        *prev = prev.wrapping_add(unzigzag(self.r.varint()?));
        Ok(Timestamp(*prev))
    }

    pub(in crate::codec) fn bool(&mut self) -> Result<bool, CodecError> {
        match self.r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid("account state boolean")),
        }
    }

    pub(in crate::codec) fn str(&mut self) -> Result<String, CodecError> {
        let n = self.count()?;
        let bytes = self.r.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CodecError::Invalid("account state string not UTF-8"))
    }

    pub(in crate::codec) fn opt_str(&mut self) -> Result<Option<String>, CodecError> {
        Ok(if self.bool()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    pub(in crate::codec) fn dec(&mut self, implied_scale: u32) -> Result<Decimal, CodecError> {
        let h = self.r.varint()?;
        let scale = match h & 3 {
            DEC_IMPLIED_SCALE => implied_scale,
            DEC_OWN_SCALE => u32::from(self.r.u8()?),
            DEC_FULL if h == DEC_FULL => {
                let mut b = [0u8; 16];
                b.copy_from_slice(self.r.take(16)?);
                // Only the scale (≤ 28) and sign bits of the flags may be set.
                if b[0] != 0 || b[1] != 0 || b[2] > 28 || b[3] & 0x7f != 0 {
                    return Err(CodecError::Invalid("account state decimal flags"));
                }
                return Ok(Decimal::deserialize(b));
            }
            _ => return Err(CodecError::Invalid("account state decimal form")),
        };
        Decimal::try_new(unzigzag(h >> 2), scale)
            .map_err(|_| CodecError::Invalid("account state decimal scale over 28"))
    }

    pub(in crate::codec) fn currency(&mut self) -> Result<Currency, CodecError> {
        let i = self.r.varint()?;
        if let Some(c) = self.currencies.get(i as usize) {
            return Ok(*c);
        }
        if i != self.currencies.len() as u64 {
            return Err(CodecError::Invalid("account state currency index"));
        }
        let code = std::str::from_utf8(self.r.take(3)?)
            .map_err(|_| CodecError::Invalid("account state currency code"))?
            .to_owned();
        let c = Currency::new(&code, self.r.u8()?)
            .map_err(|_| CodecError::Invalid("account state currency"))?;
        self.currencies.push(c);
        Ok(c)
    }

    /// A payout destination, as [`Enc::destination`] writes it.
    pub(in crate::codec) fn destination(&mut self) -> Result<PayoutDestination, CodecError> {
        Ok(match self.r.u8()? {
            DEST_CLEAR => PayoutDestination::Clear(self.str()?),
            DEST_SEALED => {
                let masked = self.str()?;
                let mut fingerprint = [0u8; 16];
                fingerprint.copy_from_slice(self.r.take(16)?);
                let len = self.count()?;
                let sealed = self.r.take(len)?.to_vec();
                PayoutDestination::Sealed(Box::new(SealedDestination {
                    masked,
                    fingerprint,
                    sealed,
                }))
            }
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "payout destination",
                    tag,
                })
            }
        })
    }

    pub(in crate::codec) fn amount(&mut self) -> Result<Amount, CodecError> {
        let c = self.currency()?;
        let v = self.dec(c.scale())?;
        let a = Amount::new(v, c).map_err(|_| CodecError::Invalid("account state amount"))?;
        // `Amount::new` rescales; a stored amount is at its currency's scale.
        if !same_decimal(a.value(), v) {
            return Err(CodecError::Invalid(
                "account state amount not at its currency's scale",
            ));
        }
        Ok(a)
    }

    pub(in crate::codec) fn op_id(&mut self, stored: bool) -> Result<OpId, CodecError> {
        let n = self.r.varint()?;
        let account = if stored { self.account()? } else { self.own };
        Ok(OpId { account, n })
    }

    pub(in crate::codec) fn books(&mut self) -> Result<Vec<Book>, CodecError> {
        let n = self.count()?;
        let mut books = Vec::with_capacity(n);
        for _ in 0..n {
            let currency = self.currency()?;
            let s = currency.scale();
            books.push(Book {
                currency,
                available: self.dec(s)?,
                held: self.dec(s)?,
                deposited: self.dec(s)?,
                fees: self.dec(s)?,
                paid_out: self.dec(s)?,
                in_flight_out: self.dec(s)?,
            });
        }
        Ok(books)
    }

    pub(in crate::codec) fn daily(&mut self) -> Result<DailyUsage, CodecError> {
        let day = unzigzag(self.r.varint()?);
        let n = self.count()?;
        let mut used = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.currency()?;
            used.push((c, self.dec(c.scale())?));
        }
        Ok(DailyUsage { day, used })
    }

    pub(in crate::codec) fn ops(&mut self) -> Result<Ops, CodecError> {
        let count = self.count()?;
        let mut ops = Ops::new();
        let (mut prev_n, mut prev_at) = (0u64, self.base);
        for _ in 0..count {
            let n = prev_n.wrapping_add(self.r.varint()?);
            prev_n = n;
            let op = match self.r.u8()? {
                OP_DEPOSIT => {
                    let amount = self.amount()?;
                    OpRecord::Deposit {
                        fee: self.dec(amount.currency().scale())?,
                        amount,
                        method: tags::deposit_method_of(self.r.u8()?)?,
                        card: self.str()?,
                        at: self.time(&mut prev_at)?,
                    }
                }
                OP_WITHDRAWAL => {
                    let amount = self.amount()?;
                    let fee = self.dec(amount.currency().scale())?;
                    let method = tags::withdrawal_method_of(self.r.u8()?)?;
                    let destination = self.destination()?;
                    let status = match self.r.u8()? {
                        0 => WithdrawalStatus::Processing,
                        1 => WithdrawalStatus::Completed,
                        2 => WithdrawalStatus::Failed {
                            reason: self.str()?,
                        },
                        tag => {
                            return Err(CodecError::UnknownTag {
                                what: "withdrawal status",
                                tag,
                            })
                        }
                    };
                    let at = self.time(&mut prev_at)?;
                    let updated = Timestamp(at.millis().wrapping_add(unzigzag(self.r.varint()?)));
                    OpRecord::Withdrawal {
                        amount,
                        fee,
                        method,
                        destination,
                        status,
                        at,
                        updated,
                    }
                }
                OP_TRANSFER => {
                    let to = self.account()?;
                    let amount = self.amount()?;
                    let fee = self.dec(amount.currency().scale())?;
                    let memo = self.opt_str()?;
                    let status = match self.r.u8()? {
                        0 => TransferStatus::InFlight,
                        1 => TransferStatus::Completed,
                        2 => TransferStatus::Reversed(tags::rejection_of(self.r.u8()?)?),
                        tag => {
                            return Err(CodecError::UnknownTag {
                                what: "transfer status",
                                tag,
                            })
                        }
                    };
                    let at = self.time(&mut prev_at)?;
                    let updated = Timestamp(at.millis().wrapping_add(unzigzag(self.r.varint()?)));
                    OpRecord::Transfer {
                        to,
                        amount,
                        fee,
                        memo,
                        status,
                        at,
                        updated,
                    }
                }
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "operation record",
                        tag,
                    })
                }
            };
            ops.insert(n, op);
        }
        Ok(ops)
    }

    pub(in crate::codec) fn idempotency(
        &mut self,
    ) -> Result<HashMap<IdempotencyKey, IdempotencyEntry>, CodecError> {
        let n = self.count()?;
        let mut map = HashMap::with_capacity_and_hasher(n, Default::default());
        let mut prev = self.base;
        for _ in 0..n {
            let key = IdempotencyKey::parse(&self.str()?)
                .map_err(|_| CodecError::Invalid("account state idempotency key"))?;
            let entry = IdempotencyEntry {
                fingerprint: self.r.u64()?,
                op: self.r.varint()?,
                at: self.time(&mut prev)?,
            };
            map.insert(key, entry);
        }
        Ok(map)
    }

    pub(in crate::codec) fn credited(&mut self) -> Result<HashMap<OpId, CreditMark>, CodecError> {
        let n = self.count()?;
        let mut map = HashMap::with_capacity_and_hasher(n, Default::default());
        let mut prev = self.base;
        for _ in 0..n {
            let id = OpId {
                account: self.account()?,
                n: self.r.varint()?,
            };
            let at = self.time(&mut prev)?;
            let debit_lsn = self.r.varint()?.wrapping_sub(1);
            let refused = match self.r.u8()? {
                0 => None,
                tag => Some(tags::rejection_of(tag)?),
            };
            map.insert(
                id,
                CreditMark {
                    at,
                    debit_lsn,
                    refused,
                },
            );
        }
        Ok(map)
    }

    pub(in crate::codec) fn marks(&mut self) -> Result<VecDeque<OutgoingMark>, CodecError> {
        let n = self.count()?;
        let mut marks = VecDeque::with_capacity(n);
        let mut prev = self.base;
        for _ in 0..n {
            let at = self.time(&mut prev)?;
            marks.push_back(OutgoingMark {
                at,
                amount: self.dec(self.scale)?,
            });
        }
        Ok(marks)
    }

    pub(in crate::codec) fn new_recipients(
        &mut self,
    ) -> Result<VecDeque<NewRecipientMark>, CodecError> {
        let n = self.count()?;
        let mut marks = VecDeque::with_capacity(n);
        let mut prev = self.base;
        for _ in 0..n {
            let at = self.time(&mut prev)?;
            marks.push_back(NewRecipientMark {
                at,
                to: self.account()?,
            });
        }
        Ok(marks)
    }

    pub(in crate::codec) fn known_recipients(&mut self) -> Result<HashSet<AccountId>, CodecError> {
        let n = self.count()?;
        let mut set = HashSet::with_capacity_and_hasher(n, Default::default());
        for _ in 0..n {
            let a = self.account()?;
            set.insert(a);
        }
        Ok(set)
    }

    pub(in crate::codec) fn alerts(&mut self) -> Result<VecDeque<AlertRecord>, CodecError> {
        let n = self.count()?;
        let mut alerts = VecDeque::with_capacity(n);
        let mut prev = self.base;
        for _ in 0..n {
            alerts.push_back(AlertRecord {
                n: self.r.varint()?,
                rule: tags::fraud_rule_of(self.r.u8()?)?,
                severity: tags::severity_of(self.r.u8()?)?,
                action: tags::fraud_action_of(self.r.u8()?)?,
                message: self.str()?,
                at: self.time(&mut prev)?,
            });
        }
        Ok(alerts)
    }

    pub(in crate::codec) fn notifications(
        &mut self,
        ops: &Ops,
    ) -> Result<VecDeque<Notification>, CodecError> {
        let count = self.count()?;
        let mut notes = VecDeque::with_capacity(count);
        let (mut prev_seq, mut prev_at) = (0u64, self.base);
        let mut balances: Vec<(Currency, Decimal)> = Vec::new();
        for _ in 0..count {
            let seq = prev_seq.wrapping_add(self.r.varint()?);
            prev_seq = seq;
            let at = self.time(&mut prev_at)?;
            let kind =
                match self.r.u8()? {
                    tag @ (NOTE_BALANCE | NOTE_BALANCE_STEP) => {
                        let currency = self.currency()?;
                        let last = balances.iter_mut().find(|(c, _)| *c == currency);
                        let available =
                            if tag == NOTE_BALANCE {
                                self.dec(currency.scale())?
                            } else {
                                let step = unzigzag(self.r.varint()?);
                                let prev = last.as_ref().map(|(_, prev)| *prev).ok_or(
                                    CodecError::Invalid("balance step without an earlier balance"),
                                )?;
                                i64::try_from(prev.mantissa())
                                    .ok()
                                    .and_then(|m| m.checked_add(step))
                                    .and_then(|m| Decimal::try_new(m, prev.scale()).ok())
                                    .ok_or(CodecError::Invalid("balance step out of range"))?
                            };
                        match last {
                            Some((_, prev)) => *prev = available,
                            None => balances.push((currency, available)),
                        }
                        NotificationKind::BalanceUpdated {
                            currency,
                            available,
                            held: self.dec(currency.scale())?,
                        }
                    }
                    NOTE_TRANSACTION => self.transaction(ops)?,
                    NOTE_ALERT => {
                        let flags = self.r.u8()?;
                        if flags & !ID_OP_ACCOUNT != 0 {
                            return Err(CodecError::Invalid("alert notification flags"));
                        }
                        NotificationKind::AlertRaised {
                            id: self.op_id(flags & ID_OP_ACCOUNT != 0)?,
                            rule: tags::fraud_rule_of(self.r.u8()?)?,
                            severity: tags::severity_of(self.r.u8()?)?,
                            action: tags::fraud_action_of(self.r.u8()?)?,
                            message: self.str()?,
                        }
                    }
                    NOTE_STATUS => NotificationKind::StatusChanged {
                        from: tags::status_of(self.r.u8()?)?,
                        to: tags::status_of(self.r.u8()?)?,
                        reason: self.str()?,
                    },
                    NOTE_SESSION => {
                        let flags = self.r.u8()?;
                        if flags & !(ID_OP_ACCOUNT | SESSION_COUNTRY | SESSION_NEW_DEVICE) != 0 {
                            return Err(CodecError::Invalid("session notification flags"));
                        }
                        let session = self.op_id(flags & ID_OP_ACCOUNT != 0)?;
                        let device_id = self.str()?;
                        let country = if flags & SESSION_COUNTRY != 0 {
                            Some(self.str()?)
                        } else {
                            None
                        };
                        NotificationKind::SessionCreated {
                            session,
                            device_id,
                            country,
                            new_device: flags & SESSION_NEW_DEVICE != 0,
                        }
                    }
                    NOTE_KYC => NotificationKind::KycUpdated {
                        status: tags::kyc_status_of(self.r.u8()?)?,
                        tier: self.r.u8()?,
                        reason: self.opt_str()?,
                    },
                    NOTE_SECURITY => NotificationKind::SecurityChanged {
                        change: tags::security_change_of(self.r.u8()?)?,
                        totp_enabled: self.bool()?,
                        recovery_codes_left: u32::try_from(self.r.varint()?)
                            .map_err(|_| CodecError::Invalid("recovery codes left over u32"))?,
                    },
                    tag => {
                        return Err(CodecError::UnknownTag {
                            what: "notification kind",
                            tag,
                        })
                    }
                };
            notes.push_back(Notification { seq, at, kind });
        }
        Ok(notes)
    }

    pub(in crate::codec) fn transaction(
        &mut self,
        ops: &Ops,
    ) -> Result<NotificationKind, CodecError> {
        let kind_status = self.r.u8()?;
        let kind = tags::op_kind_of(kind_status / 4)?;
        let status = tags::tx_status_of(kind_status % 4)?;
        let flags = self.r.u8()?;
        let known = TX_OUT | TX_OP_ACCOUNT | TX_PEER_IS_OP_ACCOUNT | TX_PEER | TX_AS_OP;
        let peer_flags = flags & (TX_PEER_IS_OP_ACCOUNT | TX_PEER);
        if flags & !known != 0
            || peer_flags == TX_PEER_IS_OP_ACCOUNT | TX_PEER
            || (flags & TX_AS_OP != 0 && (peer_flags != 0 || flags & TX_OP_ACCOUNT != 0))
        {
            return Err(CodecError::Invalid("transaction notification flags"));
        }
        let direction = tags::direction_of(flags & TX_OUT)?;
        let id = self.op_id(flags & TX_OP_ACCOUNT != 0)?;
        let (currency, amount, fee, counterparty) = if flags & TX_AS_OP != 0 {
            ops.get(&id.n).map(op_terms).ok_or(CodecError::Invalid(
                "transaction notification of an unknown operation",
            ))?
        } else {
            let currency = self.currency()?;
            let amount = self.dec(currency.scale())?;
            let fee = self.dec(currency.scale())?;
            let counterparty = match peer_flags {
                TX_PEER_IS_OP_ACCOUNT => Some(id.account),
                TX_PEER => Some(self.account()?),
                _ => None,
            };
            (currency, amount, fee, counterparty)
        };
        Ok(NotificationKind::TransactionUpdated {
            id,
            kind,
            status,
            amount,
            fee,
            currency,
            direction,
            counterparty,
        })
    }
}
