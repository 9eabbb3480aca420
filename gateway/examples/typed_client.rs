//! A small typed OKPay client for app developers: the requests and answers of
//! registration, login, deposits, transfers, the account and the history as Rust
//! types, errors as the `Problem` body with its code. `tests/client.rs` checks
//! every type here against the server's own OpenAPI document (the same field
//! names, the same required fields) and then uses the client against a real
//! server, so this file cannot drift from the contract unnoticed.
//!
//! Run it against a dev server: `cargo run -p okpay-gateway --example typed_client -- http://127.0.0.1:8080`.

#![allow(dead_code)]

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
pub struct Registered {
    pub account_id: String,
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
    pub device_id: String,
}

#[derive(Debug, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub session_id: String,
    pub account_id: String,
    pub expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct DepositRequest {
    pub amount: String,
    pub currency: String,
    pub method: String,
    pub card_number: String,
}

#[derive(Debug, Deserialize)]
pub struct DepositResponse {
    pub id: String,
    pub status: String,
    pub amount: String,
    pub fee: String,
    pub net: String,
    pub currency: String,
}

#[derive(Debug, Serialize)]
pub struct TransferRequest {
    pub to: String,
    pub amount: String,
    pub currency: String,
    pub memo: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TransferResponse {
    pub id: String,
    pub status: String,
    pub from: String,
    pub to: String,
    pub amount: String,
    pub fee: String,
    pub currency: String,
}

#[derive(Debug, Deserialize)]
pub struct Counterparty {
    pub account_id: String,
    pub display_name: Option<String>,
    pub alias: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct TransactionItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub direction: String,
    pub amount: String,
    pub fee: String,
    pub currency: String,
    pub status: String,
    pub counterparty: Option<String>,
    pub counterparty_detail: Option<Counterparty>,
    pub memo: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
pub struct TransactionPage {
    pub items: Vec<TransactionItem>,
    pub next_cursor: Option<String>,
}

/// Every error answer (`application/problem+json`).
#[derive(Debug, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    pub hint: Option<String>,
    pub retry_after_s: Option<u64>,
}

/// (schema name in the OpenAPI document, the fields this client knows).
pub const SCHEMAS: &[(&str, &[&str])] = &[
    ("RegisterRequest", &["email", "password", "display_name"]),
    ("Registered", &["account_id", "status"]),
    ("LoginRequest", &["login", "password", "device_id"]),
    (
        "LoginResponse",
        &["token", "session_id", "account_id", "expires_at"],
    ),
    (
        "DepositRequest",
        &["amount", "currency", "method", "card_number"],
    ),
    (
        "DepositResponse",
        &["id", "status", "amount", "fee", "net", "currency"],
    ),
    ("TransferRequest", &["to", "amount", "currency", "memo"]),
    (
        "TransferResponse",
        &["id", "status", "from", "to", "amount", "fee", "currency"],
    ),
    ("Counterparty", &["account_id", "display_name", "alias"]),
    (
        "TransactionItem",
        &[
            "id",
            "type",
            "direction",
            "amount",
            "fee",
            "currency",
            "status",
            "counterparty",
            "counterparty_detail",
            "memo",
            "created_at",
        ],
    ),
    ("TransactionPage", &["items", "next_cursor"]),
    (
        "Problem",
        &[
            "type",
            "title",
            "status",
            "detail",
            "code",
            "hint",
            "retry_after_s",
        ],
    ),
];

/// The client: a base URL and, once logged in, a token.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A call's failure: the server's problem, or the transport's error.
#[derive(Debug)]
pub enum Error {
    Problem(Problem),
    Http(reqwest::Error),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::Http(e)
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    async fn answer<T: for<'de> Deserialize<'de>>(r: reqwest::Response) -> Result<T, Error> {
        if r.status().is_success() {
            Ok(r.json().await?)
        } else {
            Err(Error::Problem(r.json().await?))
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.post(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn register(&self, body: &RegisterRequest) -> Result<Registered, Error> {
        Self::answer(self.post("/v1/accounts").json(body).send().await?).await
    }

    /// Logs in and keeps the token for the next calls.
    pub async fn login(&mut self, body: &LoginRequest) -> Result<LoginResponse, Error> {
        let r: LoginResponse =
            Self::answer(self.post("/v1/sessions").json(body).send().await?).await?;
        self.token = Some(r.token.clone());
        Ok(r)
    }

    pub async fn deposit(
        &self,
        key: &str,
        body: &DepositRequest,
    ) -> Result<DepositResponse, Error> {
        let req = self
            .post("/v1/deposits")
            .header("Idempotency-Key", key)
            .json(body);
        Self::answer(req.send().await?).await
    }

    pub async fn transfer(
        &self,
        key: &str,
        body: &TransferRequest,
    ) -> Result<TransferResponse, Error> {
        let req = self
            .post("/v1/transfers")
            .header("Idempotency-Key", key)
            .json(body);
        Self::answer(req.send().await?).await
    }

    pub async fn transactions(&self, query: &str) -> Result<TransactionPage, Error> {
        let mut req = self
            .http
            .get(format!("{}/v1/transactions?{query}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        Self::answer(req.send().await?).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let mut client = Client::new(&base);
    let email = format!("example.{}@example.com", std::process::id());
    let me = client
        .register(&RegisterRequest {
            email: email.clone(),
            password: "correct horse".into(),
            display_name: "Example".into(),
        })
        .await
        .map_err(|e| format!("{e:?}"))?;
    client
        .login(&LoginRequest {
            login: email,
            password: "correct horse".into(),
            device_id: "example".into(),
        })
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!("registered {}", me.account_id);
    let page = client
        .transactions("limit=10")
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!("{} transactions", page.items.len());
    Ok(())
}
