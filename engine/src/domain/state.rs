//! `AccountState`: everything one account knows, as plain data. Only `apply`
//! changes it; `decide` reads it. It is what a snapshot stores.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use crate::domain::destination::PayoutDestination;
use crate::domain::locale::Locale;
use crate::domain::notification::Notification;
use crate::domain::ops::Ops;
use crate::domain::rejection::Rejection;
use crate::domain::security::{Challenge, Kyc, Security};
use crate::domain::window::{Mark, Window};
use crate::ids::{AccountId, IdempotencyKey, TransferId};
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

/// The account status machine. See ARCHITECTURE.md "Account status".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AccountStatus {
    #[default]
    Active,
    /// Legacy: the login lockout used to be a status. It is now its own fact
    /// (`Security::locked_until`) and never a status; the variant stays so that
    /// older journals and snapshots decode (the stored enum index is positional).
    /// An account still in it (an old snapshot) behaves as active.
    Locked,
    /// May receive, may not send.
    Restricted,
    /// No outgoing money; login still allowed so the user can see why.
    Frozen,
    /// Terminal: nothing in, nothing out.
    Closed,
}

impl AccountStatus {
    pub fn name(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Locked => "locked",
            AccountStatus::Restricted => "restricted",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }

    /// Whether the account is in good standing (`Active`, or the legacy `Locked`).
    pub fn is_active(self) -> bool {
        matches!(self, AccountStatus::Active | AccountStatus::Locked)
    }

    /// The rejection an outgoing operation gets in this status, if any.
    pub fn outgoing_refusal(self) -> Option<Rejection> {
        match self {
            AccountStatus::Active | AccountStatus::Locked => None,
            AccountStatus::Restricted => Some(Rejection::AccountRestricted),
            AccountStatus::Frozen => Some(Rejection::AccountFrozen),
            AccountStatus::Closed => Some(Rejection::AccountClosed),
        }
    }
}

/// One currency's money on this account, and the account's share of the ledger
/// audit (`deposited = balances + in_flight + fees + paid_out`, summed over accounts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub currency: Currency,
    /// Spendable now.
    pub available: Decimal,
    /// Reserved for pending withdrawals.
    pub held: Decimal,
    /// Gross card deposits received (before fees).
    pub deposited: Decimal,
    /// Fees earned on this account's operations (accrued here: no hot fee account).
    pub fees: Decimal,
    /// Money paid out to cards and wallets (withdrawal payouts).
    pub paid_out: Decimal,
    /// Outgoing transfers debited and not yet completed or reversed (amount + fee).
    pub in_flight_out: Decimal,
}

impl Book {
    pub fn new(currency: Currency) -> Self {
        let zero = Decimal::new(0, currency.scale());
        Book {
            currency,
            available: zero,
            held: zero,
            deposited: zero,
            fees: zero,
            paid_out: zero,
            in_flight_out: zero,
        }
    }

    pub fn total(&self) -> Decimal {
        self.available + self.held
    }
}

/// Where a withdrawal is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WithdrawalStatus {
    Processing,
    Completed,
    Failed { reason: String },
}

/// Where an outgoing transfer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferStatus {
    InFlight,
    Completed,
    Reversed(Rejection),
}

/// An operation this account started and still remembers: open ones always, closed
/// ones while an idempotency key may point at them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpRecord {
    Deposit {
        amount: Amount,
        fee: Decimal,
        method: DepositMethod,
        card: String,
        at: Timestamp,
    },
    Withdrawal {
        amount: Amount,
        fee: Decimal,
        method: WithdrawalMethod,
        destination: PayoutDestination,
        status: WithdrawalStatus,
        at: Timestamp,
        updated: Timestamp,
    },
    Transfer {
        to: AccountId,
        amount: Amount,
        fee: Decimal,
        memo: Option<String>,
        status: TransferStatus,
        at: Timestamp,
        updated: Timestamp,
    },
}

impl OpRecord {
    /// Whether the operation still waits for something (payout, credit).
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            OpRecord::Withdrawal {
                status: WithdrawalStatus::Processing,
                ..
            } | OpRecord::Transfer {
                status: TransferStatus::InFlight,
                ..
            }
        )
    }

    /// When the operation last changed status.
    pub fn last_change(&self) -> Timestamp {
        match self {
            OpRecord::Deposit { at, .. } => *at,
            OpRecord::Withdrawal { updated, .. } | OpRecord::Transfer { updated, .. } => *updated,
        }
    }
}

