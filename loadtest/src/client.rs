//! A small typed client for the parts of the OKPay API (API.md) the harness uses:
//! sign-up, login, deposit, KYC approval, transfer, history, account, ledger.
//!
//! Every failure is reduced to one short label, the [`CallError::code`], because
//! that is what the report counts: the problem+json `code` when the server sent
//! one (`INSUFFICIENT_FUNDS`), `HTTP_<status>` when it answered without one, and
//! `TIMEOUT` / `CONNECT` / `TRANSPORT` when no answer arrived at all. Requests only
//! go to the loopback base URL checked in `target.rs`.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::money::{format_minor, parse_minor, CURRENCY};
use crate::target::LoopbackUrl;

/// The password of every load-test user (the policy wants 8–128 characters).
pub const PASSWORD: &str = "loadtest-password";

/// A card that passes the Luhn check and that the dev processor accepts.
pub const TEST_CARD: &str = "4111111111111111";

/// A failed call, reduced to what the report counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// HTTP status when the server answered.
    pub status: Option<u16>,
    /// Problem `code`, `HTTP_<status>`, or a transport label.
    pub code: String,
    /// The problem's `detail`, or the transport error, for messages.
    pub detail: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s} {}: {}", self.code, self.detail),
            None => write!(f, "{}: {}", self.code, self.detail),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    fn transport(e: &reqwest::Error) -> CallError {
        let code = if e.is_timeout() {
            "TIMEOUT"
        } else if e.is_connect() {
            "CONNECT"
        } else {
            "TRANSPORT"
        };
        CallError {
            status: None,
            code: code.into(),
            detail: e.to_string(),
        }
    }

    /// Classifies an error answer from its status and (maybe problem+json) body.
    pub fn from_answer(status: u16, body: &[u8]) -> CallError {
        let problem: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| {
            problem
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        CallError {
            status: Some(status),
            code: field("code").unwrap_or_else(|| format!("HTTP_{status}")),
            detail: field("detail")
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into()),
        }
    }
}

/// A logged-in user of the run.
#[derive(Debug, Clone)]
pub struct User {
    pub account_id: String,
    pub token: String,
}

/// What a 201 transfer answer says that the harness needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAck {
    pub id: String,
    pub fee_minor: i64,
}

/// One row of `GET /v1/transactions`.
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: String,
    #[serde(default)]
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

/// The tier-0 limits an account reports, to decide whether KYC is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub single_max_minor: i64,
    pub daily_out_max_minor: i64,
}

/// The harness's HTTP client.
#[derive(Debug, Clone)]
pub struct Api {
    http: Client,
    base: LoopbackUrl,
    admin_token: String,
}

