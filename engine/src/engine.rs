//! `Engine`: the one entry point. Commands in, outcomes out, subscriptions to
//! notifications. The gateway, the benches and the tests all use it; nothing
//! outside the engine sees an actor or the journal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{Arbiter, ArbiterHandle, System};
use futures::StreamExt;
use tokio::sync::{broadcast, oneshot};

use crate::domain::audit::{audit, Ledger};
use crate::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use crate::domain::state::AccountStatus;
use crate::domain::view::{AccountView, AuditShare, Outcome};
use crate::domain::Command;
use crate::ids::{AccountId, IdempotencyKey, OpId};
use crate::money::Amount;
use crate::policy::Policy;
use crate::runtime::actor::{Durable, Passivate, ReadFn, ReadNowFn, Request};
use crate::runtime::directory::Directory;
use crate::runtime::hub::{AdminNotice, Hub};
use crate::runtime::{EngineError, RuntimeConfig, Shared};
use crate::store::journal_writer::{JournalWriter, WriterStats};
use crate::store::Store;
use crate::time::{Clock, SystemClock};

pub use crate::runtime::actor::Subscription;

/// How many times a request follows an actor that retired under it.
const MAX_MOVES: usize = 16;

/// Everything the engine needs to start.
pub struct EngineConfig {
    pub policy: Policy,
    pub runtime: RuntimeConfig,
    pub clock: Arc<dyn Clock>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            policy: Policy::default(),
            runtime: RuntimeConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// A handle to a running engine. Cloning is cheap; all clones drive one engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.shared.store.backend_name())
            .field("active_actors", &self.active_actors())
            .finish()
    }
}

/// Starts an actix system on its own thread with `n` arbiters for the actors, so
/// the engine runs the same under actix-web, plain tokio, or criterion.
fn start_arbiters(n: usize) -> Vec<ArbiterHandle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("okpay-actors".into())
        .spawn(move || {
            let system = System::new();
            let arbiters: Vec<Arbiter> = (0..n.max(1)).map(|_| Arbiter::new()).collect();
            let _ = tx.send(arbiters.iter().map(Arbiter::handle).collect::<Vec<_>>());
            system.run().ok();
            drop(arbiters);
        })
        // unwrap: failing to spawn the actor system at start-up is fatal.
        .unwrap();
    // unwrap: the thread sends before anything can fail.
    rx.recv().unwrap()
}