/// A remembered client request: which operation its key produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub fingerprint: u64,
    pub op: u64,
    pub at: Timestamp,
}

/// One outgoing operation, for the velocity windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMark {
    pub at: Timestamp,
    pub amount: Decimal,
}

impl Mark for OutgoingMark {
    /// Summed across currencies, as the velocity rule's sum always was.
    type Key = ();
    fn at(&self) -> Timestamp {
        self.at
    }
    fn set_at(&mut self, at: Timestamp) {
        self.at = at;
    }
    fn key(&self) {}
    fn amount(&self) -> Decimal {
        self.amount
    }
}

/// A first payment to a recipient, for the fan-out window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRecipientMark {
    pub at: Timestamp,
    pub to: AccountId,
}

/// Outgoing money per UTC day, per currency, for the daily limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyUsage {
    pub day: i64,
    pub used: Vec<(Currency, Decimal)>,
}

impl DailyUsage {
    /// How much of `currency` went out on the UTC day of `now`.
    pub fn used_on(&self, day: i64, currency: Currency) -> Decimal {
        if self.day != day {
            return Decimal::ZERO;
        }
        self.used
            .iter()
            .find(|(c, _)| *c == currency)
            .map_or(Decimal::ZERO, |(_, d)| *d)
    }
}

/// Which edge-triggered alerts are currently raised (their condition was true at
/// the last check). A rule raises again only after its flag was cleared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedAlerts {
    pub velocity: bool,
}

/// A logged-in session. The token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub n: u64,
    pub token_hash: [u8; 32],
    pub device_id: String,
    pub device_name: Option<String>,
    pub country: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A saved recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub n: u64,
    pub alias: String,
    pub account: AccountId,
}

/// An alert as remembered by the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub n: u64,
    pub rule: crate::domain::fraud::FraudRule,
    pub severity: crate::domain::fraud::Severity,
    pub action: crate::domain::fraud::FraudAction,
    pub message: String,
    pub at: Timestamp,
}

/// How many alerts an account keeps.
pub const ALERTS_RETAINED: usize = 100;

/// At most this many live sessions per account; a new login beyond it logs the
/// oldest session out.
pub const MAX_SESSIONS: usize = 32;
/// At most this many recipients an account remembers having paid (for the
/// new-recipient and fan-out rules); the set is keyed by what clients send.
pub const MAX_KNOWN_RECIPIENTS: usize = 10_000;
/// At most this many contacts per account.
pub const MAX_CONTACTS: usize = 500;

/// The whole state of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub id: AccountId,
    pub opened: bool,
    pub opened_at: Option<Timestamp>,
    pub profile: Profile,
    /// The password as an argon2id PHC string.
    pub password_hash: String,
    pub sessions: Vec<Session>,
    pub contacts: Vec<Contact>,
    pub security: Security,
    pub challenges: Vec<Challenge>,
    pub kyc: Kyc,
    /// The most recent alerts (at most [`ALERTS_RETAINED`]), for `GET /v1/alerts`.
    pub alerts: VecDeque<AlertRecord>,
    /// Recent card deposits, for the deposit-then-quick-withdrawal rule.
    pub recent_deposits: VecDeque<OutgoingMark>,
    pub status: AccountStatus,
    pub status_reason: Option<String>,
    pub kyc_tier: u8,
    /// One book per currency the account ever used.
    pub books: Vec<Book>,
    /// The next account-local operation number (ids of deposits, transfers, alerts...).
    pub next_op: u64,
    pub ops: Ops,
    pub idempotency: HashMap<IdempotencyKey, IdempotencyEntry>,
    /// Incoming transfers decided here (credited or refused): the saga's
    /// dedupe. An entry goes once its source shard has settled every transfer
    /// debited before it ([`AccountState::prune_settled`]), never by age.
    pub credited: HashMap<TransferId, CreditMark>,
    pub outgoing: Window<OutgoingMark>,
    pub daily: DailyUsage,
    /// Every account this one ever sent money to.
    pub known_recipients: HashSet<AccountId>,
    pub new_recipients: VecDeque<NewRecipientMark>,
    pub raised: RaisedAlerts,
    /// The last user-visible notifications (at most [`NOTIFICATIONS_RETAINED`]).
    pub notifications: VecDeque<Notification>,
    /// The seq of the last notification ever produced.
    pub notification_seq: u64,
    /// The language of the owner's messages (snapshot format 2 on).
    pub locale: Locale,
}

