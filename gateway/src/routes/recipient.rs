//! Who a payment or a contact points at. Users name a recipient the way they know
//! them: an account id (`acc_…`), an email, a phone number, or one of their saved
//! contacts (`contact:ct_…`). Everything is resolved here, once, to an
//! [`AccountId`]; the engine only ever sees account ids, so the idempotency
//! fingerprint compares recipients by account, not by how they were spelled.

use okpay_engine::ids::{AccountId, OpId, OpKind};
use okpay_engine::Rejection;

use crate::error::{rejection, ApiError};
use crate::routes::sessions::account_of_login;
use crate::state::AppState;

/// The error for anything that names no account.
pub fn not_found() -> ApiError {
    rejection(Rejection::RecipientNotFound)
}

/// Whether `account` was opened, so that an id that was never registered is
/// refused before any money moves, instead of being debited and then reversed by
/// the saga. Answered by the set of open accounts (no actor round trip, nothing
/// activated for an unknown id); while that set is incomplete, a miss asks the
/// account's actor (see `open_accounts`).
pub async fn exists(state: &AppState, account: AccountId) -> Result<bool, ApiError> {
    Ok(state.accounts.exists(&state.engine, account).await?)
}

/// Resolves a login (email or phone) or an account id to an existing account.
pub async fn login_or_account(state: &AppState, text: &str) -> Result<AccountId, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::validation(
            "Name the recipient by account id, email or phone.",
        ));
    }
    if text.starts_with("acc_") {
        let id: AccountId = text.parse().map_err(|_| not_found())?;
        return if exists(state, id).await? {
            Ok(id)
        } else {
            Err(not_found())
        };
    }
    account_of_login(state, text).await?.ok_or_else(not_found)
}

/// Resolves a transfer's `to`: a login, an account id, or `contact:<ct_ id>` from
/// `owner`'s contacts.
pub async fn resolve(state: &AppState, owner: AccountId, to: &str) -> Result<AccountId, ApiError> {
    let Some(contact) = to.trim().strip_prefix("contact:") else {
        return login_or_account(state, to).await;
    };
    let id = OpId::parse(contact.trim(), OpKind::Contact).map_err(|_| not_found())?;
    if id.account != owner {
        return Err(not_found());
    }
    state
        .engine
        .read(owner, move |account, _, _| {
            account
                .contacts
                .iter()
                .find(|c| c.n == id.n)
                .map(|c| c.account)
        })
        .await?
        .ok_or_else(not_found)
}
