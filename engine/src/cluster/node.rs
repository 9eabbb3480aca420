//! The lease driver of one node in cluster mode: a thread of its own that runs
//! [`Leases::tick`] every `renew_every` and turns what changed into shard
//! lifecycle messages for the executors (`Host`, `Unhost`, `Release`).
//!
//! On its own thread (and its own Redis connection) because a renewal must not
//! wait behind batches or a busy executor: a late renewal is a lost lease.
//!
//! - acquired → `Host`: the executor recovers the shard (checkpoint + log tail)
//!   and serves it; its appends carry the lease's epoch ([`super::FencedShardLog`]).
//! - lost, or no longer trusted locally (Redis unreachable past the lease's
//!   trusted time) → `Unhost`: dropped at once, waiting clients get a retryable
//!   `Unavailable`.
//! - to release (a node joined) → `Release`: the executor refuses new commands
//!   for it, lets its batches finish, checkpoints it and drops it; then the
//!   lease is released (advancing the epoch), so the new owner takes it at its
//!   next tick instead of after the lease time.
//!
//! Leaving ([`Control::Leave`], the server's SIGTERM path) hands every shard
//! over that way, then removes the node's registration. When the engine is
//! dropped without leaving, the leases and the registration are given up as
//! they are (the log is the truth; the next owner recovers from it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Leases;
use crate::codec::ShardId;
use crate::runtime::executor::{Msg, Peers};
use crate::runtime::Shared;

/// What the engine asks of the driver.
pub(crate) enum Control {
    /// Hand every shard over, leave the membership, answer, stop.
    Leave(oneshot::Sender<()>),
}

struct Driver {
    leases: Arc<Leases>,
    shared: Arc<Shared>,
    peers: Peers,
    /// Shards the executors were told to host (and not told to drop).
    hosted: parking_lot::Mutex<BTreeSet<ShardId>>,
    /// Shards being handed over.
    releasing: parking_lot::Mutex<BTreeSet<ShardId>>,
}

/// Starts the driver thread; the returned receiver fires after its first round
/// (so the engine starts with its first shards already recovering).
pub(crate) fn spawn(
    leases: Arc<Leases>,
    shared: Arc<Shared>,
    peers: Peers,
    control: mpsc::UnboundedReceiver<Control>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (first_tx, first_rx) = oneshot::channel();
    let driver = Arc::new(Driver {
        leases,
        shared,
        peers,
        hosted: parking_lot::Mutex::new(BTreeSet::new()),
        releasing: parking_lot::Mutex::new(BTreeSet::new()),
    });
    std::thread::Builder::new()
        .name("okpay-leases".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the lease driver could not start");
                    return;
                }
            };
            runtime.block_on(driver.run(control, first_tx));
        })?;
    Ok(first_rx)
}

impl Driver {
    async fn run(
        self: Arc<Self>,
        mut control: mpsc::UnboundedReceiver<Control>,
        first: oneshot::Sender<()>,
    ) {
        let mut first = Some(first);
        let mut every = tokio::time::interval(self.leases.config().renew_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                c = control.recv() => {
                    match c {
                        Some(Control::Leave(reply)) => {
                            self.leave().await;
                            let _ = reply.send(());
                        }
                        // Every engine handle is gone: the executors are stopping,
                        // nothing can be drained any more.
                        None => {
                            if let Err(e) = self.leases.leave().await {
                                tracing::warn!(error = %e, "leaving the cluster failed");
                            }
                        }
                    }
                    return;
                }
                _ = every.tick() => {
                    self.round().await;
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    }

    /// One tick of the lease protocol, and the messages it implies.
    async fn round(self: &Arc<Self>) {
        match self.leases.tick().await {
            Ok(tick) => {
                for shard in tick.lost {
                    tracing::warn!(%shard, node = %self.leases.node(), "shard lease lost");
                    self.unhost(shard);
                }
                for (shard, epoch) in tick.acquired {
                    tracing::info!(%shard, epoch, node = %self.leases.node(), "shard lease taken");
                    self.host(shard);
                }
                for shard in tick.to_release {
                    if self.releasing.lock().insert(shard) {
                        let me = self.clone();
                        tokio::spawn(async move { me.release(shard).await });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "lease tick failed"),
        }
        // A lease no longer trusted (renewals failing past its trusted time, or
        // stepped down after a refused append) is not served: its state may be
        // behind another owner's.
        let hosted: Vec<ShardId> = self.hosted.lock().iter().copied().collect();
        for shard in hosted {
            if self.leases.epoch(shard).is_none() && !self.releasing.lock().contains(&shard) {
                self.leases.forget(shard);
                self.unhost(shard);
            }
        }
    }

    fn send(&self, shard: ShardId, msg: Msg) {
        let e = self.shared.executor_of_shard(shard);
        // An error only means the executors stopped (the engine is going away).
        let _ = self.peers[e].send(msg);
    }

    fn host(&self, shard: ShardId) {
        self.hosted.lock().insert(shard);
        self.send(shard, Msg::Host { shard });
    }

    fn unhost(&self, shard: ShardId) {
        self.hosted.lock().remove(&shard);
        self.send(shard, Msg::Unhost { shard });
    }

    /// Drains, checkpoints and drops `shard`, then releases its lease. A drain
    /// that takes longer than the lease time is cut short (the shard is
    /// dropped as it is; the next owner recovers from the log).
    async fn release(self: Arc<Self>, shard: ShardId) {
        let (tx, rx) = oneshot::channel();
        self.send(shard, Msg::Release { shard, reply: tx });
        let drained = matches!(
            tokio::time::timeout(self.leases.config().ttl, rx).await,
            Ok(Ok(true))
        );
        if !drained {
            tracing::warn!(%shard, "shard not drained in time: dropped as it is");
            self.send(shard, Msg::Unhost { shard });
        }
        match self.leases.release(shard).await {
            Ok(_) => {
                tracing::info!(%shard, node = %self.leases.node(), drained, "shard handed over")
            }
            Err(e) => tracing::warn!(%shard, error = %e, "releasing a lease failed (it expires)"),
        }
        self.hosted.lock().remove(&shard);
        self.releasing.lock().remove(&shard);
    }

    /// Hands every hosted shard over (concurrently), then leaves the membership.
    async fn leave(self: &Arc<Self>) {
        let hosted: Vec<ShardId> = self.hosted.lock().iter().copied().collect();
        let releases = hosted
            .into_iter()
            .filter(|s| self.releasing.lock().insert(*s))
            .map(|s| self.clone().release(s));
        futures::future::join_all(releases).await;
        // Releases already under way finish on their own; wait for them briefly.
        let deadline = tokio::time::Instant::now() + self.leases.config().ttl;
        while !self.releasing.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Err(e) = self.leases.leave().await {
            tracing::warn!(error = %e, "leaving the cluster failed");
        }
        tracing::info!(node = %self.leases.node(), "left the cluster");
    }
}
