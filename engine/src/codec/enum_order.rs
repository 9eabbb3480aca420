//! Golden test of the variant order of every enum stored inside records and
//! states. Those bytes are postcard (events in a record of events format 1,
//! which old logs hold and a pinned node still writes; the guarded command
//! of a challenge in format 2; account states of version 3 and the small
//! postcard parts of version 4), which writes a variant as its **position** in the
//! enum: moving, inserting or removing a variant would make an existing log or
//! checkpoint decode as another variant, silently. The frame and checkpoint
//! headers have explicit tags ([`super::RecordKind`]); for the enums inside
//! payloads, this test pins each one's variants in order — it fails on any
//! change, and the fix is to append the new variant at the end (then append
//! its name here), never to reorder.
//!
//! The names are read from serde itself: a deserializer that only records the
//! variant list serde hands to `deserialize_enum`.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The serialized variant names of `T`, in the order their positions encode.
fn variants<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut seen = Capture(None);
    let _ = T::deserialize(&mut seen);
    seen.0.expect("an enum with derived Deserialize")
}

struct Capture(Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("variant list captured")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut Capture {
    type Error = Stop;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(variants);
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[test]
fn stored_enums_keep_their_variant_order() {
    use crate::domain::command::{Command, DepositMethod, WithdrawalMethod};
    use crate::domain::event::EventBody;
    use crate::domain::fraud::{FraudAction, FraudRule, Severity};
    use crate::domain::locale::Locale;
    use crate::domain::notification::{Direction, NotificationKind, TxStatus};
    use crate::domain::rejection::Rejection;
    use crate::domain::security::challenges::{ChallengeMethod, ChallengeProof};
    use crate::domain::security::kyc::{IdType, KycStatus};
    use crate::domain::security::totp::{PassedProof, SecurityChange};
    use crate::domain::state::{AccountStatus, OpRecord, TransferStatus, WithdrawalStatus};
    use crate::domain::view::Outcome;
    use crate::ids::OpKind;
    let all: Vec<(&str, &[&str])> = vec![
        ("EventBody", variants::<EventBody>()),
        ("Command", variants::<Command>()),
        ("Outcome", variants::<Outcome>()),
        ("NotificationKind", variants::<NotificationKind>()),
        ("OpRecord", variants::<OpRecord>()),
        ("AccountStatus", variants::<AccountStatus>()),
        ("WithdrawalStatus", variants::<WithdrawalStatus>()),
        ("TransferStatus", variants::<TransferStatus>()),
        ("DepositMethod", variants::<DepositMethod>()),
        ("WithdrawalMethod", variants::<WithdrawalMethod>()),
        ("Direction", variants::<Direction>()),
        ("TxStatus", variants::<TxStatus>()),
        ("Rejection", variants::<Rejection>()),
        ("FraudRule", variants::<FraudRule>()),
        ("Severity", variants::<Severity>()),
        ("FraudAction", variants::<FraudAction>()),
        ("Locale", variants::<Locale>()),
        ("IdType", variants::<IdType>()),
        ("KycStatus", variants::<KycStatus>()),
        ("PassedProof", variants::<PassedProof>()),
        ("SecurityChange", variants::<SecurityChange>()),
        ("ChallengeMethod", variants::<ChallengeMethod>()),
        ("ChallengeProof", variants::<ChallengeProof>()),
        ("OpKind", variants::<OpKind>()),
    ];
    let got: Vec<String> = all
        .iter()
        .map(|(n, v)| format!("{n}: {}", v.join(" ")))
        .collect();
    let want: Vec<String> = GOLDEN.lines().map(str::to_owned).collect();
    assert_eq!(
        got, want,
        "a stored enum's variants moved: append new variants at the end"
    );
}

/// Every stored enum's variants, in position order, as of the current format.
const GOLDEN: &str = "\
EventBody: Opened Deposited WithdrawalRequested WithdrawalSettled WithdrawalFailed TransferDebited TransferCredited TransferCompleted TransferReversed StatusChanged KycTierChanged AlertRaised SessionCreated LoginFailed ResetStarted ResetAttemptFailed PasswordChanged TotpBegun TotpEnabled ChallengeCreated ChallengeAttemptFailed ChallengeConsumed KycSubmitted KycReviewed SessionRevoked SessionsRevoked ContactAdded ContactRemoved Refused SecurityCodeSent SecurityProofFailed SecurityProofPassed TotpActivated TotpRemoved RecoveryCodesRegenerated LocaleSet CreditAccepted CreditRefused\n\
Command: Open Deposit Withdraw SettleWithdrawal FailWithdrawal Transfer Credit CompleteTransfer ReverseTransfer SetStatus SetKycTier CreateSession RevokeSession RevokeSessions AddContact RemoveContact LoginFailed StartPasswordReset ConfirmPasswordReset BeginTotp ConfirmTotp CreateChallenge ConfirmChallenge SubmitKyc ReviewKyc CheckResetCode RequestSecurityCode RemoveTotp RegenerateRecoveryCodes ResetTotp SetLocale\n\
Outcome: Opened Deposit Withdrawal Transfer Credited Created Done\n\
NotificationKind: BalanceUpdated TransactionUpdated AlertRaised StatusChanged SessionCreated KycUpdated SecurityChanged\n\
OpRecord: Deposit Withdrawal Transfer\n\
AccountStatus: Active Locked Restricted Frozen Closed\n\
WithdrawalStatus: Processing Completed Failed\n\
TransferStatus: InFlight Completed Reversed\n\
DepositMethod: BankCard CreditCard\n\
WithdrawalMethod: BankCard ThirdParty\n\
Direction: In Out\n\
TxStatus: Processing Completed Failed Reversed\n\
Rejection: AccountNotFound AlreadyExists IdempotencyConflict SameAccount AccountClosed AccountFrozen AccountRestricted KycRequired LimitExceeded AmountTooSmall InsufficientFunds VelocityBlocked ChallengeRequired RecipientNotFound RecipientUnavailable AccountNotEmpty AccountLocked ChallengeFailed ChallengeExpired UnknownOperation OperationClosed TooManyAttempts LedgerInvariant\n\
FraudRule: SingleAmount VelocityCount VelocitySum FanOut QuickWithdrawal FailedLoginBurst NewDevice ImpossibleTravel ResetCodeGuessing StepUpCodeGuessing LedgerInvariant\n\
Severity: Low Medium High\n\
FraudAction: Allow Challenge HoldForReview Block Freeze\n\
Locale: ZhCn En\n\
IdType: NationalId Passport DriverLicense\n\
KycStatus: None Pending Approved Rejected\n\
PassedProof: Code TotpStep Recovery\n\
SecurityChange: TotpEnabled TotpReplaced TotpRemoved TotpReset RecoveryCodesRegenerated RecoveryCodeUsed PasswordChanged\n\
ChallengeMethod: Sms Totp\n\
ChallengeProof: Code TotpStep Wrong Recovery\n\
OpKind: Deposit Withdrawal Transfer Alert Session Contact Challenge";
