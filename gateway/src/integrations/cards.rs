//! The card processor adapter: deposits charged through a processor's HTTP API.
//!
//! Protocol (documented in the README): `POST {url}/charges` with the bearer
//! `api_key`, `Idempotency-Key: <reference>` and `{"reference", "amount",
//! "currency", "method", "card_number"}`; the answer `{"id", "status":
//! "succeeded" | "pending" | "failed", "reason"?}`. A 402 or another 4xx is a
//! decline. `POST {url}/refunds` with `Idempotency-Key: refund:<reference>` and
//! `{"charge_id", "reference"}` gives a charge back; `GET {url}/reports/settlements`
//! is the day's report (`integrations::reports`). The card number travels only
//! to the processor, over the configured URL (HTTPS in production).

use std::time::Duration;

use chrono::NaiveDate;
use okpay_engine::domain::command::DepositMethod;
use serde::Deserialize;

use super::reports::{self, ChargeReport};

use crate::config::ProcessorSettings;
use crate::payments::{BoxFuture, CardProcessor, Charge, ChargeRequest, ChargeStatus};
use crate::routes::extract::money;

#[derive(Deserialize)]
struct ChargeAnswer {
    id: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Charges through the configured processor.
pub struct HttpCards {
    client: reqwest::Client,
    settings: ProcessorSettings,
}

impl HttpCards {
    pub fn new(settings: &ProcessorSettings) -> anyhow::Result<HttpCards> {
        Ok(HttpCards {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(settings.timeout_ms.unwrap_or(10_000)))
                .build()?,
            settings: settings.clone(),
        })
    }

    fn post(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!(
                "{}/{path}",
                self.settings.url.trim_end_matches('/')
            ))
            .header("Idempotency-Key", key);
        match &self.settings.api_key {
            Some(k) => request.bearer_auth(&k.0),
            None => request,
        }
    }
}

impl CardProcessor for HttpCards {
    fn charge(&self, r: ChargeRequest) -> BoxFuture<Result<Charge, String>> {
        let c = r.amount.currency();
        let request = self.post("charges", &r.reference).json(&serde_json::json!({
            "reference": r.reference,
            "amount": money(r.amount.value(), c),
            "currency": c.code(),
            "method": match r.method {
                DepositMethod::BankCard => "bank_card",
                DepositMethod::CreditCard => "credit_card",
            },
            "card_number": r.card.digits(),
        }));
        Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 409 {
                let reason = response
                    .json::<ChargeAnswer>()
                    .await
                    .ok()
                    .and_then(|a| a.reason)
                    .unwrap_or_else(|| format!("The processor declined the charge ({status})."));
                return Ok(Charge {
                    id: String::new(),
                    status: ChargeStatus::Declined(reason),
                });
            }
            if !status.is_success() {
                return Err(format!("card processor answered {status}"));
            }
            let answer: ChargeAnswer = response
                .json()
                .await
                .map_err(|e| format!("unreadable answer: {e}"))?;
            let status = match answer.status.as_str() {
                "succeeded" => ChargeStatus::Succeeded,
                "pending" => ChargeStatus::Pending,
                _ => ChargeStatus::Declined(
                    answer
                        .reason
                        .unwrap_or_else(|| "The processor declined the charge.".into()),
                ),
            };
            Ok(Charge {
                id: answer.id,
                status,
            })
        })
    }

    fn refund(&self, charge_id: String, reference: String) -> BoxFuture<Result<(), String>> {
        let request = self
            .post("refunds", &format!("refund:{reference}"))
            .json(&serde_json::json!({"charge_id": charge_id, "reference": reference}));
        Box::pin(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("refund answered {}", response.status()))
            }
        })
    }

    fn settlement_report(&self, date: NaiveDate) -> BoxFuture<Result<Vec<ChargeReport>, String>> {
        let (client, settings) = (self.client.clone(), self.settings.clone());
        Box::pin(async move { reports::fetch(&client, &settings, date).await })
    }
}
