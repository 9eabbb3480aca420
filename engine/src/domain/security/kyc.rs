//! KYC: the identity submission (personal data encrypted by the gateway) and the
//! operator's review; approval raises the account's tier at once.

use serde::{Deserialize, Serialize};

use crate::domain::event::{Event, EventBody};
use crate::domain::rejection::Rejection;
use crate::domain::security::ev;
use crate::domain::state::AccountState;
use crate::time::Timestamp;

/// The kinds of identity document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdType {
    NationalId,
    Passport,
    DriverLicense,
}

/// Where the identity verification is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KycStatus {
    #[default]
    None,
    Pending,
    Approved,
    Rejected,
}

impl KycStatus {
    pub fn name(self) -> &'static str {
        match self {
            KycStatus::None => "none",
            KycStatus::Pending => "pending",
            KycStatus::Approved => "approved",
            KycStatus::Rejected => "rejected",
        }
    }
}

/// A KYC submission; personal data encrypted by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KycSubmission {
    pub full_name: Vec<u8>,
    pub id_type: IdType,
    pub id_number: Vec<u8>,
    /// The ID number with all but the last 4 characters masked.
    pub id_number_masked: String,
    /// Where the encrypted document images are stored.
    pub documents: Vec<String>,
}

/// The account's KYC record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kyc {
    pub status: KycStatus,
    /// Boxed: most accounts have none (see `Security`).
    pub submission: Option<Box<KycSubmission>>,
    pub reason: Option<String>,
    pub submitted_at: Option<Timestamp>,
}

/// A KYC submission: allowed when none is pending or approved.
pub fn decide_submit_kyc(
    state: &AccountState,
    submission: &KycSubmission,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    match state.kyc.status {
        KycStatus::Pending | KycStatus::Approved => Err(Rejection::AlreadyExists),
        KycStatus::None | KycStatus::Rejected => Ok(vec![ev(
            now,
            EventBody::KycSubmitted {
                submission: submission.clone(),
            },
        )]),
    }
}

/// The operator's review: approval raises the tier at once.
pub fn decide_review_kyc(
    state: &AccountState,
    approve: bool,
    reason: Option<String>,
    now: Timestamp,
) -> Result<Vec<Event>, Rejection> {
    if state.kyc.status != KycStatus::Pending {
        return Err(Rejection::OperationClosed);
    }
    let mut events = Vec::new();
    // The tier first, so the review's `kyc.updated` shows the new tier.
    if approve && state.kyc_tier < 1 {
        events.push(ev(
            now,
            EventBody::KycTierChanged {
                from: state.kyc_tier,
                to: 1,
            },
        ));
    }
    events.push(ev(
        now,
        EventBody::KycReviewed {
            approved: approve,
            reason,
        },
    ));
    Ok(events)
}

pub fn apply_submitted(state: &mut AccountState, at: Timestamp, submission: &KycSubmission) {
    state.kyc = Kyc {
        status: KycStatus::Pending,
        submission: Some(Box::new(submission.clone())),
        reason: None,
        submitted_at: Some(at),
    };
}

pub fn apply_reviewed(state: &mut AccountState, approved: bool, reason: &Option<String>) {
    state.kyc.status = if approved {
        KycStatus::Approved
    } else {
        KycStatus::Rejected
    };
    state.kyc.reason = reason.clone();
}
