//! The comparison at the heart of the daily reconciliation: the processors'
//! reports of a day (`reports`) against the ledger's deposits and withdrawals of
//! that day, as a list of mismatches. Pure: the route gathers both sides
//! (`routes/admin/reconciliation.rs`), this decides what disagrees.
//!
//! Deposits are matched by the charge reference `<account>:<Idempotency-Key>`
//! when the ledger still remembers the key (idempotency keys are kept at least a
//! day); a deposit whose key is forgotten is matched by account, amount and
//! currency instead. Payouts are matched by their `wd_` id.
//!
//! What counts as a mismatch:
//! - `missing_in_ledger`: the processor charged (or holds pending) money, or
//!   pays out a withdrawal, that the ledger does not show. A charge still in
//!   OKPay's deposit intents is said to be on its way (the sweep credits it).
//! - `missing_at_processor`: the ledger credited a deposit, or holds or paid out
//!   a withdrawal, the processor does not report. A withdrawal the ledger failed
//!   moved no money and is not listed.
//! - `amount_differs`: both sides have it with different amounts or currencies.
//! - `state_differs`: both sides have it in different states (a charge refunded
//!   or failed that the ledger credited, a payout completed at the processor and
//!   still processing in the ledger...).
//! - `unreadable_report_item`: an item whose amount does not parse.

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::reports::{ChargeReport, PayoutReport};

/// A deposit as the ledger has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerDeposit {
    /// The `dep_` id.
    pub id: String,
    /// The account's `acc_` id.
    pub account: String,
    /// `<account>:<Idempotency-Key>` while the ledger remembers the key.
    pub reference: Option<String>,
    pub amount: Decimal,
    pub currency: String,
}

/// A withdrawal as the ledger has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPayout {
    /// The `wd_` id.
    pub id: String,
    /// The amount less the fee: what the processor pays out.
    pub payout: Decimal,
    pub currency: String,
    /// `processing`, `completed` or `failed`.
    pub status: &'static str,
}

/// Where the processors' side and the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Mismatch {
    /// `missing_in_ledger`, `missing_at_processor`, `amount_differs`,
    /// `state_differs`, `unreadable_report_item`, or (from the ledger's own
    /// records) `unreadable_deposit_intent`, `payout_unknown_to_ledger`,
    /// `payout_closed_in_ledger`.
    pub kind: String,
    /// The charge reference, `dep_` or `wd_` id.
    pub id: String,
    pub detail: String,
    /// `processor` (card charges) or `payouts`, when a report is involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The processor's status and amount, when it reports the item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processor_amount: Option<String>,
    /// The ledger's status and amount, when it has the item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_amount: Option<String>,
}

impl Mismatch {
    /// A mismatch found in OKPay's own records, without a report.
    pub fn own(kind: &str, id: String, detail: String) -> Mismatch {
        Mismatch {
            kind: kind.into(),
            id,
            detail,
            source: None,
            processor_status: None,
            processor_amount: None,
            ledger_status: None,
            ledger_amount: None,
        }
    }
}

/// `"12.50 CNY"`.
fn shown(amount: &str, currency: &str) -> String {
    format!("{amount} {currency}")
}

/// The account part of a charge reference.
pub fn account_of(reference: &str) -> Option<&str> {
    reference.split_once(':').map(|(a, _)| a)
}