impl Api {
    /// A client with a connection pool sized for `connections` concurrent requests,
    /// each bounded by `timeout`.
    pub fn new(
        base: LoopbackUrl,
        admin_token: String,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Api> {
        let http = Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            // Loopback only: never follow a redirect somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tcp_nodelay(true)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            http,
            base,
            admin_token,
        })
    }

    pub fn base(&self) -> &LoopbackUrl {
        &self.base
    }

    async fn send(&self, req: RequestBuilder, ok: StatusCode) -> Result<Vec<u8>, CallError> {
        let r = req.send().await.map_err(|e| CallError::transport(&e))?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| CallError::transport(&e))?;
        if status == ok {
            Ok(body.to_vec())
        } else {
            Err(CallError::from_answer(status.as_u16(), &body))
        }
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        ok: StatusCode,
    ) -> Result<T, CallError> {
        let body = self.send(req, ok).await?;
        serde_json::from_slice(&body).map_err(|e| CallError {
            status: Some(ok.as_u16()),
            code: "BAD_RESPONSE".into(),
            detail: e.to_string(),
        })
    }

    /// `POST /v1/accounts` → the account id.
    pub async fn register(&self, email: &str) -> Result<String, CallError> {
        let v: Value = self
            .send_json(
                self.http.post(self.base.join("/v1/accounts")).json(&json!({
                    "email": email, "password": PASSWORD, "display_name": "Load Test",
                })),
                StatusCode::CREATED,
            )
            .await?;
        Ok(str_field(&v, "account_id"))
    }

    /// `POST /v1/sessions` → (account id, token).
    pub async fn login(&self, login: &str) -> Result<User, CallError> {
        let v: Value = self
            .send_json(
                self.http.post(self.base.join("/v1/sessions")).json(&json!({
                    "login": login, "password": PASSWORD,
                    "device_id": "okpay-loadtest", "device_name": "okpay-loadtest",
                })),
                StatusCode::CREATED,
            )
            .await?;
        Ok(User {
            account_id: str_field(&v, "account_id"),
            token: str_field(&v, "token"),
        })
    }

    /// `POST /v1/deposits` by bank card → the net amount credited, in minor units.
    pub async fn deposit(
        &self,
        token: &str,
        amount_minor: i64,
        key: &str,
    ) -> Result<i64, CallError> {
        let v: Value = self
            .send_json(
                self.http
                    .post(self.base.join("/v1/deposits"))
                    .bearer_auth(token)
                    .header("Idempotency-Key", key)
                    .json(&json!({
                        "amount": format_minor(amount_minor), "currency": CURRENCY,
                        "method": "bank_card", "card_number": TEST_CARD,
                    })),
                StatusCode::CREATED,
            )
            .await?;
        // A deposit answer without `net` would be a contract break; assume no fee
        // (bank_card's default) rather than fail the whole set-up on it.
        Ok(v.get("net")
            .and_then(Value::as_str)
            .and_then(|n| parse_minor(n).ok())
            .unwrap_or(amount_minor))
    }

    /// `POST /v1/admin/kyc/{id}/approve` (admin token).
    pub async fn approve_kyc(&self, account_id: &str) -> Result<(), CallError> {
        self.send(
            self.http
                .post(
                    self.base
                        .join(&format!("/v1/admin/kyc/{account_id}/approve")),
                )
                .bearer_auth(&self.admin_token),
            StatusCode::OK,
        )
        .await
        .map(drop)
    }

    /// One page of the caller's transfers, newest first.
    pub async fn transfers_page(
        &self,
        token: &str,
        cursor: Option<&str>,
    ) -> Result<HistoryPage, CallError> {
        let mut query = vec![("limit", "200"), ("type", "transfer")];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        self.send_json(
            self.http
                .get(self.base.join("/v1/transactions"))
                .bearer_auth(token)
                .query(&query),
            StatusCode::OK,
        )
        .await
    }

    /// `GET /v1/account` as JSON.
    pub async fn account(&self, token: &str) -> Result<Value, CallError> {
        self.send_json(
            self.http
                .get(self.base.join("/v1/account"))
                .bearer_auth(token),
            StatusCode::OK,
        )
        .await
    }

    /// The account's total (available + held) in [`CURRENCY`], in minor units.
    pub async fn balance_minor(&self, token: &str) -> Result<i64, CallError> {
        let v = self.account(token).await?;
        Ok(balance_in(&v, CURRENCY))
    }

    /// The account's tier limits, from `GET /v1/account`.
    pub async fn limits(&self, token: &str) -> Result<Limits, CallError> {
        let v = self.account(token).await?;
        let money = |name: &str| {
            v.pointer(&format!("/limits/{name}"))
                .and_then(Value::as_str)
                .and_then(|s| parse_minor(s).ok())
                .unwrap_or(i64::MAX)
        };
        Ok(Limits {
            single_max_minor: money("single_max"),
            daily_out_max_minor: money("daily_out_max"),
        })
    }

    /// `GET /v1/admin/ledger` (admin token).
    pub async fn ledger(&self) -> Result<Value, CallError> {
        self.send_json(
            self.http
                .get(self.base.join("/v1/admin/ledger"))
                .bearer_auth(&self.admin_token),
            StatusCode::OK,
        )
        .await
    }
}

fn str_field(v: &Value, name: &str) -> String {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `balances[currency].total` of an account view, in minor units (0 when absent:
/// an account that never held a currency has no row for it).
pub fn balance_in(account: &Value, currency: &str) -> i64 {
    account
        .get("balances")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("currency").and_then(Value::as_str) == Some(currency))
        .filter_map(|b| {
            // `total` is available + held; fall back to their sum if a server
            // leaves `total` out.
            let field = |n: &str| {
                b.get(n)
                    .and_then(Value::as_str)
                    .and_then(|s| parse_minor(s).ok())
            };
            field("total").or_else(|| Some(field("available")? + field("held").unwrap_or(0)))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_labelled_by_problem_code_or_status() {
        let e = CallError::from_answer(
            422,
            br#"{"status":422,"code":"INSUFFICIENT_FUNDS","detail":"too poor"}"#,
        );
        assert_eq!(e.code, "INSUFFICIENT_FUNDS");
        assert_eq!(e.detail, "too poor");
        let e = CallError::from_answer(502, b"<html>bad gateway</html>");
        assert_eq!(e.code, "HTTP_502");
    }

    #[test]
    fn balances_are_read_from_the_account_view() {
        let v = json!({"balances": [
            {"currency": "USD", "available": "1.00", "held": "0.00", "total": "1.00"},
            {"currency": "CNY", "available": "10.50", "held": "2.00", "total": "12.50"},
        ]});
        assert_eq!(balance_in(&v, "CNY"), 1250);
        assert_eq!(balance_in(&json!({"balances": []}), "CNY"), 0);
        let no_total =
            json!({"balances": [{"currency": "CNY", "available": "1.00", "held": "0.50"}]});
        assert_eq!(balance_in(&no_total, "CNY"), 150);
    }
}
