//! The outside payment world: the card processor that accepts or declines
//! deposits, and the payout processor that pays withdrawals out to bank cards and
//! wallets. Both are traits; the dev implementations (used only with `--dev`, see
//! `crate::integrations`) stand in for the real networks: card `4000000000000002` is declined, payouts settle after the
//! configured delay, and destinations starting with `fail` fail (releasing the
//! held funds).
//!
//! A withdrawal waiting for its payout is also recorded in the store's
//! `payout_pending` index, so a restarted server resumes every payout that was
//! in progress instead of leaving funds held forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use okpay_engine::domain::command::DepositMethod;
use okpay_engine::domain::destination::{PayoutDestination, SealedDestination};
use okpay_engine::ids::AccountId;
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::money::Amount;
use okpay_engine::{Engine, EngineError, Outcome, Rejection};

use crate::crypto::{Field, Owner, PiiCipher};
use crate::integrations::reports::{ChargeReport, DevReport, PayoutReport};
use crate::routes::extract::money;

/// A card number that passed the Luhn check (digits only, 12–19 of them).
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(String);

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a card number, even in debug output.
        write!(f, "CardNumber({})", self.masked())
    }
}

impl CardNumber {
    /// Accepts digits with optional spaces or dashes; checks length and Luhn.
    pub fn parse(text: &str) -> Option<CardNumber> {
        let digits: String = text.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        luhn(&digits).then_some(CardNumber(digits))
    }

    /// `**** 1234`: all that is ever stored or shown.
    pub fn masked(&self) -> String {
        format!("**** {}", &self.0[self.0.len() - 4..])
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

/// The Luhn checksum (ISO/IEC 7812).
pub fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// What the processor made of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStatus {
    /// The money is ours: credit the deposit.
    Succeeded,
    /// Accepted, settling later (bank transfers): a signed callback reports it.
    Pending,
    /// Declined, with the processor's reason.
    Declined(String),
}

/// A charge as the processor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The processor's id of the charge (refunds name it).
    pub id: String,
    pub status: ChargeStatus,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One charge request. `reference` is the deposit's `<account>:<Idempotency-Key>`
/// and the processor's idempotency key: charging again with it returns the first
/// charge instead of charging twice.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub reference: String,
    pub card: CardNumber,
    pub amount: Amount,
    pub method: DepositMethod,
}

/// Charges cards for deposits. `Err` is a failure to learn the outcome (network,
/// 5xx): the charge may or may not have happened, and asking again with the same
/// reference finds out.
pub trait CardProcessor: Send + Sync + 'static {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<Result<Charge, String>>;
    /// Gives a charge's money back (the engine refused the deposit).
    fn refund(&self, charge_id: String, reference: String) -> BoxFuture<Result<(), String>>;
    /// The processor's own report of the charges of `date` (UTC), for the
    /// reconciliation (`integrations::reports`).
    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<ChargeReport>, String>>;
}

/// The dev card processor: accepts every card but the test decline card, and
/// remembers what it did for its settlement report.
pub struct DevCards {
    engine: Engine,
    report: Arc<DevReport<ChargeReport>>,
}

impl DevCards {
    pub fn new(engine: Engine) -> DevCards {
        DevCards {
            engine,
            report: Arc::default(),
        }
    }
}

/// The test card the dev processor declines.
pub const DECLINED_TEST_CARD: &str = "4000000000000002";

impl CardProcessor for DevCards {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<Result<Charge, String>> {
        let declined = request.card.digits() == DECLINED_TEST_CARD;
        let id = format!("dev_{}", request.reference);
        let c = request.amount.currency();
        // A repeated reference is the first charge, as at a real processor.
        self.report.record(
            crate::clock::now(&self.engine).date_naive(),
            &request.reference,
            ChargeReport {
                reference: request.reference.clone(),
                charge_id: Some(id.clone()),
                amount: money(request.amount.value(), c),
                currency: c.code().into(),
                status: if declined { "failed" } else { "succeeded" }.into(),
            },
        );
        Box::pin(async move {
            Ok(Charge {
                id,
                status: if declined {
                    ChargeStatus::Declined("The test card is always declined.".into())
                } else {
                    ChargeStatus::Succeeded
                },
            })
        })
    }

    fn refund(&self, _charge_id: String, reference: String) -> BoxFuture<Result<(), String>> {
        self.report
            .update(&reference, |r| r.status = "refunded".into());
        Box::pin(async { Ok(()) })
    }

    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<ChargeReport>, String>> {
        let items = self.report.of(date);
        Box::pin(async move { Ok(items) })
    }
}

/// Pays withdrawals out; reports back through the engine (settle or fail).
pub trait PayoutProcessor: Send + Sync + 'static {
    /// Starts paying out withdrawal `id` to `destination`.
    fn submit(&self, id: OpId, destination: String);
    /// The processor's own report of the payouts of `date` (UTC), for the
    /// reconciliation (`integrations::reports`).
    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<PayoutReport>, String>>;
}

/// The store index of withdrawals waiting for their payout.
pub const PAYOUT_PENDING_INDEX: &str = "payout_pending";

/// The dev payout processor: settles after `delay`; fails destinations starting
/// with `fail`; remembers what it paid for its settlement report.
pub struct DevPayouts {
    engine: Engine,
    delay: Duration,
    report: Arc<DevReport<PayoutReport>>,
}

