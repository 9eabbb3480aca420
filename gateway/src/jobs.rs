//! Background jobs that every node starts but the deployment needs once: the
//! re-submission of pending payouts at start-up, the start-up pass of notices
//! over every account (`integrations::notices`), and the hourly trim of the
//! webhook log, the seen callback ids and the session index
//! (`integrations::retention`).
//!
//! Each is safe to run twice (a payout goes out under its withdrawal's id as the
//! processor's `Idempotency-Key`, so a second submission pays nothing more; a
//! notice is queued under an id made of its account and seq; a trim deletes
//! what is already gone), but N nodes doing the same sweep is N
//! times the store reads and processor calls for nothing. So a job runs only on
//! the node that [`claim`]s its period: a shared lock (`okpay:lock:{job:<name>}`,
//! `SET NX PX`) that is never released, so it also says "done for this period"
//! and frees itself when the period ends (a node that died mid-job leaves it to
//! the next period). On the memory and embedded stores the lock is in-process
//! and one node is the deployment: every claim succeeds once per period there
//! too. A coordination error lets the job run (it is idempotent; skipping it
//! could leave payouts unsent until the next start).
//!
//! Not here, because they already hold across nodes: the outbox's sends (each
//! message under its own lock, `integrations::deliveries`), deposits charged
//! but not credited (each intent driven under the deposit's charge lock,
//! `integrations::charges::recover`), transfers left in flight (driven by each
//! shard's owner when it recovers the shard), and webhook events and notices
//! raised live from accounts' notifications (only on the owner of the
//! account's shard).

use std::sync::Arc;
use std::time::Duration;

use okpay_engine::coord::Coord;

/// Whether this node runs job `name` for the `period` starting now: `true` for
/// the first node to ask in the period (see the module doc).
pub async fn claim(coord: &Arc<dyn Coord>, name: &str, period: Duration) -> bool {
    let lock = format!("job:{name}");
    match coord.try_lock(&lock, rand::random(), period).await {
        Ok(taken) => {
            if !taken {
                tracing::debug!(job = name, "another node runs this job for this period");
            }
            taken
        }
        Err(e) => {
            tracing::warn!(job = name, error = %e, "job lock unavailable; running the job here");
            true
        }
    }
}
