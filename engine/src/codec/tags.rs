//! Explicit numeric tags of the domain's unit enums, for the formats this
//! module writes by hand (account state version 4, see `state_v4.rs`, and the
//! events of format 2, see `events.rs`).
//!
//! postcard writes a variant as its position in the enum, so a reordered enum
//! silently changes what stored bytes mean (`enum_order.rs` guards that for the
//! postcard payloads). Here every variant is given its number in a table: the
//! mapping to a tag is an exhaustive `match`, so a new variant fails to compile
//! until it gets a tag, and a duplicated tag is an unreachable pattern (denied
//! by clippy's `-D warnings`). A tag, once written, is never reused for another
//! variant. Tags start at 1 where a 0 is useful as "none" beside them.

use super::CodecError;
use crate::domain::command::{DepositMethod, WithdrawalMethod};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::locale::Locale;
use crate::domain::notification::{Direction, TxStatus};
use crate::domain::rejection::Rejection;
use crate::domain::security::{ChallengeMethod, IdType, KycStatus, SecurityChange};
use crate::domain::state::AccountStatus;
use crate::ids::OpKind;

/// Defines `to(value) -> tag` and `from(tag) -> Result<value>` for a unit enum.
macro_rules! tag_table {
    ($(#[$doc:meta])* $what:literal, $ty:ident, $to:ident, $from:ident {
        $($tag:literal => $variant:ident,)*
    }) => {
        $(#[$doc])*
        pub(crate) fn $to(v: $ty) -> u8 {
            match v {
                $($ty::$variant => $tag,)*
            }
        }

        pub(crate) fn $from(tag: u8) -> Result<$ty, CodecError> {
            match tag {
                $($tag => Ok($ty::$variant),)*
                tag => Err(CodecError::UnknownTag { what: $what, tag }),
            }
        }
    };
}

tag_table!("rejection", Rejection, rejection_tag, rejection_of {
    1 => AccountNotFound,
    2 => AlreadyExists,
    3 => IdempotencyConflict,
    4 => SameAccount,
    5 => AccountClosed,
    6 => AccountFrozen,
    7 => AccountRestricted,
    8 => KycRequired,
    9 => LimitExceeded,
    10 => AmountTooSmall,
    11 => InsufficientFunds,
    12 => VelocityBlocked,
    13 => ChallengeRequired,
    14 => RecipientNotFound,
    15 => RecipientUnavailable,
    16 => AccountNotEmpty,
    17 => AccountLocked,
    18 => ChallengeFailed,
    19 => ChallengeExpired,
    20 => UnknownOperation,
    21 => OperationClosed,
    22 => TooManyAttempts,
    23 => LedgerInvariant,
});

tag_table!("account status", AccountStatus, status_tag, status_of {
    0 => Active,
    1 => Locked,
    2 => Restricted,
    3 => Frozen,
    4 => Closed,
});

tag_table!("locale", Locale, locale_tag, locale_of {
    0 => ZhCn,
    1 => En,
});

tag_table!("operation kind", OpKind, op_kind_tag, op_kind_of {
    0 => Deposit,
    1 => Withdrawal,
    2 => Transfer,
    3 => Alert,
    4 => Session,
    5 => Contact,
    6 => Challenge,
});

tag_table!("transaction status", TxStatus, tx_status_tag, tx_status_of {
    0 => Processing,
    1 => Completed,
    2 => Failed,
    3 => Reversed,
});

tag_table!("direction", Direction, direction_tag, direction_of {
    0 => In,
    1 => Out,
});

tag_table!("deposit method", DepositMethod, deposit_method_tag, deposit_method_of {
    0 => BankCard,
    1 => CreditCard,
});

tag_table!("withdrawal method", WithdrawalMethod, withdrawal_method_tag, withdrawal_method_of {
    0 => BankCard,
    1 => ThirdParty,
});

tag_table!("fraud rule", FraudRule, fraud_rule_tag, fraud_rule_of {
    0 => SingleAmount,
    1 => VelocityCount,
    2 => VelocitySum,
    3 => FanOut,
    4 => QuickWithdrawal,
    5 => FailedLoginBurst,
    6 => NewDevice,
    7 => ImpossibleTravel,
    8 => ResetCodeGuessing,
    9 => StepUpCodeGuessing,
    10 => LedgerInvariant,
});

tag_table!("severity", Severity, severity_tag, severity_of {
    0 => Low,
    1 => Medium,
    2 => High,
});

tag_table!("fraud action", FraudAction, fraud_action_tag, fraud_action_of {
    0 => Allow,
    1 => Challenge,
    2 => HoldForReview,
    3 => Block,
    4 => Freeze,
});

tag_table!("KYC status", KycStatus, kyc_status_tag, kyc_status_of {
    0 => None,
    1 => Pending,
    2 => Approved,
    3 => Rejected,
});

tag_table!("security change", SecurityChange, security_change_tag, security_change_of {
    0 => TotpEnabled,
    1 => TotpReplaced,
    2 => TotpRemoved,
    3 => TotpReset,
    4 => RecoveryCodesRegenerated,
    5 => RecoveryCodeUsed,
    6 => PasswordChanged,
});

tag_table!("ID type", IdType, id_type_tag, id_type_of {
    0 => NationalId,
    1 => Passport,
    2 => DriverLicense,
});

tag_table!("challenge method", ChallengeMethod, challenge_method_tag, challenge_method_of {
    0 => Sms,
    1 => Totp,
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tag a table answers reads back as the same variant, and the
    /// numbers are pinned (a changed number fails here as well as in the
    /// state's golden bytes).
    #[test]
    fn tags_round_trip_and_are_pinned() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            to: fn(T) -> u8,
            from: fn(u8) -> Result<T, CodecError>,
            want: &[u8],
        ) {
            let mut got = Vec::new();
            for tag in 0..=u8::MAX {
                if let Ok(v) = from(tag) {
                    assert_eq!(to(v), tag, "{v:?}");
                    got.push(tag);
                }
            }
            assert_eq!(got, want);
        }
        let range = |a: u8, b: u8| (a..=b).collect::<Vec<u8>>();
        check(rejection_tag, rejection_of, &range(1, 23));
        check(status_tag, status_of, &range(0, 4));
        check(locale_tag, locale_of, &range(0, 1));
        check(op_kind_tag, op_kind_of, &range(0, 6));
        check(tx_status_tag, tx_status_of, &range(0, 3));
        check(direction_tag, direction_of, &range(0, 1));
        check(deposit_method_tag, deposit_method_of, &range(0, 1));
        check(withdrawal_method_tag, withdrawal_method_of, &range(0, 1));
        check(fraud_rule_tag, fraud_rule_of, &range(0, 10));
        check(severity_tag, severity_of, &range(0, 2));
        check(fraud_action_tag, fraud_action_of, &range(0, 4));
        check(kyc_status_tag, kyc_status_of, &range(0, 3));
        check(security_change_tag, security_change_of, &range(0, 6));
        check(id_type_tag, id_type_of, &range(0, 2));
        check(challenge_method_tag, challenge_method_of, &range(0, 1));
        assert_eq!(rejection_tag(Rejection::RecipientUnavailable), 15);
        assert_eq!(status_tag(AccountStatus::Closed), 4);
        assert_eq!(op_kind_tag(OpKind::Transfer), 2);
        assert_eq!(fraud_rule_tag(FraudRule::VelocitySum), 2);
    }
}
