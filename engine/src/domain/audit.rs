//! The ledger audit: per currency, `deposited = balances + in_flight + fees + paid_out`
//! summed over every account. Transfers in flight are counted once: at the source
//! until the destination has credited them, then only their fee until completion.

use std::collections::{BTreeMap, HashSet};

use rust_decimal::Decimal;

use crate::domain::view::AuditShare;
use crate::money::Currency;

/// The audit figures of one currency.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CurrencyLedger {
    pub deposited: Decimal,
    pub fees: Decimal,
    pub paid_out: Decimal,
    /// Every account's available + held.
    pub balances: Decimal,
    pub in_flight: Decimal,
}

impl CurrencyLedger {
    pub fn balanced(&self) -> bool {
        self.deposited == self.balances + self.in_flight + self.fees + self.paid_out
    }
}

/// The whole audit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub currencies: BTreeMap<Currency, CurrencyLedger>,
}

impl Ledger {
    pub fn balanced(&self) -> bool {
        self.currencies.values().all(CurrencyLedger::balanced)
    }
}

/// Sums the shares of every account into the audit.
pub fn audit(shares: &[AuditShare]) -> Ledger {
    let credited: HashSet<_> = shares
        .iter()
        .flat_map(|s| s.credited.iter().copied())
        .collect();
    let mut ledger = Ledger::default();
    for share in shares {
        for book in &share.books {
            let c = ledger.currencies.entry(book.currency).or_default();
            c.deposited += book.deposited;
            c.fees += book.fees;
            c.paid_out += book.paid_out;
            c.balances += book.available + book.held;
        }
        for (id, _to, amount, fee) in &share.in_flight {
            let c = ledger.currencies.entry(amount.currency()).or_default();
            c.in_flight += if credited.contains(id) {
                *fee
            } else {
                amount.value() + fee
            };
        }
    }
    ledger
}