impl Engine {
    /// Starts the engine over `store`.
    pub fn start(config: EngineConfig, store: Arc<dyn Store>) -> Engine {
        let arbiters = start_arbiters(config.runtime.arbiters);
        let writer = JournalWriter::new(
            store.clone(),
            config.runtime.journal_queue,
            config.runtime.max_batch,
        );
        Engine {
            shared: Arc::new(Shared {
                policy: config.policy,
                store,
                writer,
                hub: Hub::default(),
                clock: config.clock,
                directory: Directory::new(arbiters),
                config: config.runtime,
                active: Default::default(),
            }),
        }
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Engine {
        Engine { shared }
    }

    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Sends a request to `account`'s actor (activating it), following it if it
    /// retires meanwhile.
    async fn ask<T>(
        &self,
        account: AccountId,
        make: impl Fn(oneshot::Sender<Result<T, EngineError>>) -> Request,
    ) -> Result<T, EngineError> {
        for attempt in 0..MAX_MOVES {
            let (tx, rx) = oneshot::channel();
            let generation = self
                .shared
                .directory
                .deliver(&self.shared, account, make(tx))?;
            match rx.await {
                Ok(Err(EngineError::Moved)) | Err(_) => {
                    // The actor retired (or failed to activate) before serving us.
                    self.shared.directory.remove(account, generation);
                    if attempt > 2 {
                        tokio::time::sleep(Duration::from_millis(1 << attempt.min(6))).await;
                    }
                }
                Ok(result) => return result,
            }
        }
        Err(EngineError::Unavailable(
            "account could not be activated".into(),
        ))
    }

    /// Runs any command on `account`.
    pub async fn execute(&self, account: AccountId, cmd: Command) -> Result<Outcome, EngineError> {
        let timer = std::time::Instant::now();
        let result = self
            .ask(account, |reply| Request::Execute {
                cmd: cmd.clone(),
                reply,
            })
            .await;
        metrics::histogram!("okpay_engine_command_seconds").record(timer.elapsed().as_secs_f64());
        result
    }

    /// Opens a new account with a fresh random id.
    pub async fn open_account(&self, profile: Profile) -> Result<AccountId, EngineError> {
        let id = AccountId::random();
        self.open_account_with_id(id, profile).await?;
        Ok(id)
    }

    /// Opens the account `id` (the caller chose the id, e.g. after claiming a login).
    pub async fn open_account_with_id(
        &self,
        id: AccountId,
        profile: Profile,
    ) -> Result<(), EngineError> {
        let cmd = Command::Open {
            profile,
            password_hash: String::new(),
        };
        self.execute(id, cmd).await.map(|_| ())
    }

    pub async fn deposit(
        &self,
        account: AccountId,
        key: IdempotencyKey,
        amount: Amount,
        method: DepositMethod,
    ) -> Result<Outcome, EngineError> {
        self.execute(
            account,
            Command::Deposit {
                key,
                amount,
                method,
                card: String::new(),
            },
        )
        .await
    }

    pub async fn withdraw(
        &self,
        account: AccountId,
        key: IdempotencyKey,
        amount: Amount,
        method: WithdrawalMethod,
        destination: String,
        step_up_verified: bool,
    ) -> Result<Outcome, EngineError> {
        self.execute(
            account,
            Command::Withdraw {
                key,
                amount,
                method,
                destination,
                step_up_verified,
            },
        )
        .await
    }

    pub async fn settle_withdrawal(&self, id: OpId) -> Result<Outcome, EngineError> {
        self.execute(id.account, Command::SettleWithdrawal { id })
            .await
    }

    pub async fn fail_withdrawal(&self, id: OpId, reason: String) -> Result<Outcome, EngineError> {
        self.execute(id.account, Command::FailWithdrawal { id, reason })
            .await
    }

    /// Sends money; answers once the transfer completed (or with the destination's
    /// refusal once it was reversed).
    pub async fn transfer(
        &self,
        from: AccountId,
        key: IdempotencyKey,
        to: AccountId,
        amount: Amount,
        memo: Option<String>,
        step_up_verified: bool,
    ) -> Result<Outcome, EngineError> {
        self.execute(
            from,
            Command::Transfer {
                key,
                to,
                amount,
                memo,
                step_up_verified,
            },
        )
        .await
    }

    pub async fn set_status(
        &self,
        account: AccountId,
        to: AccountStatus,
        reason: String,
    ) -> Result<Outcome, EngineError> {
        self.execute(account, Command::SetStatus { to, reason })
            .await
    }

    pub async fn freeze(&self, account: AccountId, reason: String) -> Result<Outcome, EngineError> {
        self.set_status(account, AccountStatus::Frozen, reason)
            .await
    }

    pub async fn unfreeze(
        &self,
        account: AccountId,
        reason: String,
    ) -> Result<Outcome, EngineError> {
        self.set_status(account, AccountStatus::Active, reason)
            .await
    }

    pub async fn restrict(
        &self,
        account: AccountId,
        reason: String,
    ) -> Result<Outcome, EngineError> {
        self.set_status(account, AccountStatus::Restricted, reason)
            .await
    }

    pub async fn set_kyc_tier(&self, account: AccountId, tier: u8) -> Result<Outcome, EngineError> {
        self.execute(account, Command::SetKycTier { tier }).await
    }

    /// Runs `f` on `account`'s state inside its actor and returns what `f` made of
    /// it, once everything `f` may have seen is durable. The one way to query an
    /// account: callers copy out only what they need, never the whole state.
    pub async fn read<T: Send + 'static>(
        &self,
        account: AccountId,
        f: impl Fn(&crate::domain::AccountState, &Policy, crate::time::Timestamp) -> T
            + Send
            + Sync
            + 'static,
    ) -> Result<T, EngineError> {
        let f: ReadFn = Arc::new(move |state, policy, now| Box::new(f(state, policy, now)));
        let out = self
            .ask(account, |reply| Request::Read {
                f: f.clone(),
                reply,
            })
            .await?;
        // unwrap: the function above boxes a `T`, and nothing else answers this read.
        Ok(*out.downcast::<T>().unwrap())
    }

