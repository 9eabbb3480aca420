//! `Engine`: the one entry point. Commands in, outcomes out, subscriptions to
//! notifications. The gateway, the benches and the tests all use it; nothing
//! outside the engine sees an executor, a shard or the log.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cluster::remote::{Remote, NOT_SERVED};
use crate::codec::remote::{Answer, Request};
use crate::codec::ShardLayout;
use crate::domain::audit::{audit, Ledger};
use crate::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use crate::domain::state::AccountStatus;
use crate::domain::view::{AccountView, AuditShare, Outcome};
use crate::domain::{Command, PayoutDestination};
use crate::ids::{AccountId, IdempotencyKey, OpId};
use crate::money::Amount;
use crate::policy::Policy;
use crate::runtime::executor::{AuditPart, Durable, Executor, Msg, ReadFn, ReadNowFn, Reply};
use crate::runtime::hub::{AdminNotice, Hub};
use crate::runtime::{EngineError, RuntimeConfig, RuntimeStats, Shared};
use crate::store::Store;
use crate::time::{Clock, SystemClock};

pub use crate::runtime::executor::Subscription;

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

struct Inner {
    shared: Arc<Shared>,
    /// One bounded inbox per executor. Dropping the last engine handle closes
    /// them, and the executors stop.
    inboxes: Vec<mpsc::Sender<Msg>>,
    /// Cluster mode: the lease driver (`cluster::node`). Dropping it makes the
    /// driver give the node's leases up.
    leases: Option<mpsc::UnboundedSender<crate::cluster::node::Control>>,
    /// Cluster mode: dropping it stops the node's remote tasks.
    _remote_stop: Option<oneshot::Sender<()>>,
}

/// A handle to a running engine. Cloning is cheap; all clones drive one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.shared().store.backend_name())
            .field("shards", &self.shared().layout.shards)
            .field("resident_accounts", &self.active_actors())
            .finish()
    }
}

