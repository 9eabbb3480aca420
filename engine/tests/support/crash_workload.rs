//! The workload and the checks shared by the crash tests (`tests/crash.rs`): a fixed
//! set of generously funded accounts, random transfers between them, the line
//! protocol a crashing child uses to tell its parent what it attempted and what the
//! engine acknowledged, and the verification that runs after every crash.
//!
//! The verification is the point of the crash tests, so it is strict: every earlier
//! attempt is sent again with its key until it has an outcome; an acknowledged one
//! must come back as the very operation that was acknowledged (same id, same
//! timestamp, so a lost operation re-applied by the retry can't pass for the
//! original); every attempt is then applied exactly once, which the per-account
//! balance model, the conservation of money, the ledger audit, the statements
//! (each completed transfer listed once on both sides, nothing twice) and a
//! rebuild of each account from the store all confirm.
//!
//! Every test binary that declares `mod support` compiles this module but only the
//! crash tests use it, hence the `dead_code` allowance below.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use okpay_engine::domain::command::{DepositMethod, Profile};
use okpay_engine::domain::state::TransferStatus;
use okpay_engine::domain::view::TransferView;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpId, OpKind};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::policy::Policy;
use okpay_engine::runtime::rebuild;
use okpay_engine::store::Store;
use okpay_engine::{Engine, EngineConfig, EngineError, Outcome, Rejection, RuntimeConfig};
use rand::Rng;
use rust_decimal::Decimal;

/// Accounts `AccountId(1..=ACCOUNTS)`: few enough that every pair sees traffic (and
/// so concurrent sagas cross each other), enough to spread over both arbiters.
pub const ACCOUNTS: u64 = 8;

/// Each account's one-off funding, in cents: 1,000,000.00 CNY, so random transfers of
/// at most [`MAX_TRANSFER_CENTS`] never run an account dry and every attempt must
/// succeed. A refusal is therefore always a finding, never noise.
pub const FUNDING_CENTS: i64 = 100_000_000;

/// The largest random transfer, in cents (100.00 CNY).
pub const MAX_TRANSFER_CENTS: i64 = 10_000;

/// How long any one request may keep answering "retry later" before the check gives
/// up: far longer than Redis's timeouts and the saga's 1 s credit back-off.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The account numbered `n` (1-based).
pub fn account(n: u64) -> AccountId {
    AccountId(n)
}

pub fn cny_currency() -> Currency {
    // unwrap: a valid ISO code and scale.
    Currency::new("CNY", 2).unwrap()
}

pub fn cny(cents: i64) -> Amount {
    // unwrap: cents always fit CNY's scale.
    Amount::new(Decimal::new(cents, 2), cny_currency()).unwrap()
}

fn key(s: &str) -> IdempotencyKey {
    // unwrap: every key built here is short visible ASCII.
    IdempotencyKey::parse(s).unwrap()
}

/// The default policy with velocity, fan-out, daily and single limits raised (as in
/// `benches::load_policy`), so random traffic is never refused; every rule is still
/// evaluated on every transfer.
pub fn load_policy() -> Policy {
    let mut p = Policy::default();
    p.tier0.daily_out_max = Decimal::from(1_000_000_000i64);
    p.tier0.single_max = Decimal::from(1_000_000i64);
    p.fraud.velocity_max_ops = 1_000_000;
    // By sum too: 8 accounts sending up to 100.00 each trip the default
    // 100,000.00 a minute once the engine is fast enough (it did, on a quiet
    // machine, once transfers within an executor took one batch).
    p.fraud.velocity_max_sum = Some(Decimal::from(1_000_000_000_000i64));
    p.fraud.fan_out_max_new_recipients = 1_000_000;
    p.fraud.challenge_over = Decimal::from(1_000_000i64);
    p
}

/// The engine configuration of every crash test: the load policy, two executors
/// (so transfers cross executors), and checkpoints every few frames so crashes land
/// between checkpoint and trim, and recovery mixes checkpoints with log tails.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        policy: load_policy(),
        runtime: RuntimeConfig {
            executors: 2,
            checkpoint_every: 8,
            ..RuntimeConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// One transfer request as the client built it; sent again verbatim after a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub key: String,
    /// Account numbers (see [`account`]).
    pub from: u64,
    pub to: u64,
    pub cents: i64,
}

