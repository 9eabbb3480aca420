//! Property tests of the money invariants through the real actors: random
//! operation sequences over several accounts run concurrently, with duplicated
//! requests (same idempotency key racing), storage outages in the middle, and
//! retries of everything that got a retryable error. Then:
//! - every key has one outcome: all successful answers for a key name one operation;
//! - balances equal what the acknowledged operations alone imply (applied exactly
//!   once, nothing lost, nothing negative), and the ledger audit balances;
//! - every account rebuilt from the store (snapshot + journal) equals the live one.
//!
//! Transfers go to opened accounts (settled in their debit's batch when both
//! are on one executor, else through the saga's messages), to a closed one
//! (refused: reversed) and to a ghost never opened (refused after a load).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use okpay_engine::domain::command::{DepositMethod, Profile, WithdrawalMethod};
use okpay_engine::domain::state::AccountStatus;
use okpay_engine::ids::{AccountId, IdempotencyKey, OpId};
use okpay_engine::money::{Amount, Currency};
use okpay_engine::runtime::rebuild;
use okpay_engine::store::memory::MemoryStore;
use okpay_engine::{Engine, EngineConfig, EngineError, Outcome, RuntimeConfig};
use proptest::prelude::*;
use rust_decimal::Decimal;

#[derive(Clone, Debug)]
enum Op {
    Deposit {
        acct: usize,
        cents: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        cents: i64,
    },
    Withdraw {
        acct: usize,
        cents: i64,
        settle: bool,
    },
    /// Sends the request of an earlier op again, with the same key.
    Duplicate {
        of: usize,
    },
}

#[derive(Clone, Debug)]
struct Case {
    accounts: usize,
    ops: Vec<Op>,
    chunk: usize,
    outage_at_chunk: Option<usize>,
}

fn op_strategy(accounts: usize) -> impl Strategy<Value = Op> {
    // Index `accounts` is a ghost: never opened, so transfers to it reverse.
    prop_oneof![
        3 => (0..accounts, 1i64..20_000).prop_map(|(acct, cents)| Op::Deposit { acct, cents }),
        6 => (0..accounts, 0..=accounts, 1i64..8_000).prop_map(|(from, to, cents)| Op::Transfer { from, to, cents }),
        2 => (0..accounts, 200i64..6_000, any::<bool>()).prop_map(|(acct, cents, settle)| Op::Withdraw { acct, cents, settle }),
        2 => (0usize..1000).prop_map(|of| Op::Duplicate { of }),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (2usize..6).prop_flat_map(|accounts| {
        (
            proptest::collection::vec(op_strategy(accounts), 10..70),
            1usize..12,
            proptest::option::of(0usize..6),
        )
            .prop_map(move |(ops, chunk, outage_at_chunk)| Case {
                accounts,
                ops,
                chunk,
                outage_at_chunk,
            })
    })
}

struct World {
    engine: Engine,
    store: Arc<MemoryStore>,
    rt: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = rt
            .block_on(Engine::start(
                EngineConfig {
                    runtime: RuntimeConfig {
                        // Frequent checkpoints so rebuilds mix checkpoint and log.
                        checkpoint_every: 5,
                        ..RuntimeConfig::default()
                    },
                    ..EngineConfig::default()
                },
                store.clone(),
            ))
            .unwrap();
        World { engine, store, rt }
    })
}

fn cny(cents: i64) -> Amount {
    Amount::new(Decimal::new(cents, 2), Currency::new("CNY", 2).unwrap()).unwrap()
}

/// A concrete request: the op with its key, resolved against the case's accounts.
#[derive(Clone, Debug)]
struct Req {
    key: IdempotencyKey,
    op: Op,
}

async fn send(engine: &Engine, ids: &[AccountId], req: &Req) -> Result<Outcome, EngineError> {
    let key = req.key.clone();
    match req.op {
        Op::Deposit { acct, cents } => {
            engine
                .deposit(ids[acct], key, cny(cents), DepositMethod::BankCard)
                .await
        }
        Op::Transfer { from, to, cents } => {
            engine
                .transfer(ids[from], key, ids[to], cny(cents), None, false)
                .await
        }
        Op::Withdraw { acct, cents, .. } => {
            engine
                .withdraw(
                    ids[acct],
                    key,
                    cny(cents),
                    WithdrawalMethod::BankCard,
                    "6222".into(),
                    false,
                )
                .await
        }
        Op::Duplicate { .. } => unreachable!("resolved before sending"),
    }
}

/// Settles or fails an acknowledged withdrawal, retrying through outages.
async fn finish_withdrawal(engine: &Engine, id: OpId, settle: bool) {
    loop {
        let r = if settle {
            engine.settle_withdrawal(id).await
        } else {
            engine.fail_withdrawal(id, "payout failed".into()).await
        };
        match r {
            Ok(_) => return,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(2)).await,
            Err(e) => panic!("settling {id:?}: {e:?}"),
        }
    }
}

fn op_id(outcome: &Outcome) -> Option<OpId> {
    match outcome {
        Outcome::Deposit(d) => Some(d.id),
        Outcome::Withdrawal(w) => Some(w.id),
        Outcome::Transfer(t) => Some(t.id),
        _ => None,
    }
}

