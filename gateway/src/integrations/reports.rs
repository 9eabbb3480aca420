//! The processors' own settlement reports, the other side of the daily
//! reconciliation (`routes/admin/reconciliation.rs`).
//!
//! Protocol (documented in the README): `GET {url}/reports/settlements?date=YYYY-MM-DD`
//! with the bearer `api_key`, on the card processor and on the payout processor
//! alike, answers `{"date", "items": [...]}` listing what the processor did on
//! that day (UTC):
//! - card processor: `{"reference", "charge_id"?, "amount", "currency",
//!   "status": "succeeded" | "pending" | "failed" | "refunded"}`, `reference`
//!   being the charge's idempotency key `<account>:<Idempotency-Key>`;
//! - payout processor: `{"id" (the wd_ id), "amount" (what reached the
//!   destination), "currency", "status": "processing" | "completed" | "failed"}`.
//!
//! A report is read whole into memory, so it is bounded: at most
//! [`REPORT_BYTES_MAX`] bytes and [`REPORT_ITEMS_MAX`] items; beyond either the
//! report is refused (an error the reconciliation shows) rather than cut short,
//! since a truncated report would list false mismatches.
//!
//! The `--dev` stand-ins keep the same report in memory ([`DevReport`]): what the
//! test card processor charged and the test payout processor paid, by day.

use std::collections::{HashSet, VecDeque};

use chrono::NaiveDate;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::ProcessorSettings;

/// The largest report body read.
pub const REPORT_BYTES_MAX: usize = 32 * 1024 * 1024;
/// The most items a report may list.
pub const REPORT_ITEMS_MAX: usize = 200_000;

/// One charge in the card processor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReport {
    /// `<account>:<Idempotency-Key>`: the charge's idempotency key.
    pub reference: String,
    #[serde(default)]
    pub charge_id: Option<String>,
    /// The amount charged (gross, before OKPay's fee), in the currency's decimals.
    pub amount: String,
    pub currency: String,
    /// `succeeded`, `pending`, `failed` or `refunded`.
    pub status: String,
}

/// One payout in the payout processor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutReport {
    /// The withdrawal's `wd_` id (the payout's idempotency key).
    pub id: String,
    /// What reached (or was to reach) the destination.
    pub amount: String,
    pub currency: String,
    /// `processing`, `completed` or `failed`.
    pub status: String,
}

#[derive(Deserialize)]
struct Report<T> {
    items: Vec<T>,
}

/// Fetches the report of `date` from the processor at `settings`.
pub async fn fetch<T: DeserializeOwned>(
    client: &reqwest::Client,
    settings: &ProcessorSettings,
    date: NaiveDate,
) -> Result<Vec<T>, String> {
    let mut request = client
        .get(format!(
            "{}/reports/settlements",
            settings.url.trim_end_matches('/')
        ))
        .query(&[("date", date.format("%Y-%m-%d").to_string())]);
    if let Some(k) = &settings.api_key {
        request = request.bearer_auth(&k.0);
    }
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the report answered {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > REPORT_BYTES_MAX {
            return Err(format!("the report is over {REPORT_BYTES_MAX} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let report: Report<T> =
        serde_json::from_slice(&body).map_err(|e| format!("unreadable report: {e}"))?;
    if report.items.len() > REPORT_ITEMS_MAX {
        return Err(format!("the report lists over {REPORT_ITEMS_MAX} items"));
    }
    Ok(report.items)
}

/// Entries a [`DevReport`] keeps.
const DEV_REPORT_MAX: usize = 100_000;

/// A `--dev` stand-in's report: what it did, by day, each item under its key
/// (the charge reference, the payout id) once. Bounded (oldest entries dropped
/// first), like the dev outbox.
pub struct DevReport<T> {
    inner: Mutex<DevEntries<T>>,
}

struct DevEntries<T> {
    entries: VecDeque<(NaiveDate, String, T)>,
    keys: HashSet<String>,
}

impl<T> Default for DevReport<T> {
    fn default() -> Self {
        DevReport {
            inner: Mutex::new(DevEntries {
                entries: VecDeque::new(),
                keys: HashSet::new(),
            }),
        }
    }
}

impl<T: Clone> DevReport<T> {
    /// Records `item` under `key` on `date`, unless `key` is already recorded
    /// (a repeated charge or a resubmitted payout is the first one again).
    pub fn record(&self, date: NaiveDate, key: &str, item: T) {
        let mut inner = self.inner.lock();
        if !inner.keys.insert(key.to_owned()) {
            return;
        }
        if inner.entries.len() >= DEV_REPORT_MAX {
            if let Some((_, old, _)) = inner.entries.pop_front() {
                inner.keys.remove(&old);
            }
        }
        inner.entries.push_back((date, key.to_owned(), item));
    }

    /// Changes the item under `key` (a charge refunded, a payout settled).
    /// Searched from the newest: what changes is recent.
    pub fn update(&self, key: &str, change: impl FnOnce(&mut T)) {
        let mut inner = self.inner.lock();
        if let Some((_, _, item)) = inner.entries.iter_mut().rev().find(|(_, k, _)| k == key) {
            change(item);
        }
    }

    /// Every item of `date`.
    pub fn of(&self, date: NaiveDate) -> Vec<T> {
        self.inner
            .lock()
            .entries
            .iter()
            .filter(|(d, _, _)| *d == date)
            .map(|(_, _, i)| i.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_report_lists_a_day_and_updates_in_place() {
        let report = DevReport::<PayoutReport>::default();
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        let item = |id: &str| PayoutReport {
            id: id.into(),
            amount: "1.00".into(),
            currency: "CNY".into(),
            status: "processing".into(),
        };
        report.record(day, "wd_1", item("wd_1"));
        report.record(day, "wd_1", item("wd_1"));
        report.record(day.succ_opt().unwrap(), "wd_2", item("wd_2"));
        report.update("wd_1", |p| p.status = "completed".into());
        let got = report.of(day);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].id.as_str(), got[0].status.as_str()),
            ("wd_1", "completed")
        );
    }
}
