//! The payout adapter: pays withdrawals out through a payout processor's HTTP API.
//!
//! Protocol (documented in the README): `POST {url}/payouts` with the bearer
//! `api_key`, `Idempotency-Key: <wd_ id>` and `{"id", "amount", "currency",
//! "method", "destination"}` (amount = what reaches the destination). The answer
//! `{"status": "processing" | "completed" | "failed", "reason"?}` settles or fails
//! the withdrawal at once, or leaves it processing until the processor's signed
//! callback (`POST /v1/callbacks/payouts`, `routes/callbacks.rs`). A request that
//! fails (network, 5xx, 429) is retried with backoff; the withdrawal stays in the
//! `payout_pending` index until its outcome is known, so a restart resubmits it
//! under the same idempotency key and the processor pays it once.
//! `GET {url}/reports/settlements` is the day's report (`integrations::reports`).

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use okpay_engine::domain::command::WithdrawalMethod;
use okpay_engine::domain::state::WithdrawalStatus;
use okpay_engine::ids::{OpId, OpKind};
use okpay_engine::{Engine, EngineError, Outcome, Rejection};
use serde::Deserialize;

use super::deliveries::Deliveries;
use super::reports::{self, PayoutReport};
use crate::config::ProcessorSettings;
use crate::payments::{BoxFuture, PayoutProcessor, PAYOUT_PENDING_INDEX};
use crate::routes::extract::money;

/// Attempts at submitting one payout before waiting for a restart or an operator.
const SUBMIT_ATTEMPTS: u32 = 12;

/// The processor's answer to a payout request.
#[derive(Debug, Deserialize)]
pub struct PayoutAnswer {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Pays out through the configured processor.
pub struct HttpPayouts {
    engine: Engine,
    events: Arc<Deliveries>,
    client: reqwest::Client,
    settings: ProcessorSettings,
}

impl HttpPayouts {
    pub fn new(
        engine: Engine,
        events: Arc<Deliveries>,
        settings: &ProcessorSettings,
    ) -> anyhow::Result<Arc<HttpPayouts>> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms.unwrap_or(10_000)))
            .build()?;
        Ok(Arc::new(HttpPayouts {
            engine,
            events,
            client,
            settings: settings.clone(),
        }))
    }

    async fn request(&self, id: OpId, destination: &str) -> Result<Option<PayoutAnswer>, String> {
        let view = match self.engine.operation(id).await {
            Ok(Some(Outcome::Withdrawal(v))) => v,
            // Gone (or never there): nothing to pay.
            Ok(_) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let c = view.amount.currency();
        let key = id.display(OpKind::Withdrawal);
        let mut request = self
            .client
            .post(format!(
                "{}/payouts",
                self.settings.url.trim_end_matches('/')
            ))
            .header("Idempotency-Key", &key)
            .json(&serde_json::json!({
                "id": key,
                "amount": money(view.payout, c),
                "currency": c.code(),
                "method": match view.method {
                    WithdrawalMethod::BankCard => "bank_card",
                    WithdrawalMethod::ThirdParty => "third_party",
                },
                "destination": destination,
            }));
        if let Some(k) = &self.settings.api_key {
            request = request.bearer_auth(&k.0);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<PayoutAnswer>()
                .await
                .map(Some)
                .map_err(|e| format!("unreadable answer: {e}"));
        }
        if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 409 {
            // The processor refuses this payout outright: it failed.
            return Ok(Some(PayoutAnswer {
                status: "failed".into(),
                reason: Some(format!(
                    "The payout processor refused the payout ({status})."
                )),
            }));
        }
        Err(format!("payout processor answered {status}"))
    }
}

/// Applies a payout's outcome (`completed` or `failed`) to the withdrawal and
/// clears it from the pending index. Idempotent: a second report of a closed
/// withdrawal changes nothing. Returns whether this call changed the withdrawal.
pub async fn report(
    engine: &Engine,
    events: &Deliveries,
    id: OpId,
    completed: bool,
    reason: Option<String>,
) -> Result<bool, EngineError> {
    // Settling a settled withdrawal is an idempotent success in the engine, so
    // whether this report changed anything is read first (a race with another
    // report is harmless: the engine applies one).
    let processing = matches!(
        engine.operation(id).await?,
        Some(Outcome::Withdrawal(v)) if v.status == WithdrawalStatus::Processing
    );
    if !processing {
        let key = id.display(OpKind::Withdrawal);
        let _ = engine
            .store()
            .delete_index(PAYOUT_PENDING_INDEX, &key)
            .await;
        return Ok(false);
    }
    let result = if completed {
        engine.settle_withdrawal(id).await
    } else {
        engine
            .fail_withdrawal(
                id,
                reason.unwrap_or_else(|| "The payout was refused by the destination.".into()),
            )
            .await
    };
    let changed = match result {
        Ok(_) => {
            let (event, data) = if completed {
                (
                    "withdrawal.completed",
                    serde_json::json!({"account": id.account.to_string(), "id": id.display(OpKind::Withdrawal)}),
                )
            } else {
                (
                    "withdrawal.failed",
                    serde_json::json!({"account": id.account.to_string(), "id": id.display(OpKind::Withdrawal)}),
                )
            };
            events.publish(event, data).await;
            true
        }
        Err(EngineError::Rejected(Rejection::OperationClosed | Rejection::UnknownOperation)) => {
            false
        }
        Err(e) => return Err(e),
    };
    let key = id.display(OpKind::Withdrawal);
    if let Err(e) = engine
        .store()
        .delete_index(PAYOUT_PENDING_INDEX, &key)
        .await
    {
        tracing::warn!(withdrawal = %key, error = %e, "could not clear pending payout");
    }
    Ok(changed)
}

impl PayoutProcessor for HttpPayouts {
    fn submit(&self, id: OpId, destination: String) {
        let this = HttpPayouts {
            engine: self.engine.clone(),
            events: self.events.clone(),
            client: self.client.clone(),
            settings: self.settings.clone(),
        };
        tokio::spawn(async move {
            let key = id.display(OpKind::Withdrawal);
            let mut wait = Duration::from_millis(200);
            for attempt in 1..=SUBMIT_ATTEMPTS {
                match this.request(id, &destination).await {
                    Ok(None) => return,
                    Ok(Some(answer)) => {
                        let outcome = match answer.status.as_str() {
                            "completed" => Some(true),
                            "failed" => Some(false),
                            // processing: the callback reports the outcome.
                            _ => None,
                        };
                        if let Some(completed) = outcome {
                            for _ in 0..50 {
                                match report(
                                    &this.engine,
                                    &this.events,
                                    id,
                                    completed,
                                    answer.reason.clone(),
                                )
                                .await
                                {
                                    Ok(_) => break,
                                    Err(e) => {
                                        tracing::warn!(withdrawal = %key, error = %e, "payout outcome not recorded; retrying");
                                        tokio::time::sleep(Duration::from_millis(200)).await;
                                    }
                                }
                            }
                        }
                        tracing::info!(withdrawal = %key, status = %answer.status, "payout submitted");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(withdrawal = %key, attempt, error = %e, "payout request failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                }
            }
            tracing::error!(withdrawal = %key, "payout not submitted after {SUBMIT_ATTEMPTS} attempts; it is resubmitted at the next start, or an operator settles or fails it");
        });
    }

    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<PayoutReport>, String>> {
        let (client, settings) = (self.client.clone(), self.settings.clone());
        Box::pin(async move { reports::fetch(&client, &settings, date).await })
    }
}