/// The card processor's charges of a day against the ledger's deposits.
///
/// `day` holds the ledger's deposits of that day; `elsewhere`, deposits of other
/// days that a report item names (a charge credited after midnight): they match
/// but are never missing at the processor. `intents` are the references of the
/// deposits still on their way through the processor.
pub fn deposits(
    report: &[ChargeReport],
    day: &[LedgerDeposit],
    elsewhere: &[LedgerDeposit],
    intents: &HashSet<String>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let ledger: Vec<&LedgerDeposit> = day.iter().chain(elsewhere).collect();
    let by_reference: HashMap<&str, usize> = ledger
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.reference.as_deref().map(|r| (r, i)))
        .collect();
    let mut matched = vec![false; ledger.len()];
    let mismatch = |kind: &str, id: &str, detail: String, item: &ChargeReport| Mismatch {
        kind: kind.into(),
        id: id.into(),
        detail,
        source: Some("processor".into()),
        processor_status: Some(item.status.clone()),
        processor_amount: Some(shown(&item.amount, &item.currency)),
        ledger_status: None,
        ledger_amount: None,
    };
    for item in report {
        let Ok(amount) = item.amount.parse::<Decimal>() else {
            out.push(mismatch(
                "unreadable_report_item",
                &item.reference,
                "The processor's amount does not parse.".into(),
                item,
            ));
            continue;
        };
        let found = by_reference
            .get(item.reference.as_str())
            .copied()
            .filter(|i| !matched[*i])
            .or_else(|| {
                // A deposit whose key the ledger forgot: same account and amount.
                let account = account_of(&item.reference)?;
                ledger.iter().enumerate().position(|(i, d)| {
                    !matched[i]
                        && d.reference.is_none()
                        && d.account == account
                        && d.amount == amount
                        && d.currency == item.currency
                })
            });
        let Some(i) = found else {
            let open = intents.contains(&item.reference);
            match item.status.as_str() {
                "failed" | "refunded" => {}
                "pending" if open => {}
                "succeeded" | "pending" => out.push(mismatch(
                    "missing_in_ledger",
                    &item.reference,
                    if open {
                        "Charged at the processor and not yet credited: the deposit is on its way (the start-up sweep or the client's retry credits it).".into()
                    } else {
                        format!(
                            "The processor reports a {} charge that the ledger does not show.",
                            item.status
                        )
                    },
                    item,
                )),
                other => out.push(mismatch(
                    "state_differs",
                    &item.reference,
                    format!("The processor reports an unknown status {other:?}."),
                    item,
                )),
            }
            continue;
        };
        matched[i] = true;
        let d = ledger[i];
        let with_ledger = |mut m: Mismatch| {
            m.id = d.id.clone();
            m.ledger_status = Some("completed".into());
            m.ledger_amount = Some(format!("{} {}", d.amount, d.currency));
            m
        };
        if item.status != "succeeded" {
            out.push(with_ledger(mismatch(
                "state_differs",
                &item.reference,
                format!(
                    "The ledger credited the deposit; the processor reports the charge {}.",
                    item.status
                ),
                item,
            )));
        } else if amount != d.amount || item.currency != d.currency {
            out.push(with_ledger(mismatch(
                "amount_differs",
                &item.reference,
                "The processor charged another amount than the ledger credited.".into(),
                item,
            )));
        }
    }
    for (i, d) in day.iter().enumerate() {
        if !matched[i] {
            out.push(Mismatch {
                kind: "missing_at_processor".into(),
                id: d.id.clone(),
                detail: format!(
                    "The ledger credited this deposit{}; the processor reports no such charge.",
                    d.reference
                        .as_deref()
                        .map(|r| format!(" (reference {r})"))
                        .unwrap_or_default()
                ),
                source: Some("processor".into()),
                processor_status: None,
                processor_amount: None,
                ledger_status: Some("completed".into()),
                ledger_amount: Some(format!("{} {}", d.amount, d.currency)),
            });
        }
    }
    out
}

