//! The operators' audit trail: who did what, to which account, why and when.
//!
//! Append-only: each entry is claimed (set-if-absent) in the store index
//! `operator_audit` under `<inverted µs, 16 hex><random, 8 hex>`, so a key-order
//! scan is newest first, and no route updates or deletes an entry.
//!
//! When an entry is written: an action that changes something is recorded after
//! it succeeded (the trail never shows what did not happen); if that write fails
//! the action stands and an error is logged. A read of personal documents (a
//! KYC image) is recorded *before* the image is served and refused when the
//! record cannot be written, so no view goes unrecorded.

use chrono::{DateTime, Utc};
use okpay_engine::ids::AccountId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::operators::Role;
use crate::state::AppState;

/// The store index of the trail.
pub const AUDIT_INDEX: &str = "operator_audit";
/// Rows scanned at most for one filtered request (filters read the newest ones).
const SCAN_MAX: usize = 10_000;
const PAGE: usize = 500;

/// One operator action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// `aud_…`; also the paging cursor.
    pub id: String,
    pub at: DateTime<Utc>,
    /// The operator's name (`admin` for the bootstrap token).
    pub operator: String,
    pub role: Role,
    /// E.g. `account.freeze`, `kyc.approve`, `kyc.document_viewed`, `operator.add`.
    pub action: String,
    pub account_id: Option<String>,
    pub reason: Option<String>,
    /// Anything else worth keeping (the new status, the document, the alert).
    pub detail: Option<String>,
}

/// Appends an entry.
pub async fn record(
    state: &AppState,
    admin: &Admin,
    action: &str,
    account: Option<AccountId>,
    reason: Option<&str>,
    detail: Option<String>,
) -> Result<AuditEntry, ApiError> {
    let at = state.now();
    let micros = u64::try_from(at.timestamp_micros()).unwrap_or(0);
    // Two entries in the same microsecond differ by the random part; a clash of
    // both is retried with a new one.
    for _ in 0..4 {
        let key = format!("{:016x}{:08x}", u64::MAX - micros, rand::random::<u32>());
        let entry = AuditEntry {
            id: format!("aud_{key}"),
            at,
            operator: admin.name.clone(),
            role: admin.role,
            action: action.to_owned(),
            account_id: account.map(|a| a.to_string()),
            reason: reason.map(str::to_owned),
            detail: detail.clone(),
        };
        // unwrap: a struct of strings and a date always serializes.
        let value = serde_json::to_string(&entry).unwrap();
        match state.store().claim_index(AUDIT_INDEX, &key, &value).await {
            Ok(true) => return Ok(entry),
            Ok(false) => continue,
            Err(e) => {
                tracing::error!(error = %e, action, "could not write the operator audit trail");
                return Err(ApiError::unavailable());
            }
        }
    }
    Err(ApiError::unavailable())
}

/// Records an action that already happened: a failure is logged, not returned.
pub async fn record_done(
    state: &AppState,
    admin: &Admin,
    action: &str,
    account: Option<AccountId>,
    reason: Option<&str>,
    detail: Option<String>,
) {
    if record(state, admin, action, account, reason, detail)
        .await
        .is_err()
    {
        tracing::error!(
            operator = %admin.name,
            action,
            "an operator action is missing from the audit trail"
        );
    }
}

/// What to list.
#[derive(Debug, Default)]
pub struct Filter<'a> {
    pub account: Option<&'a str>,
    pub operator: Option<&'a str>,
    /// Entries whose action starts with this (`kyc.` for every KYC action).
    pub action_prefix: Option<&'a str>,
}

impl Filter<'_> {
    fn keeps(&self, e: &AuditEntry) -> bool {
        self.account
            .is_none_or(|a| e.account_id.as_deref() == Some(a))
            && self.operator.is_none_or(|o| e.operator == o)
            && self.action_prefix.is_none_or(|p| e.action.starts_with(p))
    }
}

/// Newest first, after the entry `after` (an `aud_` id), at most `limit`; and the
/// cursor for the next page (None at the end, or when the scan bound was reached
/// without filling the page — then the cursor lets the caller go on).
pub async fn list(
    state: &AppState,
    after: Option<&str>,
    limit: usize,
    filter: &Filter<'_>,
) -> Result<(Vec<AuditEntry>, Option<String>), ApiError> {
    let mut cursor = after
        .map(|a| {
            a.strip_prefix("aud_")
                .map(str::to_owned)
                .ok_or_else(|| ApiError::validation("after must be an aud_ id."))
        })
        .transpose()?;
    let mut out = Vec::new();
    let mut scanned = 0;
    loop {
        let rows = state
            .store()
            .scan_index(AUDIT_INDEX, cursor.as_deref(), PAGE)
            .await
            .map_err(|_| ApiError::unavailable())?;
        let end = rows.len() < PAGE;
        for (key, value) in rows {
            scanned += 1;
            cursor = Some(key);
            let Ok(entry) = serde_json::from_str::<AuditEntry>(&value) else {
                continue;
            };
            if filter.keeps(&entry) {
                out.push(entry);
                if out.len() == limit {
                    return Ok((out, cursor.map(|c| format!("aud_{c}"))));
                }
            }
        }
        if end {
            return Ok((out, None));
        }
        if scanned >= SCAN_MAX {
            return Ok((out, cursor.map(|c| format!("aud_{c}"))));
        }
    }
}