impl Engine {
    /// Starts the engine over `store`: reads (or stores) the shard layout, then
    /// starts one executor thread per configured executor, each recovering its
    /// shards in the background (requests for a shard wait until it is ready).
    pub async fn start(config: EngineConfig, store: Arc<dyn Store>) -> Result<Engine, EngineError> {
        let unavailable = |e: crate::store::StoreError| EngineError::Unavailable(e.to_string());
        let mut log = store.shard_log().await.map_err(unavailable)?;
        let proposed = ShardLayout::new(config.runtime.shards.max(1))
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let layout = log.init_layout(proposed).await.map_err(unavailable)?;
        crate::runtime::migrate::journals_to_shard_logs(&*store, &*log, layout)
            .await
            .map_err(unavailable)?;
        let mut runtime = config.runtime;
        runtime.executors = runtime.executors.clamp(1, usize::from(layout.shards));
        // Cluster mode: appends and checkpoints carry this node's lease epochs.
        let mut leases = None;
        let mut remote = None;
        if let Some(cluster) = &runtime.cluster {
            let redis = store.as_redis().ok_or_else(|| {
                EngineError::Unavailable("cluster mode (--node-id) needs a Redis store".into())
            })?;
            let held = Arc::new(crate::cluster::Leases::new(
                redis.sibling(),
                cluster.node.clone(),
                layout,
                cluster.leases,
            ));
            log = Arc::new(crate::cluster::FencedShardLog::new(
                redis.redis_shard_log(),
                held.clone(),
            ));
            remote = Some(crate::cluster::remote::Remote::new(
                redis.sibling(),
                held.clone(),
                layout,
                runtime.executors,
            ));
            leases = Some(held);
        }
        let n = runtime.executors;
        let shared = Arc::new(Shared {
            policy: config.policy,
            store,
            log,
            layout,
            hub: Hub::default(),
            clock: config.clock,
            stats: Arc::new(RuntimeStats::default()),
            config: runtime,
            leases,
            remote: remote.as_ref().map(|(r, _)| r.clone()),
            watermarks: crate::runtime::saga::Watermarks::new(layout.shards),
        });
        let mut inboxes = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        let mut saga_senders = Vec::with_capacity(n);
        let mut saga_receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(shared.config.inbox_capacity.max(1));
            inboxes.push(tx);
            receivers.push(rx);
            let (tx, rx) = mpsc::unbounded_channel();
            saga_senders.push(tx);
            saga_receivers.push(rx);
        }
        let peers = Arc::new(saga_senders);
        for (index, (inbox, saga_inbox)) in receivers.into_iter().zip(saga_receivers).enumerate() {
            let (shared, peers) = (shared.clone(), peers.clone());
            std::thread::Builder::new()
                .name(format!("okpay-exec-{index}"))
                .spawn(move || {
                    let blocking = shared.config.blocking_threads.max(1);
                    let executor = Executor::new(index, shared, inbox, saga_inbox, peers);
                    // actix's own runtime, with the blocking pool bounded (see
                    // `RuntimeConfig::blocking_threads`).
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .max_blocking_threads(blocking)
                        .build();
                    match runtime {
                        Ok(rt) => {
                            actix_rt::System::with_tokio_rt(move || rt).block_on(executor.run())
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "an executor's runtime failed to start")
                        }
                    }
                })
                .map_err(|e| EngineError::Unavailable(format!("starting an executor: {e}")))?;
        }
        let mut remote_stop = None;
        if let Some((remote, outbound)) = remote {
            let (tx, rx) = oneshot::channel();
            remote.start(peers.clone(), outbound, rx).map_err(|e| {
                EngineError::Unavailable(format!("starting the remote thread: {e}"))
            })?;
            remote_stop = Some(tx);
        }
        let mut control = None;
        if let Some(held) = shared.leases.clone() {
            let (tx, rx) = mpsc::unbounded_channel();
            let first = crate::cluster::node::spawn(held, shared.clone(), peers.clone(), rx)
                .map_err(|e| EngineError::Unavailable(format!("starting the lease driver: {e}")))?;
            // The first round registers the node and takes its first shards;
            // not waiting for it forever (Redis may be slow to answer).
            let wait = shared
                .config
                .cluster
                .as_ref()
                .map_or(Duration::from_secs(3), |c| c.leases.ttl);
            let _ = tokio::time::timeout(wait, first).await;
            control = Some(tx);
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                shared,
                inboxes,
                leases: control,
                _remote_stop: remote_stop,
            }),
        })
    }

    /// Cluster mode: hands every shard this node hosts over to the other nodes
    /// (each drained, checkpointed and released) and leaves the membership; the
    /// engine serves nothing afterwards. Called by the server on SIGTERM. Does
    /// nothing outside cluster mode.
    pub async fn leave(&self) {
        let Some(control) = &self.inner.leases else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        if control
            .send(crate::cluster::node::Control::Leave(tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Cluster mode: this node's id; `None` for a single node.
    pub fn node_id(&self) -> Option<&crate::cluster::NodeId> {
        self.shared().config.cluster.as_ref().map(|c| &c.node)
    }

    /// Cluster mode: the shards this node holds a lease for, with their epochs.
    pub fn held_shards(&self) -> Vec<(crate::codec::ShardId, u64)> {
        self.shared()
            .leases
            .as_ref()
            .map_or_else(Vec::new, |l| l.held())
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub fn policy(&self) -> &Policy {
        &self.shared().policy
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared().store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared().clock
    }

    /// The shard layout stored with the data.
    pub fn layout(&self) -> ShardLayout {
        self.shared().layout
    }

    /// What this node knows of every source shard's watermark (see
    /// `runtime::saga`), as a function of a credit's source account: a credit
    /// whose debit lies below it is settled and may be forgotten. A snapshot,
    /// so two states pruned with it are pruned alike (tests compare a live
    /// state with one rebuilt from the store this way).
    pub fn settled_below(&self) -> impl Fn(AccountId) -> u64 {
        let shared = self.shared();
        let layout = shared.layout;
        let known: Vec<u64> = layout.all().map(|s| shared.watermarks.get(s)).collect();
        move |source| known[usize::from(layout.shard_of(source).0)]
    }

    /// Sends `msg` to executor `e` unless its inbox is full.
    fn send_to(&self, e: usize, msg: Msg) -> Result<(), EngineError> {
        self.inner.inboxes[e]
            .try_send(msg)
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("okpay_mailbox_full_total").increment(1);
                    EngineError::Overloaded
                }
                mpsc::error::TrySendError::Closed(_) => {
                    EngineError::Unavailable("the engine has stopped".into())
                }
            })
    }

    /// Sends a message for `account` and waits for its answer.
    async fn ask<T>(
        &self,
        account: AccountId,
        make: impl FnOnce(Reply<T>) -> Msg,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.send_to(self.shared().executor_of(account), make(tx))?;
        rx.await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("the engine has stopped".into())))
    }

    /// Runs any command on `account`.
    pub async fn execute(&self, account: AccountId, cmd: Command) -> Result<Outcome, EngineError> {
        let timer = std::time::Instant::now();
        let result = match self.cluster_route(account) {
            Route::Single => {
                self.ask(account, |reply| Msg::Execute {
                    account,
                    cmd,
                    reply,
                })
                .await
            }
            // Boxed: the remote call's future is large, and inline it made every
            // local command's future that large too (copied on every move).
            Route::Remote(remote) => {
                Box::pin(remote_execute(remote, self.layout(), account, cmd)).await
            }
            Route::Local(remote) => {
                let again = cmd.clone();
                let local = self
                    .ask(account, |reply| Msg::Execute {
                        account,
                        cmd,
                        reply,
                    })
                    .await;
                if not_served(&local) {
                    Box::pin(remote_execute(remote, self.layout(), account, again)).await
                } else {
                    local
                }
            }
        };
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
        destination: PayoutDestination,
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

    /// Runs `f` on `account`'s state and returns what `f` made of it, once
    /// everything `f` may have seen is durable. The one way to query an account:
    /// callers copy out only what they need, never the whole state.
    pub async fn read<T: Send + 'static>(
        &self,
        account: AccountId,
        f: impl Fn(&crate::domain::AccountState, &Policy, crate::time::Timestamp) -> T
            + Send
            + Sync
            + 'static,
    ) -> Result<T, EngineError> {
        let f = Arc::new(f);
        if let Route::Remote(remote) = self.cluster_route(account) {
            let state = remote_state(remote, self.layout(), account).await?;
            return Ok(f(&state, self.policy(), self.clock().now()));
        }
        let g = f.clone();
        let read: ReadFn = Arc::new(move |state, policy, now| Box::new(g(state, policy, now)));
        let out = self
            .ask(account, |reply| Msg::Read {
                account,
                f: read,
                reply,
            })
            .await;
        if let (true, Some(remote)) = (not_served(&out), self.shared().remote.as_ref()) {
            let state = remote_state(remote, self.layout(), account).await?;
            return Ok(f(&state, self.policy(), self.clock().now()));
        }
        // unwrap: the function above boxes a `T`, and nothing else answers this read.
        Ok(*out?.downcast::<T>().unwrap())
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
        let f = Arc::new(f);
        // Remotely: the state once everything applied is durable, so the
        // durable marks are the state's own.
        let remotely = |state: crate::domain::AccountState| {
            let durable = Durable {
                opened: state.opened,
                next_op: state.next_op,
            };
            f(&state, self.policy(), self.clock().now(), durable).0
        };
        if let Route::Remote(remote) = self.cluster_route(account) {
            return Ok(remotely(
                remote_state(remote, self.layout(), account).await?,
            ));
        }
        let g = f.clone();
        let read: ReadNowFn = Arc::new(move |state, policy, now, durable| {
            let (out, ok) = g(state, policy, now, durable);
            (Box::new(out), ok)
        });
        let out = self
            .ask(account, |reply| Msg::ReadNow {
                account,
                f: read,
                reply,
            })
            .await;
        if let (true, Some(remote)) = (not_served(&out), self.shared().remote.as_ref()) {
            return Ok(remotely(
                remote_state(remote, self.layout(), account).await?,
            ));
        }
        // unwrap: the function above boxes a `T`, and nothing else answers this read.
        Ok(*out?.downcast::<T>().unwrap())
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
    /// and the cursor of the next page (`None` at the end). Reads the store once the
    /// rows of every operation applied to the account so far are written (rows
    /// follow their durable records, off the reply path); every row belongs to a
    /// durable record.
    pub async fn history(
        &self,
        account: AccountId,
        cursor: Option<String>,
        limit: usize,
        kind: Option<crate::ids::OpKind>,
    ) -> Result<(Vec<crate::domain::history::TxRecord>, Option<String>), EngineError> {
        use crate::domain::history::TxRecord;
        // A filtered page scans at most this many rows, so one request stays bounded;
        // the cursor then continues where the scan stopped. The store bounds its
        // own reading too (`Store::history_page`): a page may come back short
        // with a cursor whatever the filter.
        const SCAN_MAX: usize = 2000;
        let limit = limit.clamp(1, 200);
        let shard = self.layout().shard_of(account);
        let local = match self.cluster_route(account) {
            Route::Remote(_) => Err(EngineError::Unavailable(NOT_SERVED.into())),
            Route::Single | Route::Local(_) => {
                self.ask(account, |reply| Msg::Rows { account, reply })
                    .await
            }
        };
        match (not_served(&local), self.shared().remote.as_ref()) {
            (true, Some(remote)) => {
                remote.call(shard, Request::Rows { account }).await?;
            }
            _ => local?,
        }
        let mut items = Vec::new();
        let mut cursor = cursor;
        let mut scanned = 0;
        // Rows past retention are not read, swept yet or not.
        let cutoff_ms = self.policy().history_cutoff_ms(self.clock().now());
        loop {
            let (page, resume) = self
                .shared()
                .store
                .history_page(
                    self.shared().layout.shard_of(account),
                    account,
                    Some(cutoff_ms),
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
            if let Some(resume) = resume {
                // The store read what one page may cost; older rows come with
                // the next page, from where it stopped.
                return Ok((items, Some(resume)));
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
        let local = match self.cluster_route(account) {
            Route::Remote(_) => Err(EngineError::Unavailable(NOT_SERVED.into())),
            Route::Single | Route::Local(_) => {
                self.ask(account, |reply| Msg::Subscribe {
                    account,
                    after,
                    reply,
                })
                .await
            }
        };
        let (true, Some(remote)) = (not_served(&local), self.shared().remote.as_ref()) else {
            return local;
        };
        // Served elsewhere: the live feed is relayed to this node's hub; the
        // backlog comes from the owner's durable state (or, when the owner does
        // not answer, from the store's checkpoint and log tail).
        let receiver = self.shared().hub.subscribe(account);
        let state = match remote_state(remote, self.layout(), account).await {
            Ok(state) => state,
            Err(_) => {
                return crate::runtime::relay::subscribe_elsewhere(self.shared(), account, after)
                    .await
            }
        };
        if !state.opened {
            return Err(EngineError::Rejected(crate::Rejection::AccountNotFound));
        }
        let published = state.notification_seq;
        let after = after.unwrap_or(published);
        let backlog: Vec<crate::domain::notification::Notification> = state
            .notifications_after(after)
            .filter(|n| n.seq <= published)
            .cloned()
            .collect();
        let first = backlog.first().map_or(published + 1, |n| n.seq);
        let gap = after < published && first > after + 1;
        Ok(Subscription {
            backlog,
            receiver,
            gap,
        })
    }

    /// Relays notifications between this engine and the other nodes sharing
    /// `coord` (see [`crate::runtime::relay`]): what this node's shards publish
    /// goes out, what the others publish reaches this node's subscribers.
    /// Nothing happens when `coord` is this process's own, or on a second call.
    /// Must run inside a tokio runtime (the relay's two tasks run there).
    pub fn relay_notifications(&self, coord: Arc<dyn crate::coord::Coord>) {
        if !coord.is_shared() {
            return;
        }
        let (tx, rx) = mpsc::channel(crate::runtime::relay::QUEUE);
        if !self.shared().hub.set_relay(tx) {
            return;
        }
        let bus = coord.subscribe();
        tokio::spawn(crate::runtime::relay::outbound(rx, coord));
        tokio::spawn(crate::runtime::relay::inbound(
            bus,
            Arc::new(crate::runtime::relay::HubRef(Arc::downgrade(self.shared()))),
        ));
    }

    /// Alerts and status changes of every account, for operators.
    pub fn subscribe_admin(&self) -> broadcast::Receiver<AdminNotice> {
        self.shared().hub.subscribe_admin()
    }

    /// Waits until every shard is recovered (its log replayed, its transfers in
    /// flight driven on again), and returns how many transfers were found in
    /// flight by recoveries so far.
    pub async fn recover_in_flight(&self) -> Result<usize, EngineError> {
        for e in 0..self.inner.inboxes.len() {
            let (tx, rx) = oneshot::channel();
            self.inner.inboxes[e]
                .send(Msg::Ready { reply: tx })
                .await
                .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))?;
            rx.await
                .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))?;
        }
        Ok(self.stats().recovered_in_flight.load(Ordering::Relaxed) as usize)
    }

    /// The ledger audit over every account: those in memory as they are, the
    /// others from their checkpoints. Exact at rest; while money moves, a transfer
    /// may be seen on neither or both sides.
    pub async fn audit(&self) -> Result<Ledger, EngineError> {
        let shared = self.shared();
        let mut shares: Vec<AuditShare> = Vec::new();
        for shard in shared.layout.all() {
            let (resident_shares, resident) = self.audit_part(shard).await?;
            shares.extend(resident_shares);
            let stored = shared
                .log
                .accounts(shard)
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))?;
            let resident: rustc_hash::FxHashSet<AccountId> = resident.into_iter().collect();
            for id in stored {
                if id == crate::codec::checkpoint::SHARD_ENTRY || resident.contains(&id) {
                    continue;
                }
                let loaded = crate::runtime::recovery::load_account(shared.log.clone(), shard, id)
                    .await
                    .map_err(|e| EngineError::Unavailable(e.to_string()))?;
                if let Some((_, state)) = loaded.filter(|(_, s)| s.opened) {
                    shares.push(AuditShare::of(&state));
                }
            }
        }
        Ok(audit(&shares))
    }

    /// Every opened account of `shard`: those checkpointed and those in memory.
    /// (An account opened since its shard's last checkpoint is in memory: recovery
    /// loads every account the log tail names.)
    pub async fn accounts_in_shard(
        &self,
        shard: crate::codec::ShardId,
    ) -> Result<Vec<AccountId>, EngineError> {
        let shared = self.shared();
        let (resident, _) = self.audit_part(shard).await?;
        let mut ids: Vec<AccountId> = shared
            .log
            .accounts(shard)
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        ids.retain(|id| *id != crate::codec::checkpoint::SHARD_ENTRY);
        ids.extend(resident.iter().map(|share| share.account));
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The audit shares of `shard`'s accounts in memory (on whichever node
    /// serves it), and which accounts they cover.
    async fn audit_part(&self, shard: crate::codec::ShardId) -> Result<AuditPart, EngineError> {
        let remote = self.shared().remote.as_ref();
        let local = if remote.is_some_and(|r| !r.hosts(shard)) {
            Err(EngineError::Unavailable(NOT_SERVED.into()))
        } else {
            let (tx, rx) = oneshot::channel::<Result<AuditPart, EngineError>>();
            self.inner.inboxes[self.shared().executor_of_shard(shard)]
                .send(Msg::Audit { shard, reply: tx })
                .await
                .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))?;
            rx.await
                .map_err(|_| EngineError::Unavailable("the engine has stopped".into()))?
        };
        match (not_served(&local), remote) {
            (true, Some(remote)) => match remote.call(shard, Request::Audit { shard }).await? {
                Answer::Audit(shares, ids) => Ok((shares, ids)),
                other => Err(wrong_answer(&other)),
            },
            _ => local,
        }
    }

    /// Where a request for `account` goes.
    fn cluster_route(&self, account: AccountId) -> Route<'_> {
        match self.shared().remote.as_ref() {
            None => Route::Single,
            Some(remote) if remote.hosts(self.layout().shard_of(account)) => Route::Local(remote),
            Some(remote) => Route::Remote(remote),
        }
    }

    /// Cluster mode: requests this node sent to other nodes, answered for
    /// them, saga entries sent, and requests that timed out.
    pub fn remote_stats(&self) -> Option<&crate::cluster::remote::RemoteStats> {
        self.shared().remote.as_ref().map(|r| &r.stats)
    }

    /// Every shard's log head and checkpoint position, read from the store
    /// (what `GET /v1/admin/cluster` reports as lag), all shards at once.
    pub async fn shard_heads(
        &self,
    ) -> Result<Vec<(crate::codec::ShardId, crate::store::shard_log::ShardHead)>, EngineError> {
        let shared = self.shared();
        let reads = shared.layout.all().map(|shard| {
            let log = shared.log.clone();
            async move { (shard, log.head(shard).await) }
        });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .map(|(shard, head)| {
                head.map(|h| (shard, h))
                    .map_err(|e| EngineError::Unavailable(e.to_string()))
            })
            .collect()
    }

    /// Accounts held in memory.
    pub fn active_actors(&self) -> usize {
        self.stats().resident.load(Ordering::Relaxed)
    }

    /// Accounts with at least one live notification channel.
    pub fn subscribed_accounts(&self) -> usize {
        self.shared().hub.subscribed_accounts()
    }

    /// Batching counters.
    pub fn stats(&self) -> &Arc<RuntimeStats> {
        &self.shared().stats
    }

    /// Records decided and not yet durable.
    pub fn journal_queued(&self) -> usize {
        self.stats().queued.load(Ordering::Relaxed)
    }

    /// Checkpoints every shard and lets every idle account leave memory; waits
    /// (up to `timeout`) until nothing is pending and no account is resident.
    pub async fn passivate_all(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            for e in 0..self.inner.inboxes.len() {
                let _ = self.send_to(e, Msg::Passivate);
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

/// Where a request goes (see [`Engine::cluster_route`]).
enum Route<'a> {
    /// One node: every shard is local.
    Single,
    /// Cluster mode, the shard is served here (a request that finds it gone
    /// meanwhile is sent to the owner).
    Local(&'a Arc<Remote>),
    /// Cluster mode, another node serves the shard.
    Remote(&'a Arc<Remote>),
}

/// Whether a local answer says the shard is not served here (any more).
fn not_served<T>(result: &Result<T, EngineError>) -> bool {
    matches!(result, Err(EngineError::Unavailable(e)) if e == NOT_SERVED)
}

fn wrong_answer(answer: &Answer) -> EngineError {
    EngineError::Unavailable(format!("a remote node answered {answer:?}"))
}

async fn remote_execute(
    remote: &Remote,
    layout: ShardLayout,
    account: AccountId,
    cmd: Command,
) -> Result<Outcome, EngineError> {
    match remote
        .call(layout.shard_of(account), Request::Execute { account, cmd })
        .await?
    {
        Answer::Outcome(outcome) => Ok(outcome),
        other => Err(wrong_answer(&other)),
    }
}

/// The account's state from the node serving it, once everything applied to
/// it is durable.
async fn remote_state(
    remote: &Remote,
    layout: ShardLayout,
    account: AccountId,
) -> Result<crate::domain::AccountState, EngineError> {
    match remote
        .call(layout.shard_of(account), Request::State { account })
        .await?
    {
        Answer::State(bytes) => crate::codec::state::decode_state(&bytes)
            .map_err(|e| EngineError::Unavailable(format!("a remote state: {e}"))),
        other => Err(wrong_answer(&other)),
    }
}
