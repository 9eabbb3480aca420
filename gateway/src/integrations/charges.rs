//! Deposits across the card processor and the engine, without money stuck
//! between the two.
//!
//! Before a card is charged, the deposit's intent (account, key, amount, method,
//! the card number encrypted with the PII key) is written to the store's
//! `deposit_intents` index, keyed by the charge reference `<account>:<key>`, which
//! is also the processor's idempotency key. [`drive`] then charges (a repeated
//! charge with the same reference returns the first one), credits the deposit in
//! the engine (idempotent by the key) and removes the intent. If the engine
//! refuses the deposit (a balance cap), the charge is refunded through the
//! processor before the intent goes. A pending charge (bank transfers) keeps its
//! intent until the processor's signed callback reports it.
//!
//! So a crash anywhere leaves at most an intent behind, and every intent is driven
//! again: by the client's retry with the same key, by the callback, and by the
//! sweep at start-up ([`recover`]), which is how a crash between the charge and
//! the credit ends with the money credited once.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use okpay_engine::coord::Coord;
use okpay_engine::domain::command::DepositMethod;
use okpay_engine::domain::view::DepositView;
use okpay_engine::ids::{AccountId, IdempotencyKey};
use okpay_engine::{Command, Engine, EngineError, Outcome, Rejection};
use serde::{Deserialize, Serialize};

use super::deliveries::Deliveries;
use crate::crypto::{Field, Owner, PiiCipher};
use crate::idempotency::ChargeLock;
use crate::payments::{CardNumber, CardProcessor, Charge, ChargeRequest, ChargeStatus};
use crate::routes::extract::money;

/// Deposits charged or being charged, not yet credited, refunded or declined.
pub const INTENT_INDEX: &str = "deposit_intents";

/// A deposit on its way through the processor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub account: String,
    pub key: String,
    pub amount: String,
    pub currency: String,
    /// `bank_card` or `credit_card`.
    pub method: String,
    /// The card number, AES-GCM under the PII key, base64.
    pub card: String,
    /// When the deposit was first asked for (for reconciliation).
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Intent {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.account, self.key)
    }
}

/// How a deposit ended (for now).
#[derive(Debug)]
pub enum Driven {
    Credited(DepositView),
    /// Waiting for the processor's callback.
    Pending(Charge),
    Declined(String),
    /// The engine refused the deposit; the charge was refunded.
    Refunded(Rejection),
}

/// What the processor, the store or the engine did not answer: retry later.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotYet(pub String);

/// The intent of a new deposit.
pub fn intent(
    cipher: &PiiCipher,
    account: AccountId,
    key: &IdempotencyKey,
    amount: okpay_engine::money::Amount,
    method: DepositMethod,
    card: &CardNumber,
    now: chrono::DateTime<chrono::Utc>,
) -> Intent {
    let c = amount.currency();
    Intent {
        account: account.to_string(),
        key: key.as_str().to_owned(),
        amount: crate::routes::extract::money(amount.value(), c),
        currency: c.code().to_owned(),
        method: method_name(method).into(),
        card: STANDARD.encode(cipher.seal(
            Field::DepositCard,
            Owner::Account(account),
            card.digits().as_bytes(),
        )),
        created_at: Some(now),
    }
}

pub fn method_name(m: DepositMethod) -> &'static str {
    match m {
        DepositMethod::BankCard => "bank_card",
        DepositMethod::CreditCard => "credit_card",
    }
}

/// Writes the intent before the charge (a retry finds it there already).
pub async fn record(engine: &Engine, intent: &Intent) -> Result<(), NotYet> {
    let text = serde_json::to_string(intent).map_err(|e| NotYet(e.to_string()))?;
    engine
        .store()
        .claim_index(INTENT_INDEX, &intent.reference(), &text)
        .await
        .map(|_| ())
        .map_err(|e| NotYet(e.to_string()))
}