    /// Like [`read`](Self::read), but `f` also gets what is durable of the account
    /// and says whether its answer holds there too; such an answer is sent at once
    /// instead of after the account's pending writes. Hot checks (a session, a
    /// recipient) use it so that they never queue behind someone's group commit.
    async fn read_now<T: Send + 'static>(
        &self,
        account: AccountId,
        f: impl Fn(&crate::domain::AccountState, &Policy, crate::time::Timestamp, Durable) -> (T, bool)
            + Send
            + Sync
            + 'static,
    ) -> Result<T, EngineError> {
        let f: ReadNowFn = Arc::new(move |state, policy, now, durable| {
            let (out, ok) = f(state, policy, now, durable);
            (Box::new(out), ok)
        });
        let out = self
            .ask(account, |reply| Request::ReadNow {
                f: f.clone(),
                reply,
            })
            .await?;
        // unwrap: the function above boxes a `T`, and nothing else answers this read.
        Ok(*out.downcast::<T>().unwrap())
    }

    /// Whether `account` was opened (and its opening is durable). Answers without
    /// waiting for the account's pending writes once the opening is durable, since
    /// an account never closes its `opened` flag.
    pub async fn account_exists(&self, account: AccountId) -> Result<bool, EngineError> {
        self.read_now(account, |state, _, _, durable| {
            (state.opened, durable.opened)
        })
        .await
    }

    /// The account as its owner sees it (only durable state).
    pub async fn view(&self, account: AccountId) -> Result<AccountView, EngineError> {
        self.read(account, |state, _, now| {
            if state.opened {
                Ok(AccountView::of(state, now))
            } else {
                Err(EngineError::Rejected(
                    crate::domain::Rejection::AccountNotFound,
                ))
            }
        })
        .await?
    }

    /// The live session `n` of `account` if `token_hash` matches it. Fails with
    /// `Rejected(UnknownOperation)` for an unknown, revoked or expired session.
    pub async fn authenticate(
        &self,
        account: AccountId,
        n: u64,
        token_hash: [u8; 32],
    ) -> Result<crate::domain::state::Session, EngineError> {
        // A live session whose creation is durable (its number was minted by a
        // durable record) is answered at once; anything else waits for the
        // account's pending writes, as every other read.
        self.read_now(account, move |state, _, now, durable| {
            let session = state.session(n, &token_hash, now).cloned();
            let at_once = session.is_some() && n < durable.next_op;
            let answer = session.ok_or(EngineError::Rejected(
                crate::domain::Rejection::UnknownOperation,
            ));
            (answer, at_once)
        })
        .await?
    }

    /// A page of `account`'s transaction history, newest first: rows with keys
    /// before `cursor`, of `kind` only when given, at most `limit`. Returns the rows
    /// and the cursor of the next page (`None` at the end). Reads the store directly;
    /// every row belongs to a durable record.
    pub async fn history(
        &self,
        account: AccountId,
        cursor: Option<String>,
        limit: usize,
        kind: Option<crate::ids::OpKind>,
    ) -> Result<(Vec<crate::domain::history::TxRecord>, Option<String>), EngineError> {
        use crate::domain::history::TxRecord;
        // A filtered page scans at most this many rows, so one request stays bounded;
        // the cursor then continues where the scan stopped.
        const SCAN_MAX: usize = 2000;
        let limit = limit.clamp(1, 200);
        let mut items = Vec::new();
        let mut cursor = cursor;
        let mut scanned = 0;
        loop {
            let page = self
                .shared
                .store
                .history(
                    account,
                    cursor.as_deref(),
                    limit.min(SCAN_MAX - scanned).max(1),
                )
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            let exhausted = page.is_empty();
            for row in page {
                scanned += 1;
                cursor = Some(row.key.clone());
                let record = TxRecord::decode(&row.payload)
                    .map_err(|e| EngineError::Unavailable(format!("corrupt history row: {e}")))?;
                if kind.is_none_or(|k| k == record.kind) {
                    items.push(record);
                    if items.len() == limit {
                        return Ok((items, cursor));
                    }
                }
            }
            if exhausted {
                return Ok((items, None));
            }
            if scanned >= SCAN_MAX {
                return Ok((items, cursor));
            }
        }
    }

    /// A copy of the account's whole durable state (tests and recovery checks).
    pub async fn state(
        &self,
        account: AccountId,
    ) -> Result<crate::domain::AccountState, EngineError> {
        self.read(account, |state, _, _| state.clone()).await
    }

    /// One operation (deposit, withdrawal, outgoing transfer) if still remembered.
    pub async fn operation(&self, id: OpId) -> Result<Option<Outcome>, EngineError> {
        self.read(id.account, move |state, _, _| {
            crate::domain::view::op_view(state, id.n)
        })
        .await
    }

    /// Subscribes to `account`'s notifications: the retained ones after `after`
    /// (`None`: none, live only), then everything published.
    pub async fn subscribe(
        &self,
        account: AccountId,
        after: Option<u64>,
    ) -> Result<Subscription, EngineError> {
        self.ask(account, |reply| Request::Subscribe { after, reply })
            .await
    }

    /// Alerts and status changes of every account, for operators.
    pub fn subscribe_admin(&self) -> broadcast::Receiver<AdminNotice> {
        self.shared.hub.subscribe_admin()
    }

    /// Activates every stored account so that transfers left in flight by a crash
    /// are driven to completion or reversal. Returns how many were in flight.
    pub async fn recover_in_flight(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        self.for_each_account(
            |engine, id| async move {
                engine
                    .read(id, |state, _, _| state.open_transfers().count())
                    .await
            },
            |n| total += n,
        )
        .await?;
        Ok(total)
    }

    /// The ledger audit over every stored account. Exact at rest; while money
    /// moves, a transfer may be seen on neither or both sides.
    pub async fn audit(&self) -> Result<Ledger, EngineError> {
        let mut shares: Vec<AuditShare> = Vec::new();
        self.for_each_account(
            |engine, id| async move { engine.read(id, |state, _, _| AuditShare::of(state)).await },
            |share| shares.push(share),
        )
        .await?;
        Ok(audit(&shares))
    }

    async fn for_each_account<T, F, Fut>(
        &self,
        ask: F,
        mut sink: impl FnMut(T),
    ) -> Result<(), EngineError>
    where
        F: Fn(Engine, AccountId) -> Fut,
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        const PAGE: usize = 1000;
        let mut after = None;
        loop {
            let page = self
                .shared
                .store
                .list_accounts(after, PAGE)
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            let Some(last) = page.last().copied() else {
                break;
            };
            let mut results = futures::stream::iter(page.iter().map(|id| ask(self.clone(), *id)))
                .buffer_unordered(64);
            while let Some(r) = results.next().await {
                match r {
                    Ok(t) => sink(t),
                    // An id listed but never opened (a crash between the two writes).
                    Err(EngineError::Rejected(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if page.len() < PAGE {
                break;
            }
            after = Some(last);
        }
        Ok(())
    }

    /// Live account actors.
    pub fn active_actors(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Accounts with an entry in the directory.
    pub fn directory_len(&self) -> usize {
        self.shared.directory.len()
    }

    /// Accounts with at least one live notification channel.
    pub fn subscribed_accounts(&self) -> usize {
        self.shared.hub.subscribed_accounts()
    }

    /// Group-commit counters.
    pub fn journal_stats(&self) -> &Arc<WriterStats> {
        self.shared.writer.stats()
    }

    /// Records waiting for the journal writer.
    pub fn journal_queued(&self) -> usize {
        self.shared.writer.queued()
    }

    /// The generation of `account`'s live actor, if one is live (tests use it to
    /// prove a single activation).
    pub fn actor_generation(&self, account: AccountId) -> Option<u64> {
        self.shared.directory.generation_of(account)
    }

    /// Asks every live actor to snapshot and stop once idle of in-flight work, and
    /// waits (up to `timeout`) until the journal queue is empty and no actor lives.
    pub async fn passivate_all(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            for id in self.shared.directory.accounts() {
                let handle = self.shared.directory.handle(&self.shared, id);
                handle.passivate();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.active_actors() == 0 && self.journal_queued() == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
        }
    }
}

impl crate::runtime::directory::Handle {
    fn passivate(&self) {
        self.addr().do_send(Passivate);
    }
}