/// The payout processor's payouts of a day against the ledger's withdrawals.
/// `day` and `elsewhere` as for [`deposits`]; `pending` are the withdrawals
/// still waiting to be accepted by the processor (`payout_pending`).
pub fn payouts(
    report: &[PayoutReport],
    day: &[LedgerPayout],
    elsewhere: &[LedgerPayout],
    pending: &HashSet<String>,
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let ledger: HashMap<&str, &LedgerPayout> = day
        .iter()
        .chain(elsewhere)
        .map(|p| (p.id.as_str(), p))
        .collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for item in report {
        let mismatch = |kind: &str, detail: String, ledger: Option<&LedgerPayout>| Mismatch {
            kind: kind.into(),
            id: item.id.clone(),
            detail,
            source: Some("payouts".into()),
            processor_status: Some(item.status.clone()),
            processor_amount: Some(shown(&item.amount, &item.currency)),
            ledger_status: ledger.map(|l| l.status.to_owned()),
            ledger_amount: ledger.map(|l| format!("{} {}", l.payout, l.currency)),
        };
        let Ok(amount) = item.amount.parse::<Decimal>() else {
            out.push(mismatch(
                "unreadable_report_item",
                "The processor's amount does not parse.".into(),
                None,
            ));
            continue;
        };
        let Some(l) = ledger.get(item.id.as_str()) else {
            out.push(mismatch(
                "missing_in_ledger",
                format!(
                    "The processor reports a {} payout that the ledger does not show.",
                    item.status
                ),
                None,
            ));
            continue;
        };
        seen.insert(l.id.as_str());
        if amount != l.payout || item.currency != l.currency {
            out.push(mismatch(
                "amount_differs",
                "The processor pays out another amount than the ledger holds for it.".into(),
                Some(l),
            ));
        }
        if item.status != l.status {
            out.push(mismatch(
                "state_differs",
                format!(
                    "The processor reports the payout {}; the ledger shows it {}.",
                    item.status, l.status
                ),
                Some(l),
            ));
        }
    }
    for l in day {
        if seen.contains(l.id.as_str()) || l.status == "failed" {
            continue;
        }
        out.push(Mismatch {
            kind: "missing_at_processor".into(),
            id: l.id.clone(),
            detail: if pending.contains(&l.id) {
                "The processor reports no such payout: it has not accepted it yet (OKPay retries the submission; an operator can settle or fail it).".into()
            } else {
                format!(
                    "The ledger shows this withdrawal {}; the processor reports no such payout.",
                    l.status
                )
            },
            source: Some("payouts".into()),
            processor_status: None,
            processor_amount: None,
            ledger_status: Some(l.status.to_owned()),
            ledger_amount: Some(format!("{} {}", l.payout, l.currency)),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn charge(reference: &str, amount: &str, status: &str) -> ChargeReport {
        ChargeReport {
            reference: reference.into(),
            charge_id: None,
            amount: amount.into(),
            currency: "CNY".into(),
            status: status.into(),
        }
    }

    fn credited(id: &str, reference: Option<&str>, amount: Decimal) -> LedgerDeposit {
        LedgerDeposit {
            id: id.into(),
            account: "acc_1".into(),
            reference: reference.map(Into::into),
            amount,
            currency: "CNY".into(),
        }
    }

    fn kinds(m: &[Mismatch]) -> Vec<(&str, &str)> {
        m.iter().map(|m| (m.kind.as_str(), m.id.as_str())).collect()
    }

    #[test]
    fn deposits_agree_or_each_difference_is_listed_once() {
        let ledger = [
            credited("dep_a", Some("acc_1:a"), dec("10.00")),
            credited("dep_b", Some("acc_1:b"), dec("20.00")),
            credited("dep_c", Some("acc_1:c"), dec("30.00")),
            credited("dep_d", None, dec("40.00")),
            credited("dep_e", Some("acc_1:e"), dec("50.00")),
        ];
        let report = [
            charge("acc_1:a", "10.00", "succeeded"),
            charge("acc_1:b", "25.00", "succeeded"),
            charge("acc_1:c", "30.00", "refunded"),
            // Matched by account and amount: its key is forgotten.
            charge("acc_1:d", "40.00", "succeeded"),
            charge("acc_1:x", "5.00", "succeeded"),
            charge("acc_1:y", "6.00", "pending"),
            charge("acc_1:z", "7.00", "failed"),
            charge("acc_1:w", "zero", "succeeded"),
        ];
        let intents: HashSet<String> = ["acc_1:y".to_owned()].into();
        let m = deposits(&report, &ledger, &[], &intents);
        assert_eq!(
            kinds(&m),
            [
                ("amount_differs", "dep_b"),
                ("state_differs", "dep_c"),
                ("missing_in_ledger", "acc_1:x"),
                ("unreadable_report_item", "acc_1:w"),
                ("missing_at_processor", "dep_e"),
            ]
        );
        assert_eq!(m[0].processor_amount.as_deref(), Some("25.00 CNY"));
        assert_eq!(m[0].ledger_amount.as_deref(), Some("20.00 CNY"));
        // A deposit credited on another day matches without being missing.
        let other = [credited("dep_x", Some("acc_1:x"), dec("5.00"))];
        let m = deposits(&report[4..5], &[], &other, &HashSet::new());
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn payouts_agree_or_each_difference_is_listed_once() {
        let wd = |id: &str, payout: Decimal, status| LedgerPayout {
            id: id.into(),
            payout,
            currency: "CNY".into(),
            status,
        };
        let ledger = [
            wd("wd_a", dec("99.50"), "completed"),
            wd("wd_b", dec("10.00"), "processing"),
            wd("wd_c", dec("10.00"), "failed"),
            wd("wd_d", dec("10.00"), "processing"),
            wd("wd_e", dec("10.00"), "completed"),
        ];
        let item = |id: &str, amount: &str, status: &str| PayoutReport {
            id: id.into(),
            amount: amount.into(),
            currency: "CNY".into(),
            status: status.into(),
        };
        let report = [
            item("wd_a", "99.50", "completed"),
            item("wd_b", "10.00", "completed"),
            item("wd_e", "11.00", "completed"),
            item("wd_z", "1.00", "completed"),
        ];
        let pending: HashSet<String> = ["wd_d".to_owned()].into();
        let m = payouts(&report, &ledger, &[], &pending);
        assert_eq!(
            kinds(&m),
            [
                ("state_differs", "wd_b"),
                ("amount_differs", "wd_e"),
                ("missing_in_ledger", "wd_z"),
                ("missing_at_processor", "wd_d"),
            ]
        );
        assert!(m[3].detail.contains("not accepted it yet"));
    }
}