impl Attempt {
    /// A random transfer between two distinct accounts.
    pub fn random(key: String, rng: &mut impl Rng) -> Attempt {
        let from = rng.gen_range(1..=ACCOUNTS);
        let to = loop {
            let to = rng.gen_range(1..=ACCOUNTS);
            if to != from {
                break to;
            }
        };
        Attempt {
            key,
            from,
            to,
            cents: rng.gen_range(1..=MAX_TRANSFER_CENTS),
        }
    }

    /// `ATTEMPT <key> <from> <to> <cents>`: printed before the request is sent.
    pub fn line(&self) -> String {
        format!(
            "ATTEMPT {} {} {} {}",
            self.key, self.from, self.to, self.cents
        )
    }

    pub async fn send(&self, engine: &Engine) -> Result<Outcome, EngineError> {
        engine
            .transfer(
                account(self.from),
                key(&self.key),
                account(self.to),
                cny(self.cents),
                None,
                false,
            )
            .await
    }
}

/// What the engine acknowledged for a key: the operation and when it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub op: OpId,
    pub at_ms: i64,
}

impl Ack {
    pub fn of(view: &TransferView) -> Ack {
        Ack {
            op: view.id,
            at_ms: view.at.millis(),
        }
    }

    /// `ACK <key> <op id> <at ms>`: printed once the engine answered with success.
    pub fn line(&self, key: &str) -> String {
        format!(
            "ACK {key} {} {}",
            self.op.display(OpKind::Transfer),
            self.at_ms
        )
    }
}

/// Everything earlier runs attempted and had acknowledged, in attempt order.
#[derive(Debug, Default)]
pub struct History {
    pub attempts: Vec<Attempt>,
    pub acks: HashMap<String, Ack>,
}

impl History {
    /// Parses the `ATTEMPT` and `ACK` lines of `text`, ignoring every other line (the
    /// test harness's own output). A malformed protocol line is an error: silently
    /// dropping an attempt would make the balance check fail for the wrong reason.
    pub fn parse(text: &str) -> Result<History, String> {
        let mut history = History::default();
        let mut keys = HashSet::new();
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ATTEMPT", key, from, to, cents] => {
                    let attempt = Attempt {
                        key: (*key).to_owned(),
                        from: from.parse().map_err(|_| format!("bad line {line:?}"))?,
                        to: to.parse().map_err(|_| format!("bad line {line:?}"))?,
                        cents: cents.parse().map_err(|_| format!("bad line {line:?}"))?,
                    };
                    if !keys.insert(attempt.key.clone()) {
                        return Err(format!("key {key} attempted twice"));
                    }
                    history.attempts.push(attempt);
                }
                ["ACK", key, op, at_ms] => {
                    let op = OpId::parse(op, OpKind::Transfer)
                        .map_err(|_| format!("bad op id in {line:?}"))?;
                    let at_ms = at_ms.parse().map_err(|_| format!("bad line {line:?}"))?;
                    history.acks.insert((*key).to_owned(), Ack { op, at_ms });
                }
                [first, ..] if first.starts_with("ATTEMPT") || first.starts_with("ACK") => {
                    return Err(format!("malformed protocol line {line:?}"));
                }
                _ => {}
            }
        }
        if let Some(orphan) = history.acks.keys().find(|k| !keys.contains(*k)) {
            return Err(format!("ACK for {orphan} without ATTEMPT"));
        }
        Ok(history)
    }
}