impl DevPayouts {
    pub fn new(engine: Engine, delay: Duration) -> Arc<Self> {
        Arc::new(DevPayouts {
            engine,
            delay,
            report: Arc::default(),
        })
    }
}

/// `clear` (a validated destination) as the engine keeps it for `account`:
/// sealed, masked, and fingerprinted with the key.
pub fn seal_destination(cipher: &PiiCipher, account: AccountId, clear: &str) -> PayoutDestination {
    let owner = Owner::Account(account);
    let field = Field::WithdrawalDestination;
    PayoutDestination::Sealed(Box::new(SealedDestination {
        masked: okpay_engine::domain::destination::mask(clear),
        fingerprint: cipher.fingerprint(field, owner, clear.as_bytes()),
        sealed: cipher.seal(field, owner, clear.as_bytes()),
    }))
}

/// The clear destination of a withdrawal of `account`, for the payout request
/// only; `None` when it does not decrypt (another key, another account).
pub fn open_destination(
    cipher: &PiiCipher,
    account: AccountId,
    destination: &PayoutDestination,
) -> Option<String> {
    match destination {
        PayoutDestination::Clear(text) => Some(text.clone()),
        PayoutDestination::Sealed(s) => cipher.open_text(
            Field::WithdrawalDestination,
            Owner::Account(account),
            &s.sealed,
        ),
    }
}

/// Resubmits to `payouts` every payout left pending by an earlier run. The index
/// holds masked destinations only: each one is opened from the engine's record.
pub async fn resume_payouts(
    engine: &Engine,
    cipher: &PiiCipher,
    payouts: &dyn PayoutProcessor,
) -> Result<usize, EngineError> {
    let store = engine.store().clone();
    let mut after: Option<String> = None;
    let mut n = 0;
    loop {
        let page = store
            .scan_index(PAYOUT_PENDING_INDEX, after.as_deref(), 500)
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        for (key, _masked) in &page {
            let Ok(id) = OpId::parse(key, OpKind::Withdrawal) else {
                continue;
            };
            let destination = match engine.operation(id).await? {
                Some(Outcome::Withdrawal(view)) => view.destination,
                // Nothing left to pay (finished past the retention).
                _ => {
                    let _ = store.delete_index(PAYOUT_PENDING_INDEX, key).await;
                    continue;
                }
            };
            match open_destination(cipher, id.account, &destination) {
                Some(clear) => {
                    payouts.submit(id, clear);
                    n += 1;
                }
                None => {
                    tracing::error!(withdrawal = %key, "the destination does not decrypt with the configured key; payout left pending")
                }
            }
        }
        if page.len() < 500 {
            return Ok(n);
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}

impl PayoutProcessor for DevPayouts {
    fn submit(&self, id: OpId, destination: String) {
        let engine = self.engine.clone();
        let delay = self.delay;
        let report = self.report.clone();
        tokio::spawn(async move {
            let key = id.display(OpKind::Withdrawal);
            if let Ok(Some(Outcome::Withdrawal(view))) = engine.operation(id).await {
                let c = view.amount.currency();
                report.record(
                    crate::clock::now(&engine).date_naive(),
                    &key,
                    PayoutReport {
                        id: key.clone(),
                        amount: money(view.payout, c),
                        currency: c.code().into(),
                        status: "processing".into(),
                    },
                );
            }
            tokio::time::sleep(delay).await;
            let fail = destination.starts_with("fail");
            report.update(&key, |p| {
                p.status = if fail { "failed" } else { "completed" }.into();
            });
            // Keep trying through storage outages: the payout happened (or failed)
            // and the account must learn it.
            for attempt in 0u32..600 {
                let result = if fail {
                    engine
                        .fail_withdrawal(id, "The payout was refused by the destination.".into())
                        .await
                } else {
                    engine.settle_withdrawal(id).await
                };
                match result {
                    Ok(_)
                    | Err(EngineError::Rejected(
                        Rejection::OperationClosed | Rejection::UnknownOperation,
                    )) => break,
                    Err(e) => {
                        tracing::warn!(withdrawal = %id.display(OpKind::Withdrawal), attempt, error = %e, "payout report failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            if let Err(e) = engine
                .store()
                .delete_index(PAYOUT_PENDING_INDEX, &key)
                .await
            {
                tracing::warn!(withdrawal = %key, error = %e, "could not clear pending payout");
            }
        });
    }

    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<PayoutReport>, String>> {
        let items = self.report.of(date);
        Box::pin(async move { Ok(items) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_valid_numbers_and_refuses_typos() {
        assert!(CardNumber::parse("4111 1111 1111 1111").is_some());
        assert!(CardNumber::parse("4000000000000002").is_some());
        assert!(CardNumber::parse("4111111111111112").is_none());
        assert!(CardNumber::parse("4111-1111-1111-111a").is_none());
        assert!(CardNumber::parse("42").is_none());
        assert_eq!(
            CardNumber::parse("4111111111111111").unwrap().masked(),
            "**** 1111"
        );
        assert_eq!(
            format!("{:?}", CardNumber::parse("4111111111111111").unwrap()),
            "CardNumber(**** 1111)"
        );
    }
}