/// What a destination remembers of an incoming transfer it decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditMark {
    pub at: Timestamp,
    /// The position in the source shard's log of the frame that debited it, or
    /// [`LEGACY_DEBIT_LSN`] for a credit recorded before positions were.
    pub debit_lsn: u64,
    /// `Some` when the credit was refused: a duplicate is refused alike.
    pub refused: Option<Rejection>,
}

/// The `debit_lsn` of credits recorded before credits carried their debit's
/// position (state format 2 and older): those go by age, after
/// `credit_dedupe_retention_s`, as they did when they were recorded.
pub const LEGACY_DEBIT_LSN: u64 = u64::MAX;

impl CreditMark {
    /// Whether the money is here (not refused).
    pub fn accepted(&self) -> bool {
        self.refused.is_none()
    }

    /// Whether the entry was recorded before debit positions, and so is
    /// forgotten by age.
    pub fn legacy(&self) -> bool {
        self.debit_lsn == LEGACY_DEBIT_LSN
    }
}

/// How many notifications an account keeps for clients resuming a stream.
pub const NOTIFICATIONS_RETAINED: usize = 256;

impl AccountState {
    /// The state of an account before its first event.
    pub fn new(id: AccountId) -> Self {
        AccountState {
            id,
            opened: false,
            opened_at: None,
            profile: Profile::default(),
            password_hash: String::new(),
            sessions: Vec::new(),
            contacts: Vec::new(),
            security: Security::default(),
            challenges: Vec::new(),
            kyc: Kyc::default(),
            alerts: VecDeque::new(),
            recent_deposits: VecDeque::new(),
            status: AccountStatus::Active,
            status_reason: None,
            kyc_tier: 0,
            books: Vec::new(),
            next_op: 1,
            ops: Ops::new(),
            idempotency: HashMap::default(),
            credited: HashMap::default(),
            outgoing: Window::default(),
            daily: DailyUsage::default(),
            known_recipients: HashSet::default(),
            new_recipients: VecDeque::new(),
            raised: RaisedAlerts::default(),
            notifications: VecDeque::new(),
            notification_seq: 0,
            locale: Locale::default(),
        }
    }

    /// Makes this the state of `id` before its first event ([`AccountState::new`])
    /// while keeping the memory its collections hold, for scratch states used
    /// over and over. Every field is named, so a new one can't be left out.
    pub fn reset_to(&mut self, id: AccountId) {
        let AccountState {
            id: this_id,
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
        } = self;
        let fresh = AccountState::new(id);
        *this_id = id;
        *opened = fresh.opened;
        *opened_at = fresh.opened_at;
        *profile = fresh.profile;
        password_hash.clear();
        sessions.clear();
        contacts.clear();
        *security = fresh.security;
        challenges.clear();
        *kyc = fresh.kyc;
        alerts.clear();
        recent_deposits.clear();
        *status = fresh.status;
        *status_reason = fresh.status_reason;
        *kyc_tier = fresh.kyc_tier;
        books.clear();
        *next_op = fresh.next_op;
        ops.clear();
        idempotency.clear();
        credited.clear();
        outgoing.clear();
        *daily = fresh.daily;
        known_recipients.clear();
        new_recipients.clear();
        *raised = fresh.raised;
        notifications.clear();
        *notification_seq = fresh.notification_seq;
        *locale = fresh.locale;
    }

    pub fn book(&self, currency: Currency) -> Option<&Book> {
        self.books.iter().find(|b| b.currency == currency)
    }

    /// The book of `currency`, created empty on first use.
    pub fn book_mut(&mut self, currency: Currency) -> &mut Book {
        book_in(&mut self.books, currency)
    }

