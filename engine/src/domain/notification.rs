//! Notifications: what a user sees change, derived by `apply` from events, numbered
//! with a per-account increasing `seq` and retained in the state so a client can
//! resume a stream after reconnecting. Their JSON is the websocket contract.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::security::KycStatus;
/// What changed in a `security.changed` notification (defined with TOTP).
pub use crate::domain::security::SecurityChange;
use crate::domain::state::AccountStatus;
use crate::ids::{AccountId, OpId, OpKind};
use crate::money::{format_money, Currency};
use crate::time::Timestamp;

/// Which way money moved, seen from the notified account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    In,
    Out,
}

/// The status of a transaction as users see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxStatus {
    Processing,
    Completed,
    Failed,
    Reversed,
}

impl TxStatus {
    pub fn name(self) -> &'static str {
        match self {
            TxStatus::Processing => "processing",
            TxStatus::Completed => "completed",
            TxStatus::Failed => "failed",
            TxStatus::Reversed => "reversed",
        }
    }
}

/// One user-visible change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub seq: u64,
    pub at: Timestamp,
    pub kind: NotificationKind,
}

/// The kinds the engine produces (the gateway adds session, KYC and system ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationKind {
    BalanceUpdated {
        currency: Currency,
        available: Decimal,
        held: Decimal,
    },
    TransactionUpdated {
        id: OpId,
        kind: OpKind,
        status: TxStatus,
        amount: Decimal,
        fee: Decimal,
        currency: Currency,
        direction: Direction,
        counterparty: Option<AccountId>,
    },
    AlertRaised {
        id: OpId,
        rule: FraudRule,
        severity: Severity,
        message: String,
        action: FraudAction,
    },
    StatusChanged {
        from: AccountStatus,
        to: AccountStatus,
        reason: String,
    },
    SessionCreated {
        session: OpId,
        device_id: String,
        country: Option<String>,
        new_device: bool,
    },
    KycUpdated {
        status: KycStatus,
        tier: u8,
        reason: Option<String>,
    },
    /// The password, the second factor or the recovery codes changed.
    SecurityChanged {
        change: SecurityChange,
        totp_enabled: bool,
        recovery_codes_left: u32,
    },
}

impl NotificationKind {
    /// The `type` of the websocket frame.
    pub fn type_name(&self) -> &'static str {
        match self {
            NotificationKind::BalanceUpdated { .. } => "balance.updated",
            NotificationKind::TransactionUpdated { .. } => "transaction.updated",
            NotificationKind::AlertRaised { .. } => "alert.raised",
            NotificationKind::StatusChanged { .. } => "account.status_changed",
            NotificationKind::SessionCreated { .. } => "session.created",
            NotificationKind::KycUpdated { .. } => "kyc.updated",
            NotificationKind::SecurityChanged { .. } => "security.changed",
        }
    }

    /// The `data` of the websocket frame, as API.md specifies it.
    pub fn data_json(&self) -> Value {
        match self {
            NotificationKind::BalanceUpdated {
                currency,
                available,
                held,
            } => json!({
                "currency": currency.code(),
                "available": format_money(*available, *currency),
                "held": format_money(*held, *currency),
            }),
            NotificationKind::TransactionUpdated {
                id,
                kind,
                status,
                amount,
                fee,
                currency,
                direction,
                counterparty,
            } => json!({
                "id": id.display(*kind),
                "type": match kind {
                    OpKind::Deposit => "deposit",
                    OpKind::Withdrawal => "withdrawal",
                    _ => "transfer",
                },
                "status": status.name(),
                "amount": format_money(*amount, *currency),
                "fee": format_money(*fee, *currency),
                "currency": currency.code(),
                "direction": match direction { Direction::In => "in", Direction::Out => "out" },
                "counterparty": counterparty.map(|a| a.to_string()),
            }),
            NotificationKind::AlertRaised {
                id,
                rule,
                severity,
                message,
                action,
            } => json!({
                "id": id.display(OpKind::Alert),
                "rule": rule.name(),
                "severity": severity.name(),
                "message": message,
                "action": action.name(),
            }),
            NotificationKind::StatusChanged { from, to, reason } => json!({
                "from": from.name(),
                "to": to.name(),
                "reason": reason,
            }),
            NotificationKind::SessionCreated {
                session,
                device_id,
                country,
                new_device,
            } => json!({
                "session_id": session.display(OpKind::Session),
                "device_id": device_id,
                "country": country,
                "new_device": new_device,
            }),
            NotificationKind::KycUpdated {
                status,
                tier,
                reason,
            } => json!({
                "status": status.name(),
                "tier": tier,
                "reason": reason,
            }),
            NotificationKind::SecurityChanged {
                change,
                totp_enabled,
                recovery_codes_left,
            } => json!({
                "change": change.name(),
                "message": change.sentence(),
                "totp_enabled": totp_enabled,
                "recovery_codes_left": recovery_codes_left,
            }),
        }
    }
}