/// Retries `op` while it answers with a retryable error, up to [`SETTLE_TIMEOUT`].
async fn until_settled<T, F, Fut>(what: &str, mut op: F) -> Result<Result<T, Rejection>, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match op().await {
            Ok(t) => return Ok(Ok(t)),
            Err(EngineError::Rejected(r)) => return Ok(Err(r)),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "{what}: still failing after {SETTLE_TIMEOUT:?}: {e}"
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Opens every account (an existing one answers `ALREADY_EXISTS`, which is fine) and
/// funds each once with a fixed key, so running this again after a crash changes
/// nothing.
pub async fn open_and_fund(engine: &Engine) -> Result<(), String> {
    for n in 1..=ACCOUNTS {
        let id = account(n);
        let opened = until_settled("open", || {
            engine.open_account_with_id(id, Profile::default())
        })
        .await?;
        match opened {
            Ok(()) | Err(Rejection::AlreadyExists) => {}
            Err(r) => return Err(format!("opening {id}: {}", r.code())),
        }
        let funded = until_settled("fund", || {
            engine.deposit(
                id,
                key(&format!("fund-{n}")),
                cny(FUNDING_CENTS),
                DepositMethod::BankCard,
            )
        })
        .await?;
        if let Err(r) = funded {
            return Err(format!("funding {id}: {}", r.code()));
        }
    }
    Ok(())
}

/// Sends `attempt` until it has an outcome and checks that the outcome is the
/// completed transfer it asked for.
pub async fn settle(engine: &Engine, attempt: &Attempt) -> Result<TransferView, String> {
    let outcome = until_settled(&attempt.key, || attempt.send(engine)).await?;
    let view = match outcome {
        Ok(Outcome::Transfer(view)) => view,
        Ok(other) => return Err(format!("{}: answered {other:?}", attempt.key)),
        Err(r) => return Err(format!("{}: refused with {}", attempt.key, r.code())),
    };
    let asked = (
        account(attempt.from),
        account(attempt.to),
        cny(attempt.cents),
    );
    if (view.from, view.to, view.amount) != asked || view.status != TransferStatus::Completed {
        return Err(format!(
            "{}: answered {view:?} for {attempt:?}",
            attempt.key
        ));
    }
    Ok(view)
}

/// Waits until no account has a transfer in flight (the saga re-drives them after
/// `recover_in_flight`).
pub async fn wait_until_no_transfer_in_flight(engine: &Engine) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let mut open = 0;
        for n in 1..=ACCOUNTS {
            let state = until_settled("state", || engine.state(account(n)))
                .await?
                .map_err(|r| format!("state of account {n}: {}", r.code()))?;
            open += state.open_transfers().count();
        }
        if open == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{open} transfers still in flight"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a successful verification saw, for the report.
#[derive(Debug, Default)]
pub struct Verified {
    pub attempts: usize,
    pub acked: usize,
    /// Transfers found in flight by `recover_in_flight` (re-driven by the saga).
    pub in_flight_at_recovery: usize,
}

/// The whole post-crash check; see the module docs.
pub async fn verify(
    engine: &Engine,
    store: &dyn Store,
    history: &History,
) -> Result<Verified, String> {
    open_and_fund(engine).await?;
    let in_flight_at_recovery = until_settled("recover", || engine.recover_in_flight())
        .await?
        .map_err(|r| format!("recover_in_flight refused: {}", r.code()))?;
    wait_until_no_transfer_in_flight(engine).await?;

    // Every attempt again, with its key and body, until it has an outcome.
    let views: Vec<Result<TransferView, String>> = futures::stream::iter(&history.attempts)
        .map(|a| settle(engine, a))
        .buffered(64)
        .collect()
        .await;
    let mut ops = HashSet::new();
    let mut settled = Vec::with_capacity(views.len());
    for (attempt, view) in history.attempts.iter().zip(views) {
        let view = view?;
        settled.push(view.clone());
        if let Some(acked) = history.acks.get(&attempt.key) {
            if *acked != Ack::of(&view) {
                return Err(format!(
                    "{} was acknowledged as {acked:?} but is now {:?}: an acknowledged transfer was lost",
                    attempt.key,
                    Ack::of(&view)
                ));
            }
        }
        if !ops.insert(view.id) {
            return Err(format!("{} shares operation {:?}", attempt.key, view.id));
        }
    }
    check_balances(engine, &history.attempts).await?;
    check_statements(engine, &settled).await?;
    check_rebuild_equals_live(engine, store, 1..=ACCOUNTS).await?;
    Ok(Verified {
        attempts: history.attempts.len(),
        acked: history.acks.len(),
        in_flight_at_recovery,
    })
}

/// Every account's statement (its history rows, read through the engine page by
/// page) lists each transfer of `settled` at most once, the completed ones
/// exactly once on both sides as completed, and no transfer that is not
/// among them: the rows of acknowledged operations survive the crash (they
/// are written behind the log, gathered for a while on Redis, and rewritten
/// by recovery) and are never listed twice.
pub async fn check_statements(engine: &Engine, settled: &[TransferView]) -> Result<(), String> {
    use okpay_engine::domain::notification::{Direction, TxStatus};
    let mut rows: HashMap<(AccountId, OpId), Vec<(Direction, TxStatus)>> = HashMap::new();
    for n in 1..=ACCOUNTS {
        let id = account(n);
        let mut cursor = None;
        for page in 0.. {
            if page > 10_000 {
                return Err(format!("the statement of {id} never ends"));
            }
            let (items, next) = until_settled("history", || {
                engine.history(id, cursor.clone(), 200, Some(OpKind::Transfer))
            })
            .await?
            .map_err(|r| format!("history of {id}: {}", r.code()))?;
            for r in items {
                rows.entry((id, r.id))
                    .or_default()
                    .push((r.direction, r.status));
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    let ids: HashSet<OpId> = settled.iter().map(|v| v.id).collect();
    if let Some(((account, op), _)) = rows.iter().find(|((_, op), _)| !ids.contains(op)) {
        return Err(format!(
            "{account}'s statement lists {op:?}, which no attempt made"
        ));
    }
    if let Some(((account, op), listed)) = rows.iter().find(|(_, listed)| listed.len() > 1) {
        return Err(format!(
            "{account}'s statement lists {op:?} {} times: {listed:?}",
            listed.len()
        ));
    }
    for view in settled
        .iter()
        .filter(|v| v.status == TransferStatus::Completed)
    {
        for (side, direction) in [(view.from, Direction::Out), (view.to, Direction::In)] {
            let listed = rows
                .get(&(side, view.id))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if listed != [(direction, TxStatus::Completed)] {
                return Err(format!(
                    "completed transfer {:?}: {side}'s statement lists {listed:?}",
                    view.id
                ));
            }
        }
    }
    Ok(())
}

/// Every account's balance equals funding + incoming − outgoing over `applied` (each
/// exactly once), nothing is held or in flight, money is conserved and the audit
/// balances.
pub async fn check_balances(engine: &Engine, applied: &[Attempt]) -> Result<(), String> {
    let mut model: HashMap<u64, i64> = (1..=ACCOUNTS).map(|n| (n, FUNDING_CENTS)).collect();
    for a in applied {
        *model.entry(a.from).or_default() -= a.cents;
        *model.entry(a.to).or_default() += a.cents;
    }
    let mut total = Decimal::ZERO;
    for n in 1..=ACCOUNTS {
        let view = until_settled("view", || engine.view(account(n)))
            .await?
            .map_err(|r| format!("view of account {n}: {}", r.code()))?;
        let (available, held) = view
            .balances
            .iter()
            .find(|b| b.currency == cny_currency())
            .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.available, b.held));
        let want = Decimal::new(model[&n], 2);
        if available != want || held != Decimal::ZERO {
            return Err(format!(
                "account {n}: available {available}, held {held}; the attempts imply {want}"
            ));
        }
        total += available;
    }
    let funded = Decimal::new(FUNDING_CENTS * ACCOUNTS as i64, 2);
    if total != funded {
        return Err(format!(
            "money not conserved: {total} held, {funded} funded"
        ));
    }
    let ledger = until_settled("audit", || engine.audit())
        .await?
        .map_err(|r| format!("audit refused: {}", r.code()))?;
    let cny = ledger.currencies.get(&cny_currency());
    let exact = cny.is_some_and(|c| c.deposited == funded && c.in_flight == Decimal::ZERO);
    if !ledger.balanced() || !exact {
        return Err(format!("audit: {ledger:?}, funded {funded}"));
    }
    Ok(())
}

/// For each account in `accounts`, the state rebuilt from the store (snapshot +
/// journal) equals the live actor's state, both compacted at the same instant.
pub async fn check_rebuild_equals_live(
    engine: &Engine,
    store: &dyn Store,
    accounts: impl IntoIterator<Item = u64>,
) -> Result<(), String> {
    for n in accounts {
        let id = account(n);
        let mut live = until_settled("state", || engine.state(id))
            .await?
            .map_err(|r| format!("state of account {n}: {}", r.code()))?;
        let mut rebuilt = rebuild(store, id)
            .await
            .map_err(|e| format!("rebuild {id}: {e}"))?
            .ok_or_else(|| format!("account {n} is not in the store"))?;
        let now = engine.clock().now();
        live.compact(now, engine.policy());
        rebuilt.compact(now, engine.policy());
        // Forgetting settled credits, like compaction, happens to live states
        // between checkpoints: compare both forgetting alike.
        let settled = engine.settled_below();
        live.prune_settled(&settled);
        rebuilt.prune_settled(&settled);
        if rebuilt != live {
            return Err(format!(
                "account {n} rebuilt from the store differs from the live state:\nrebuilt {rebuilt:?}\nlive {live:?}"
            ));
        }
    }
    Ok(())
}