/// Reads the intent of `reference`.
pub async fn load(engine: &Engine, reference: &str) -> Result<Option<Intent>, NotYet> {
    let text = engine
        .store()
        .get_index(INTENT_INDEX, reference)
        .await
        .map_err(|e| NotYet(e.to_string()))?;
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

async fn forget(engine: &Engine, reference: &str) {
    if let Err(e) = engine.store().delete_index(INTENT_INDEX, reference).await {
        // Harmless: the next sweep drives it again and finds it credited.
        tracing::warn!(error = %e, "could not clear a finished deposit intent");
    }
}

/// Charges (or finds the charge), then credits, refunds or waits. `known` is a
/// charge outcome the processor already reported (its callback): no new request.
pub async fn drive(
    engine: &Engine,
    cards: &Arc<dyn CardProcessor>,
    cipher: &PiiCipher,
    intent: &Intent,
    known: Option<Charge>,
    events: &Deliveries,
) -> Result<Driven, NotYet> {
    let driven = drive_once(engine, cards, cipher, intent, known).await?;
    let reference = intent.reference();
    let (event, data) = match &driven {
        Driven::Credited(v) => {
            let c = v.amount.currency();
            (
                "deposit.completed",
                serde_json::json!({
                    "account": intent.account,
                    "id": v.id.display(okpay_engine::ids::OpKind::Deposit),
                    "reference": reference,
                    "amount": money(v.amount.value(), c),
                    "fee": money(v.fee, c),
                    "net": money(v.net, c),
                    "currency": c.code(),
                }),
            )
        }
        Driven::Pending(_) => (
            "deposit.pending",
            serde_json::json!({"account": intent.account, "reference": reference,
                "amount": intent.amount, "currency": intent.currency}),
        ),
        Driven::Declined(reason) => (
            "deposit.failed",
            serde_json::json!({"account": intent.account, "reference": reference, "reason": reason}),
        ),
        Driven::Refunded(r) => (
            "deposit.refunded",
            serde_json::json!({"account": intent.account, "reference": reference, "reason": r.code()}),
        ),
    };
    events.publish(event, data).await;
    Ok(driven)
}

async fn drive_once(
    engine: &Engine,
    cards: &Arc<dyn CardProcessor>,
    cipher: &PiiCipher,
    intent: &Intent,
    known: Option<Charge>,
) -> Result<Driven, NotYet> {
    let reference = intent.reference();
    let account: AccountId = intent
        .account
        .parse()
        .map_err(|_| NotYet("bad account in intent".into()))?;
    let key = IdempotencyKey::parse(&intent.key).map_err(|_| NotYet("bad key in intent".into()))?;
    let amount = crate::routes::extract::amount(engine.policy(), &intent.amount, &intent.currency)
        .map_err(|e| NotYet(e.detail))?;
    let method = if intent.method == "credit_card" {
        DepositMethod::CreditCard
    } else {
        DepositMethod::BankCard
    };
    let digits = STANDARD
        .decode(&intent.card)
        .ok()
        .and_then(|b| cipher.open_text(Field::DepositCard, Owner::Account(account), &b))
        .and_then(|d| CardNumber::parse(&d))
        .ok_or_else(|| NotYet("the card in the intent does not decrypt".into()))?;
    let charge = match known {
        Some(c) => c,
        None => cards
            .charge(ChargeRequest {
                reference: reference.clone(),
                card: digits.clone(),
                amount,
                method,
            })
            .await
            .map_err(NotYet)?,
    };
    match &charge.status {
        ChargeStatus::Pending => return Ok(Driven::Pending(charge)),
        ChargeStatus::Declined(reason) => {
            forget(engine, &reference).await;
            return Ok(Driven::Declined(reason.clone()));
        }
        ChargeStatus::Succeeded => {}
    }
    let command = Command::Deposit {
        key,
        amount,
        method,
        card: digits.masked(),
    };
    match engine.execute(account, command).await {
        Ok(Outcome::Deposit(view)) => {
            forget(engine, &reference).await;
            Ok(Driven::Credited(view))
        }
        Ok(_) => Err(NotYet("unexpected engine outcome".into())),
        Err(EngineError::Rejected(r)) => {
            // No money stuck between the two: the processor gives it back.
            cards
                .refund(charge.id.clone(), reference.clone())
                .await
                .map_err(|e| NotYet(format!("refund failed: {e}")))?;
            tracing::warn!(account = %account, rejection = ?r, "deposit refused by the engine; charge refunded");
            forget(engine, &reference).await;
            Ok(Driven::Refunded(r))
        }
        Err(e) => Err(NotYet(e.to_string())),
    }
}

/// Drives every intent left by an earlier run (at start-up). Returns how many
/// were credited, refunded or declined.
///
/// Several nodes: an intent may belong to a deposit another node is driving
/// right now (its client's request), or be swept by several nodes starting
/// together; each is driven under the deposit's shared charge lock (waiting as
/// a request would), so no two nodes drive one deposit at once, and one found
/// finished meanwhile is gone from the index. An intent whose lock stays held
/// is left to its holder (and to the next sweep).
pub async fn recover(
    engine: &Engine,
    cards: &Arc<dyn CardProcessor>,
    cipher: &PiiCipher,
    events: &Deliveries,
    coord: &Arc<dyn Coord>,
) -> usize {
    let mut after: Option<String> = None;
    let mut done = 0;
    loop {
        let page = match engine
            .store()
            .scan_index(INTENT_INDEX, after.as_deref(), 200)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "could not read deposit intents");
                return done;
            }
        };
        for (reference, text) in &page {
            let Ok(intent) = serde_json::from_str::<Intent>(text) else {
                tracing::error!(%reference, "unreadable deposit intent left in place");
                continue;
            };
            let (Ok(account), Ok(key)) = (
                intent.account.parse::<AccountId>(),
                IdempotencyKey::parse(&intent.key),
            ) else {
                tracing::error!(%reference, "deposit intent with a bad account or key left in place");
                continue;
            };
            let _across_nodes = match ChargeLock::take(coord, account, &key).await {
                Ok(lock) => lock,
                Err(_) => {
                    tracing::info!(%reference, "deposit intent driven by another node; left to it");
                    continue;
                }
            };
            // Another node may have finished it while this one waited.
            match engine.store().get_index(INTENT_INDEX, reference).await {
                Ok(Some(_)) => {}
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(%reference, error = %e, "deposit intent not recovered yet");
                    continue;
                }
            }
            match drive(engine, cards, cipher, &intent, None, events).await {
                Ok(Driven::Pending(_)) => {}
                Ok(outcome) => {
                    tracing::info!(%reference, ?outcome, "deposit intent recovered");
                    done += 1;
                }
                Err(e) => {
                    tracing::warn!(%reference, error = %e, "deposit intent not recovered yet")
                }
            }
        }
        if page.len() < 200 {
            return done;
        }
        after = page.last().map(|(k, _)| k.clone());
    }
}