    pub fn available(&self, currency: Currency) -> Decimal {
        self.book(currency).map_or(Decimal::ZERO, |b| b.available)
    }

    /// Operations that still wait for a payout or a credit.
    pub fn open_transfers(&self) -> impl Iterator<Item = (u64, &OpRecord)> {
        self.ops.iter().filter_map(|(n, op)| {
            matches!(
                op,
                OpRecord::Transfer {
                    status: TransferStatus::InFlight,
                    ..
                }
            )
            .then_some((*n, op))
        })
    }

    /// The live session `n` whose token hashes to `token_hash`, if not expired.
    pub fn session(&self, n: u64, token_hash: &[u8; 32], now: Timestamp) -> Option<&Session> {
        self.sessions
            .iter()
            .find(|s| s.n == n && s.expires_at > now && constant_time_eq(&s.token_hash, token_hash))
    }

    /// Notifications with `seq > after`, oldest first.
    pub fn notifications_after(&self, after: u64) -> impl Iterator<Item = &Notification> {
        self.notifications.iter().filter(move |n| n.seq > after)
    }

    /// Forgets what no rule can look at any more: activity marks older than the
    /// window of the rule that reads them, idempotency keys and closed
    /// operations past their retention, credited-transfer ids of the legacy
    /// format past theirs. Pure and deterministic; no decision changes because
    /// of it (`decide` ages the same data out by the same horizons itself), so
    /// it only bounds memory.
    pub fn compact(&mut self, now: Timestamp, policy: &crate::policy::Policy) {
        // Outgoing marks feed only the velocity rule; kept for the fan-out
        // window as well, most of them sat outside the velocity window, and
        // its sum walked them on every outgoing operation.
        let fraud = &policy.fraud;
        self.outgoing
            .drop_until(now.millis() - i64::from(fraud.velocity_window_s) * 1000);
        let fan_out_start = now.millis() - i64::from(fraud.fan_out_window_s) * 1000;
        while self
            .new_recipients
            .front()
            .is_some_and(|o| o.at.millis() <= fan_out_start)
        {
            self.new_recipients.pop_front();
        }
        let deposits_start =
            now.millis() - i64::from(policy.security.quick_withdrawal_window_s) * 1000;
        while self
            .recent_deposits
            .front()
            .is_some_and(|o| o.at.millis() <= deposits_start)
        {
            self.recent_deposits.pop_front();
        }
        crate::domain::security::compact_security(self, now, policy);
        let keys_start = now.millis() - i64::from(policy.idempotency_retention_s) * 1000;
        self.idempotency.retain(|_, e| e.at.millis() > keys_start);
        self.ops
            .retain(|_, op| op.is_open() || op.last_change().millis() > keys_start);
        // Credits carrying their debit's position go by `prune_settled`, never by
        // age: a transfer may stay in flight for as long as its source is down.
        let dedupe_start = now.millis() - i64::from(policy.credit_dedupe_retention_s) * 1000;
        self.credited
            .retain(|_, mark| !mark.legacy() || mark.at.millis() > dedupe_start);
        self.sessions.retain(|s| s.expires_at > now);
        if self.daily.day != now.utc_day() {
            self.daily = DailyUsage::default();
        }
    }

    /// Forgets the incoming transfers whose source will never ask about them
    /// again: `settled_below(source)` is the position in the source account's
    /// shard log below which every transfer it debited has a durable outcome
    /// there (its watermark). Returns how many entries went.
    pub fn prune_settled(&mut self, settled_below: impl Fn(AccountId) -> u64) -> usize {
        let before = self.credited.len();
        self.credited
            .retain(|id, mark| mark.legacy() || mark.debit_lsn >= settled_below(id.account));
        before - self.credited.len()
    }
}

/// The book of `currency` in `books`, created empty on first use.
pub(crate) fn book_in(books: &mut Vec<Book>, currency: Currency) -> &mut Book {
    let idx = match books.iter().position(|b| b.currency == currency) {
        Some(i) => i,
        None => {
            books.push(Book::new(currency));
            books.len() - 1
        }
    };
    &mut books[idx]
}

/// Compares two hashes without an early exit, so timing says nothing about how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
