//! The load phase, the same for the OKPay API and the Redis Lua baseline: a
//! [`Workload`] says what each transfer is (uniform sender, uniform or Zipf
//! recipient, 0.01–5.00, a unique idempotency key) and [`drive`] sends them to a
//! [`TransferTarget`] until the deadline, in one of two shapes:
//!
//! - **open loop** (`--rate N`): transfer `i` is intended at `start + i/N`; a
//!   dispatcher sleeps until then, takes one of `connections` permits (the cap on
//!   outstanding requests) and spawns the request. Latency runs from the intended
//!   instant, so time spent waiting for a permit because the server fell behind
//!   is counted, not omitted;
//! - **closed loop** (`--rate max`): `connections` workers each send, wait for
//!   the answer, and send again; the throughput is the server's capacity at that
//!   concurrency, and latency runs from each actual send.
//!
//! Everything is bounded: no request is intended at or after the deadline, each
//! request has a timeout, and nothing runs past `deadline + drain`: requests
//! still in flight then are abandoned (counted as `ABANDONED`), scheduled ones
//! never sent for want of a free connection are counted as `NOT_SENT`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::schedule::{Rate, Schedule};
use crate::stats::{Recorder, SampledTransfer};
use crate::zipf::Zipf;

/// One transfer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSpec {
    /// Index of the sending account in the run's population.
    pub from: usize,
    /// Index of the recipient (never `from`).
    pub to: usize,
    pub amount_minor: i64,
    /// Unique per transfer of the run (and across runs: it carries a run tag).
    pub key: String,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Acknowledged (HTTP 201, or the script's "transferred").
    Acked { id: String, fee_minor: i64 },
    /// Anything else, labelled for the report.
    Failed { code: String, detail: String },
}

/// Something that moves money: the OKPay API, or the Redis Lua baseline.
pub trait TransferTarget: Send + Sync + 'static {
    fn transfer(&self, spec: &TransferSpec) -> impl Future<Output = TransferOutcome> + Send;
}

/// The shape of the traffic.
#[derive(Debug, Clone)]
pub struct Workload {
    accounts: usize,
    recipients: Zipf,
    /// Prefix of every idempotency key of this run.
    run_tag: String,
}

/// The smallest and largest transfer, in minor units (0.01–5.00): far below the
/// step-up threshold (1,000.00) and tier 0's single limit, so no transfer needs
/// a second factor and a funded account lasts the run.
pub const AMOUNT_MINOR_MIN: i64 = 1;
pub const AMOUNT_MINOR_MAX: i64 = 500;

/// How often a recipient draw that hit the sender is redrawn before falling back
/// to the next account (only matters for tiny populations with a hot sender).
const REDRAWS: usize = 8;

impl Workload {
    /// `accounts >= 2`; recipients drawn with Zipf exponent `zipf` (0: uniform).
    pub fn new(accounts: usize, zipf: f64, run_tag: String) -> anyhow::Result<Workload> {
        anyhow::ensure!(accounts >= 2, "a transfer needs at least two accounts");
        Ok(Workload {
            accounts,
            recipients: Zipf::new(accounts, zipf)?,
            run_tag,
        })
    }

    pub fn accounts(&self) -> usize {
        self.accounts
    }

    /// The `seq`-th transfer, drawn from `rng`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R, seq: u64) -> TransferSpec {
        let from = rng.gen_range(0..self.accounts);
        let mut to = self.recipients.sample(rng);
        for _ in 0..REDRAWS {
            if to != from {
                break;
            }
            to = self.recipients.sample(rng);
        }
        if to == from {
            to = (from + 1) % self.accounts;
        }
        TransferSpec {
            from,
            to,
            amount_minor: rng.gen_range(AMOUNT_MINOR_MIN..=AMOUNT_MINOR_MAX),
            key: format!("{}-{seq}", self.run_tag),
        }
    }
}

/// The knobs of the load phase.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    pub rate: Rate,
    pub duration: Duration,
    /// Closed loop: workers. Open loop: the cap on outstanding requests.
    pub connections: usize,
    pub request_timeout: Duration,
    /// How long in-flight requests may finish after the deadline.
    pub drain: Duration,
    pub seed: u64,
}

