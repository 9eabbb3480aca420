//! Policy: every business number (currencies, limits, fees, fraud thresholds,
//! retention) with the defaults of `shared/design/API.md`, overridable from the
//! `--config` TOML file. The pure core reads it; nothing in it is hard-coded there.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::money::{Currency, FeeRule, MoneyError};

/// Limits of one KYC tier, in major units of whatever currency is moved.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Largest single outgoing operation (transfer or withdrawal).
    pub single_max: Decimal,
    /// Largest sum of outgoing operations per UTC day.
    pub daily_out_max: Decimal,
    /// Whether withdrawals to cards/wallets are allowed (tier 0: no, `KYC_REQUIRED`).
    pub withdrawals: bool,
    /// Largest balance (available + held) the account may hold; `None`: no cap.
    #[serde(default)]
    pub balance_max: Option<Decimal>,
}

/// Deposit fees by method.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositFees {
    pub bank_card: FeeRule,
    pub credit_card: FeeRule,
}

/// Withdrawal fees by method; `payout = amount - fee`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalFees {
    pub bank_card: FeeRule,
    pub third_party: FeeRule,
}

/// Fraud thresholds. Each rule is a pure function of the account's recent activity.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FraudPolicy {
    /// Outgoing operations of this amount or more need step-up 2FA (verdict: challenge).
    pub challenge_over: Decimal,
    /// More than this many outgoing operations within `velocity_window_s` → blocked.
    pub velocity_max_ops: u32,
    pub velocity_window_s: u32,
    /// More than this sum of outgoing operations within `velocity_window_s` → blocked
    /// (amounts of all currencies at face value). Default 100,000: two of the
    /// verified tier's largest single operations (50,000) per window pass, a third
    /// is blocked, so a taken-over account can't empty a day's limit (200,000) in
    /// one minute. (200,000 equalled the daily limit, so the rule never fired
    /// before the limit did.) `None` (only from code) disables the by-sum rule.
    #[serde(default = "default_velocity_max_sum")]
    pub velocity_max_sum: Option<Decimal>,
    /// More than this many distinct new recipients within `fan_out_window_s` → frozen.
    pub fan_out_max_new_recipients: u32,
    pub fan_out_window_s: u32,
    /// Outgoing money that passed without step-up is summed per currency over this
    /// rolling window; an operation that would bring the sum to `challenge_over`
    /// needs step-up too, so splitting a large payment into small ones doesn't
    /// avoid the second factor. Default 24 h.
    #[serde(default = "one_day_s")]
    pub unchallenged_window_s: u32,
}

fn default_velocity_max_sum() -> Option<Decimal> {
    Some(Decimal::new(100_000, 0))
}

fn one_day_s() -> u32 {
    86_400
}

/// Account security: login lockout, one-time codes, step-up challenges, and the
/// login-related fraud rules.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Consecutive failed logins that lock the account.
    pub lockout_failures: u32,
    /// How long a lockout lasts.
    pub lockout_s: u32,
    /// Lifetime of a one-time code (password reset, SMS step-up).
    pub code_ttl_s: u32,
    /// Wrong answers that kill a code or challenge.
    pub code_attempts: u32,
    /// Failed logins within `failed_login_window_s` that raise an alert.
    pub failed_login_burst: u32,
    pub failed_login_window_s: u32,
    /// Alert when a session starts on a device never seen on the account.
    pub new_device_alert: bool,
    /// Logins from two countries less than this apart hold the account for review.
    pub impossible_travel_s: u32,
    /// A withdrawal of at least `quick_withdrawal_ratio` of the money deposited
    /// within `quick_withdrawal_window_s` holds the account for review.
    pub quick_withdrawal_window_s: u32,
    pub quick_withdrawal_ratio: Decimal,
    /// Failed password-reset confirmations per account (across codes) within
    /// `failures_window_s` after which every confirmation is refused, even with
    /// the right code (`429 RATE_LIMITED`), and an alert is raised.
    pub reset_failures_max: u32,
    /// Failed step-up confirmations per account (across challenges) within
    /// `failures_window_s` that freeze the account and raise an alert.
    pub step_up_failures_max: u32,
    pub failures_window_s: u32,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            lockout_failures: 5,
            lockout_s: 15 * 60,
            code_ttl_s: 10 * 60,
            code_attempts: 5,
            failed_login_burst: 10,
            failed_login_window_s: 10 * 60,
            new_device_alert: true,
            impossible_travel_s: 60 * 60,
            quick_withdrawal_window_s: 30 * 60,
            quick_withdrawal_ratio: Decimal::new(8, 1),
            reset_failures_max: 10,
            step_up_failures_max: 10,
            failures_window_s: 86_400,
        }
    }
}

/// A configured currency.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyConfig {
    pub code: String,
    pub scale: u8,
}

