//! Fraud rules as pure functions of the account's recent activity and the command.
//!
//! Each rule returns a verdict; `decide` runs them before any outgoing debit and
//! turns the verdict into events (an alert, a freeze) and/or a rejection. Alerts
//! are edge-triggered: a rule raises once when its condition becomes true, and can
//! raise again only after the condition was seen false (a later operation passed).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::domain::state::AccountState;
use crate::domain::window::aged_prefix;
use crate::ids::AccountId;
use crate::money::Amount;
use crate::policy::FraudPolicy;
use crate::time::Timestamp;

/// Which rule fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FraudRule {
    SingleAmount,
    VelocityCount,
    VelocitySum,
    FanOut,
    QuickWithdrawal,
    FailedLoginBurst,
    NewDevice,
    ImpossibleTravel,
    /// Too many wrong password-reset codes for one account (across codes).
    ResetCodeGuessing,
    /// Too many wrong step-up codes for one account (across challenges).
    StepUpCodeGuessing,
    /// A decision would have broken a ledger invariant (fail-stop: frozen).
    LedgerInvariant,
}

impl FraudRule {
    pub fn name(self) -> &'static str {
        match self {
            FraudRule::SingleAmount => "single_amount",
            FraudRule::VelocityCount => "velocity_count",
            FraudRule::VelocitySum => "velocity_sum",
            FraudRule::FanOut => "fan_out",
            FraudRule::QuickWithdrawal => "deposit_then_quick_withdrawal",
            FraudRule::FailedLoginBurst => "failed_login_burst",
            FraudRule::NewDevice => "new_device",
            FraudRule::ImpossibleTravel => "two_countries_too_close",
            FraudRule::ResetCodeGuessing => "reset_code_guessing",
            FraudRule::StepUpCodeGuessing => "step_up_code_guessing",
            FraudRule::LedgerInvariant => "ledger_invariant",
        }
    }
}

/// How serious an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// What a rule's verdict makes the engine do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FraudAction {
    Allow,
    Challenge,
    HoldForReview,
    Block,
    Freeze,
}

impl FraudAction {
    pub fn name(self) -> &'static str {
        match self {
            FraudAction::Allow => "allow",
            FraudAction::Challenge => "challenge",
            FraudAction::HoldForReview => "hold_for_review",
            FraudAction::Block => "block",
            FraudAction::Freeze => "freeze",
        }
    }
}

/// A rule's verdict on one outgoing operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub rule: FraudRule,
    pub action: FraudAction,
    pub severity: Severity,
    pub message: String,
}

/// Velocity by count and by sum: more than `velocity_max_ops` outgoing operations
/// (or more than `velocity_max_sum`) within the window blocks this one.
pub fn velocity(
    policy: &FraudPolicy,
    state: &AccountState,
    amount: Amount,
    now: Timestamp,
) -> Option<Verdict> {
    let window_ms = i64::from(policy.velocity_window_s) * 1000;
    // The marks are in time order: a binary search counts the window in O(log n),
    // however busy the account is.
    let since = now.millis() - window_ms;
    let count = state.outgoing.count_after(since);
    if count >= policy.velocity_max_ops as usize {
        return Some(Verdict {
            rule: FraudRule::VelocityCount,
            action: FraudAction::Block,
            severity: Severity::Medium,
            message: format!(
                "More than {} outgoing operations within {} s.",
                policy.velocity_max_ops, policy.velocity_window_s
            ),
        });
    }
    if let Some(max_sum) = policy.velocity_max_sum {
        if state.outgoing.sum_after((), since) + amount.value() > max_sum {
            return Some(Verdict {
                rule: FraudRule::VelocitySum,
                action: FraudAction::Block,
                severity: Severity::Medium,
                message: format!(
                    "Outgoing operations above {} within {} s.",
                    max_sum, policy.velocity_window_s
                ),
            });
        }
    }
    None
}

/// Fan-out: sending to more than `fan_out_max_new_recipients` distinct new
/// recipients within the window freezes the account (a typical takeover pattern).
pub fn fan_out(
    policy: &FraudPolicy,
    state: &AccountState,
    to: AccountId,
    now: Timestamp,
) -> Option<Verdict> {
    if state.known_recipients.contains(&to) {
        return None;
    }
    let since = now.millis() - i64::from(policy.fan_out_window_s) * 1000;
    let max = policy.fan_out_max_new_recipients as usize;
    let recent_new =
        state.new_recipients.len() - aged_prefix(&state.new_recipients, |r| r.at.millis() <= since);
    if recent_new + 1 > max {
        return Some(Verdict {
            rule: FraudRule::FanOut,
            action: FraudAction::Freeze,
            severity: Severity::High,
            message: format!(
                "Money sent to more than {} new recipients within {} minutes.",
                policy.fan_out_max_new_recipients,
                policy.fan_out_window_s / 60
            ),
        });
    }
    None
}

/// Deposit then quick withdrawal: a withdrawal that takes at least
/// `quick_withdrawal_ratio` of the money deposited within the window (a laundering
/// or stolen-card pattern) holds the account for review. Only the part of the
/// withdrawal that older money can't cover counts as taking fresh money, so an
/// account with savings can deposit and withdraw freely.
pub fn quick_withdrawal(
    policy: &crate::policy::SecurityPolicy,
    state: &AccountState,
    amount: Amount,
    now: Timestamp,
) -> Option<Verdict> {
    let since = now.millis() - i64::from(policy.quick_withdrawal_window_s) * 1000;
    let deposited: Decimal = state
        .recent_deposits
        .iter()
        .rev()
        .take_while(|d| d.at.millis() > since)
        .map(|d| d.amount)
        .sum();
    let older_money = (state.available(amount.currency()) - deposited).max(Decimal::ZERO);
    let fresh_taken = amount.value() - older_money;
    if deposited > Decimal::ZERO && fresh_taken >= deposited * policy.quick_withdrawal_ratio {
        return Some(Verdict {
            rule: FraudRule::QuickWithdrawal,
            action: FraudAction::HoldForReview,
            severity: Severity::High,
            message: format!(
                "A withdrawal of most of the money deposited within {} minutes.",
                policy.quick_withdrawal_window_s / 60
            ),
        });
    }
    None
}

/// Single amount: at or above the step-up threshold the user must confirm with a
/// second factor. Not an alert: a challenge is the normal path for large payments.
pub fn single_amount(policy: &FraudPolicy, amount: Amount, step_up_verified: bool) -> bool {
    !step_up_verified && amount.value() >= policy.challenge_over
}

/// Whether an outgoing `amount` needs step-up: on its own (`single_amount`), or
/// because with the money of the same currency that left without step-up within
/// `unchallenged_window_s` it would reach `challenge_over` (split payments).
pub fn needs_step_up(
    policy: &FraudPolicy,
    state: &AccountState,
    amount: Amount,
    step_up_verified: bool,
    now: Timestamp,
) -> bool {
    if step_up_verified {
        return false;
    }
    if single_amount(policy, amount, false) {
        return true;
    }
    let since = now.millis() - i64::from(policy.unchallenged_window_s) * 1000;
    let sum = state
        .security
        .unchallenged_out
        .sum_after(amount.currency(), since);
    sum + amount.value() >= policy.challenge_over
}