async fn run_case(case: Case, case_no: u64) -> Result<(), TestCaseError> {
    let w = world();
    let engine = &w.engine;
    let mut ids: Vec<AccountId> = (0..=case.accounts).map(|_| AccountId::random()).collect();
    ids.sort();
    for id in &ids[..case.accounts] {
        engine
            .open_account_with_id(*id, Profile::default())
            .await
            .unwrap();
        engine.set_kyc_tier(*id, 1).await.unwrap();
    }
    // With three accounts or more the last is closed: every credit to it is
    // refused in memory (the transfer reversed, often in the debit's own
    // record), every deposit into it and transfer out of it rejected.
    if case.accounts >= 3 {
        engine
            .set_status(
                ids[case.accounts - 1],
                AccountStatus::Closed,
                "closed by the test".into(),
            )
            .await
            .unwrap();
    }
    // Resolve duplicates to the request they repeat.
    let mut reqs: Vec<Req> = Vec::new();
    for (i, op) in case.ops.iter().enumerate() {
        match op {
            Op::Duplicate { of } if !reqs.is_empty() => {
                let r = reqs[of % reqs.len()].clone();
                reqs.push(r);
            }
            Op::Duplicate { .. } => {}
            other => reqs.push(Req {
                key: IdempotencyKey::parse(&format!("c{case_no}-{i}")).unwrap(),
                op: other.clone(),
            }),
        }
    }
    // key -> every answer it got.
    let mut answers: HashMap<String, Vec<Result<Outcome, EngineError>>> = HashMap::new();
    for (chunk_no, chunk) in reqs.chunks(case.chunk).enumerate() {
        let outage = case.outage_at_chunk == Some(chunk_no);
        if outage {
            w.store.set_failing(true);
        }
        let results = futures::future::join_all(chunk.iter().map(|r| send(engine, &ids, r))).await;
        if outage {
            w.store.set_failing(false);
        }
        for (req, res) in chunk.iter().zip(results) {
            answers
                .entry(req.key.as_str().to_owned())
                .or_default()
                .push(res);
        }
    }
    // Retry every request whose every answer was retryable, until it has an outcome.
    let unique: HashMap<String, Req> = reqs
        .iter()
        .map(|r| (r.key.as_str().to_owned(), r.clone()))
        .collect();
    for (key, req) in &unique {
        let settled = answers[key]
            .iter()
            .any(|a| !matches!(a, Err(e) if e.is_retryable()));
        if settled {
            continue;
        }
        for _ in 0..1000 {
            let r = send(engine, &ids, req).await;
            let retry = matches!(&r, Err(e) if e.is_retryable());
            answers.get_mut(key).unwrap().push(r);
            if !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // One outcome per key, and the model of balances from acknowledged operations.
    let mut available: Vec<i64> = vec![0; ids.len()];
    for (key, req) in &unique {
        let final_answers: Vec<&Result<Outcome, EngineError>> = answers[key]
            .iter()
            .filter(|a| !matches!(a, Err(e) if e.is_retryable()))
            .collect();
        prop_assert!(!final_answers.is_empty(), "{key} never settled");
        // Every success names the same operation. Rejections are not remembered (a
        // rejected request did nothing, so its key may succeed later, e.g. after a
        // deposit), but nothing may succeed twice.
        let successes: Vec<Option<OpId>> = final_answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(op_id))
            .collect();
        prop_assert!(
            successes.windows(2).all(|w| w[0] == w[1]),
            "{} named two operations: {:?}",
            key,
            successes
        );
        let acked = final_answers.iter().find_map(|a| a.as_ref().ok());
        let Some(outcome) = acked else { continue };
        match req.op {
            Op::Deposit { acct, cents } => available[acct] += cents,
            Op::Transfer { from, to, cents } => {
                available[from] -= cents;
                available[to] += cents;
            }
            Op::Withdraw {
                acct,
                cents,
                settle,
            } => {
                // unwrap: a withdrawal outcome always has an id.
                finish_withdrawal(engine, op_id(outcome).unwrap(), settle).await;
                if settle {
                    available[acct] -= cents;
                }
            }
            Op::Duplicate { .. } => unreachable!(),
        }
    }
    for (i, id) in ids[..case.accounts].iter().enumerate() {
        let view = engine.view(*id).await.unwrap();
        let (avail, held) = view
            .balances
            .iter()
            .find(|b| b.currency.code() == "CNY")
            .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.available, b.held));
        prop_assert!(avail >= Decimal::ZERO);
        prop_assert_eq!(
            held,
            Decimal::ZERO,
            "every withdrawal was settled or failed"
        );
        prop_assert_eq!(
            avail,
            Decimal::new(available[i], 2),
            "account {} balance",
            i
        );
        // Recovery: the shard's checkpoint + log rebuild the live state exactly.
        let live = engine.state(*id).await.unwrap();
        let mut rebuilt = rebuild(&*w.store, *id).await.unwrap().unwrap();
        let mut live = live;
        let now = engine.clock().now();
        live.compact(now, engine.policy());
        rebuilt.compact(now, engine.policy());
        // Forgetting settled credits, like compaction, happens to live states
        // between checkpoints: compare both forgetting alike.
        let settled = engine.settled_below();
        live.prune_settled(&settled);
        rebuilt.prune_settled(&settled);
        prop_assert_eq!(rebuilt, live, "rebuilt state of account {}", i);
    }
    let ledger = engine.audit().await.unwrap();
    prop_assert!(ledger.balanced(), "{:?}", ledger);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn money_is_conserved_and_applied_exactly_once_through_the_actors(case in case_strategy()) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        world().rt.block_on(run_case(case, n))?;
    }
}