/// All policy numbers. `Policy::default()` is the contract's defaults.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub currencies: Vec<CurrencyConfig>,
    pub tier0: TierLimits,
    pub tier1: TierLimits,
    pub deposit_fees: DepositFees,
    pub withdrawal_fees: WithdrawalFees,
    pub transfer_fee: FeeRule,
    pub fraud: FraudPolicy,
    pub security: SecurityPolicy,
    /// How long a client idempotency key is remembered (at least 24 h).
    pub idempotency_retention_s: u32,
    /// How long a destination remembers a credit recorded before credits carried
    /// their debit's position (state format 2 and older). Newer ones are forgotten
    /// only once their source has settled them (the saga's watermark), never by age.
    pub credit_dedupe_retention_s: u32,
    /// How long history rows (the statements of `GET /v1/transactions`) are
    /// kept, counted from the operation's creation: older rows are no longer
    /// read, and are dropped a week at a time (`store::retention`). Default
    /// 2557 days, seven years, the usual keeping period of payment records.
    pub history_retention_days: u32,
}

fn dec(n: i64, scale: u32) -> Decimal {
    Decimal::new(n, scale)
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            currencies: vec![
                CurrencyConfig {
                    code: "CNY".into(),
                    scale: 2,
                },
                CurrencyConfig {
                    code: "USD".into(),
                    scale: 2,
                },
            ],
            tier0: TierLimits {
                single_max: dec(500, 0),
                daily_out_max: dec(1_000, 0),
                withdrawals: false,
                balance_max: None,
            },
            tier1: TierLimits {
                single_max: dec(50_000, 0),
                daily_out_max: dec(200_000, 0),
                withdrawals: true,
                balance_max: None,
            },
            deposit_fees: DepositFees {
                bank_card: FeeRule::FREE,
                credit_card: FeeRule {
                    percent: dec(25, 1),
                    min: Decimal::ZERO,
                },
            },
            withdrawal_fees: WithdrawalFees {
                bank_card: FeeRule {
                    percent: dec(1, 1),
                    min: dec(100, 2),
                },
                third_party: FeeRule {
                    percent: dec(5, 1),
                    min: dec(50, 2),
                },
            },
            transfer_fee: FeeRule::FREE,
            fraud: FraudPolicy {
                challenge_over: dec(1_000, 0),
                velocity_max_ops: 20,
                velocity_window_s: 60,
                velocity_max_sum: default_velocity_max_sum(),
                fan_out_max_new_recipients: 10,
                fan_out_window_s: 600,
                unchallenged_window_s: one_day_s(),
            },
            security: SecurityPolicy::default(),
            idempotency_retention_s: 86_400,
            credit_dedupe_retention_s: 7 * 86_400,
            history_retention_days: 2557,
        }
    }
}

impl Default for TierLimits {
    fn default() -> Self {
        Policy::default().tier0
    }
}

impl Default for DepositFees {
    fn default() -> Self {
        Policy::default().deposit_fees
    }
}

impl Default for WithdrawalFees {
    fn default() -> Self {
        Policy::default().withdrawal_fees
    }
}

impl Default for FraudPolicy {
    fn default() -> Self {
        Policy::default().fraud
    }
}

impl Policy {
    /// The limits of a KYC tier (tiers above 1 use tier 1's).
    pub fn tier(&self, tier: u8) -> &TierLimits {
        if tier == 0 {
            &self.tier0
        } else {
            &self.tier1
        }
    }

    /// Looks a currency up by its code.
    pub fn currency(&self, code: &str) -> Result<Currency, MoneyError> {
        self.currencies
            .iter()
            .find(|c| c.code == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
            .and_then(|c| Currency::new(&c.code, c.scale))
    }

    /// Checks the policy is usable: currencies valid, retention at least 24 h.
    pub fn validate(&self) -> Result<(), String> {
        if self.currencies.is_empty() {
            return Err("at least one currency must be configured".into());
        }
        for c in &self.currencies {
            Currency::new(&c.code, c.scale).map_err(|e| e.to_string())?;
        }
        if self.idempotency_retention_s < 86_400 {
            return Err("idempotency_retention_s must be at least 86400".into());
        }
        if self.history_retention_days < 1 {
            return Err("history_retention_days must be at least 1".into());
        }
        if self.fraud.velocity_window_s == 0
            || self.fraud.fan_out_window_s == 0
            || self.fraud.unchallenged_window_s == 0
            || self.security.failures_window_s == 0
        {
            return Err("fraud windows must be positive".into());
        }
        Ok(())
    }

    /// The instant before which history rows are past retention at `now` (ms).
    pub fn history_cutoff_ms(&self, now: crate::time::Timestamp) -> i64 {
        crate::store::retention::cutoff_ms(now, self.history_retention_days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_retention_is_seven_years_and_at_least_a_day() {
        let policy = Policy::default();
        assert_eq!(policy.history_retention_days, 2557);
        assert_eq!(policy.validate(), Ok(()));
        let none = Policy {
            history_retention_days: 0,
            ..Policy::default()
        };
        assert_eq!(
            none.validate(),
            Err("history_retention_days must be at least 1".to_owned())
        );
        let day = Policy {
            history_retention_days: 1,
            ..Policy::default()
        };
        assert_eq!(day.validate(), Ok(()));
        let now = crate::time::Timestamp(10 * 86_400_000);
        assert_eq!(day.history_cutoff_ms(now), 9 * 86_400_000);
    }
}