/// Sends one transfer and records how it went. `intended` is when it should have
/// started (open loop) or did start (closed loop).
async fn one<T: TransferTarget>(
    target: &T,
    recorder: &Recorder,
    spec: TransferSpec,
    intended: Instant,
    timeout: Duration,
) {
    let outcome = tokio::time::timeout(timeout, target.transfer(&spec)).await;
    let done = Instant::now();
    match outcome {
        Ok(TransferOutcome::Acked { id, fee_minor }) => recorder.acked(
            intended,
            done,
            fee_minor,
            SampledTransfer {
                from: spec.from,
                to: spec.to,
                amount_minor: spec.amount_minor,
                key: spec.key,
                id,
            },
        ),
        Ok(TransferOutcome::Failed { code, detail }) => recorder.failed(done, &code, &detail),
        Err(_) => recorder.failed(done, "TIMEOUT", "no answer within the request timeout"),
    }
}

/// Runs the load phase; returns when every request finished or was abandoned.
/// `recorder.start()` is the load's start.
pub async fn drive<T: TransferTarget>(
    target: Arc<T>,
    workload: Arc<Workload>,
    shape: LoadShape,
    recorder: Arc<Recorder>,
) {
    let start = recorder.start();
    let deadline = start + shape.duration;
    // Nothing runs past this: not the dispatcher, not the requests in flight.
    let hard_stop = deadline + shape.drain;
    let connections = shape.connections.max(1);
    let mut tasks = JoinSet::new();
    match shape.rate {
        Rate::PerSecond(rate) => {
            let schedule = Schedule::new(start, rate, shape.duration);
            let permits = Arc::new(Semaphore::new(connections));
            let mut rng = StdRng::seed_from_u64(shape.seed);
            for i in 0..schedule.len() {
                let intended = schedule.intended(i);
                tokio::time::sleep_until(intended.into()).await;
                // Waiting here when all permits are out is the harness queueing
                // behind a slow server; the wait is part of the request's latency.
                // A server so slow that the backlog outlives the drain gets the
                // rest of the schedule counted as never sent.
                let permit =
                    tokio::time::timeout_at(hard_stop.into(), permits.clone().acquire_owned())
                        .await;
                let Ok(Ok(permit)) = permit else {
                    let now = Instant::now();
                    for _ in i..schedule.len() {
                        recorder.failed(
                            now,
                            "NOT_SENT",
                            "intended before the deadline, but no connection was free before the drain ran out",
                        );
                    }
                    break;
                };
                let spec = workload.next(&mut rng, i);
                let (target, recorder) = (target.clone(), recorder.clone());
                tasks.spawn(async move {
                    one(&*target, &recorder, spec, intended, shape.request_timeout).await;
                    drop(permit);
                });
                // Reap finished tasks so the set holds at most `connections`.
                while tasks.try_join_next().is_some() {}
            }
        }
        Rate::Max => {
            let seq = Arc::new(AtomicU64::new(0));
            for worker in 0..connections {
                let (target, recorder, workload, seq) = (
                    target.clone(),
                    recorder.clone(),
                    workload.clone(),
                    seq.clone(),
                );
                let mut rng = StdRng::seed_from_u64(shape.seed.wrapping_add(worker as u64));
                tasks.spawn(async move {
                    // Bounded by the deadline; the count bound is a backstop
                    // against a target that answers instantly.
                    for _ in 0..u32::MAX {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        let spec = workload.next(&mut rng, seq.fetch_add(1, Ordering::Relaxed));
                        one(&*target, &recorder, spec, now, shape.request_timeout).await;
                    }
                });
            }
        }
    }
    let drained = tokio::time::timeout_at(hard_stop.into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = tasks.len();
        tasks.abort_all();
        let now = Instant::now();
        for _ in 0..left {
            recorder.failed(
                now,
                "ABANDONED",
                "still in flight when the drain time ran out",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A target that acks everything after `delay`, remembering what it saw.
    struct Fake {
        delay: Duration,
        seen: Mutex<Vec<(TransferSpec, Instant)>>,
    }

    impl TransferTarget for Fake {
        async fn transfer(&self, spec: &TransferSpec) -> TransferOutcome {
            self.seen
                .lock()
                .unwrap()
                .push((spec.clone(), Instant::now()));
            tokio::time::sleep(self.delay).await;
            TransferOutcome::Acked {
                id: format!("tx_{}", spec.key),
                fee_minor: 0,
            }
        }
    }

    fn fake(delay_ms: u64) -> Arc<Fake> {
        Arc::new(Fake {
            delay: Duration::from_millis(delay_ms),
            seen: Mutex::new(Vec::new()),
        })
    }

    #[test]
    fn transfers_never_go_to_the_sender_and_stay_small() {
        let w = Workload::new(2, 3.0, "run".into()).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        for seq in 0..1000 {
            let t = w.next(&mut rng, seq);
            assert_ne!(t.from, t.to);
            assert!((AMOUNT_MINOR_MIN..=AMOUNT_MINOR_MAX).contains(&t.amount_minor));
            assert_eq!(t.key, format!("run-{seq}"));
        }
        assert!(Workload::new(1, 0.0, "x".into()).is_err());
    }

    #[tokio::test]
    async fn open_loop_sends_on_schedule_with_unique_keys() {
        let target = fake(1);
        let w = Arc::new(Workload::new(10, 1.0, "r".into()).unwrap());
        let start = Instant::now();
        let recorder = Arc::new(Recorder::new(start, 1000, 1));
        let shape = LoadShape {
            rate: Rate::PerSecond(200.0),
            duration: Duration::from_millis(500),
            connections: 8,
            request_timeout: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            seed: 3,
        };
        drive(target.clone(), w, shape, recorder.clone()).await;
        let s = recorder.finish();
        assert_eq!(s.acked, 100);
        let seen = target.seen.lock().unwrap();
        let mut keys: Vec<_> = seen.iter().map(|(t, _)| t.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 100);
        // The last one was sent around +495 ms, not all at once.
        let last = seen.iter().map(|(_, at)| *at).max().unwrap() - start;
        assert!(last >= Duration::from_millis(490), "{last:?}");
    }

    #[tokio::test]
    async fn a_stall_shows_in_open_loop_latency() {
        // One permit, 50 ms per request, 100/s intended: the server keeps up with
        // only 20/s, so later requests wait longer and longer for the permit, and
        // their latency from the intended time says so (≫ 50 ms).
        let target = fake(50);
        let w = Arc::new(Workload::new(4, 0.0, "s".into()).unwrap());
        let recorder = Arc::new(Recorder::new(Instant::now(), 10, 1));
        let shape = LoadShape {
            rate: Rate::PerSecond(100.0),
            duration: Duration::from_millis(300),
            connections: 1,
            request_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            seed: 1,
        };
        drive(target, w, shape, recorder.clone()).await;
        let s = recorder.finish();
        assert_eq!(s.acked, 30);
        let max_ms = s.latency.max() as f64 / 1000.0;
        assert!(max_ms > 1000.0, "max {max_ms} ms");
    }

    #[tokio::test]
    async fn an_open_loop_backlog_never_outlives_the_drain() {
        // One connection, 300 ms per request, 50/s for 200 ms: 10 scheduled, only
        // the first fits before deadline + drain (400 ms).
        let target = fake(300);
        let w = Arc::new(Workload::new(4, 0.0, "b".into()).unwrap());
        let recorder = Arc::new(Recorder::new(Instant::now(), 10, 1));
        let shape = LoadShape {
            rate: Rate::PerSecond(50.0),
            duration: Duration::from_millis(200),
            connections: 1,
            request_timeout: Duration::from_secs(5),
            drain: Duration::from_millis(200),
            seed: 1,
        };
        let t0 = Instant::now();
        drive(target, w, shape, recorder.clone()).await;
        assert!(
            t0.elapsed() < Duration::from_millis(600),
            "{:?}",
            t0.elapsed()
        );
        let s = recorder.finish();
        let abandoned = s.errors.get("ABANDONED").copied().unwrap_or(0);
        assert_eq!(
            s.acked + s.errors["NOT_SENT"] + abandoned,
            10,
            "{:?}",
            s.errors
        );
        assert_eq!(s.acked, 1);
    }

    #[tokio::test]
    async fn closed_loop_stops_at_the_deadline_and_abandons_after_the_drain() {
        let target = fake(400);
        let w = Arc::new(Workload::new(4, 0.0, "c".into()).unwrap());
        let recorder = Arc::new(Recorder::new(Instant::now(), 10, 1));
        let shape = LoadShape {
            rate: Rate::Max,
            duration: Duration::from_millis(100),
            connections: 3,
            request_timeout: Duration::from_secs(5),
            drain: Duration::from_millis(100),
            seed: 1,
        };
        let t0 = Instant::now();
        drive(target, w, shape, recorder.clone()).await;
        assert!(t0.elapsed() < Duration::from_millis(350));
        let s = recorder.finish();
        assert_eq!(s.acked, 0);
        assert_eq!(s.errors["ABANDONED"], 3);
    }
}
