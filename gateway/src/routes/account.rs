//! Registration (`POST /v1/accounts`), the owner's view of the account
//! (`GET /v1/account`) and the owner's settings (`PATCH /v1/account/profile`:
//! the `locale` of their messages).
//!
//! Registration claims each login (email, phone) in the store's `login` index
//! atomically before the account is opened, so two concurrent registrations of
//! one email cannot both win; claims are released if a later step fails. The
//! claims and the opening run in a task of their own, so a client that goes away
//! mid-request can't leave a claim behind without its account (the login would be
//! taken forever): the task finishes either way, opening the account or releasing
//! its claims.

use actix_web::{get, patch, post, web, HttpResponse};
use okpay_engine::domain::command::Profile;
use okpay_engine::domain::security::KycStatus;
use okpay_engine::domain::state::{AccountState, AccountStatus};
use okpay_engine::domain::view::AccountView;
use okpay_engine::domain::Locale;
use okpay_engine::ids::AccountId;
use okpay_engine::Command;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::routes::extract::money;
use crate::state::AppState;

/// The store index from logins (normalized email, phone) to account ids.
pub const LOGIN_INDEX: &str = "login";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "li.wei@example.com")]
    pub email: String,
    /// E.164, e.g. `+8613800138000`.
    #[schema(example = "+8613800138000")]
    pub phone: Option<String>,
    /// 8–128 characters.
    pub password: String,
    #[schema(example = "Li Wei")]
    pub display_name: String,
    /// The language of the account's emails and SMS: `zh-CN` or `en`; the
    /// server's default (`integrations.locale`, itself `zh-CN` by default) when left out.
    #[schema(example = "zh-CN")]
    pub locale: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KycSummary {
    /// `none`, `pending`, `approved` or `rejected`.
    pub status: String,
    pub tier: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub account_id: String,
    pub status: String,
    pub kyc: KycSummary,
    /// The language of the account's messages (`zh-CN` or `en`).
    pub locale: String,
}

/// Lower-cases and checks an email address.
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let e = email.trim().to_ascii_lowercase();
    // ASCII only: what the OpenAPI pattern says, and what mail systems accept
    // without SMTPUTF8.
    let ok = e.len() <= 254
        && e.bytes().all(|b| b.is_ascii_graphic())
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(e)
    } else {
        Err(ApiError::validation("The email address is not valid."))
    }
}

/// Checks an E.164 phone number (`+` and 8–15 digits).
pub fn normalize_phone(phone: &str) -> Result<String, ApiError> {
    let p: String = phone.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = p.strip_prefix('+').unwrap_or("");
    if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(p)
    } else {
        Err(ApiError::validation(
            "The phone number must be in E.164 form, e.g. +8613800138000.",
        ))
    }
}

/// The normalized login key for an email or a phone as typed at login.
pub fn login_key(login: &str) -> Option<String> {
    if login.contains('@') {
        normalize_email(login).ok()
    } else {
        normalize_phone(login).ok()
    }
}

/// Parses a locale as the API takes it (`zh-CN` or `en`, any case).
pub fn parse_locale(tag: &str) -> Result<Locale, ApiError> {
    Locale::parse(tag).ok_or_else(|| {
        ApiError::validation("The locale must be zh-CN or en.")
            .with_hint("Messages are written in Chinese (zh-CN) or English (en).")
    })
}

/// Checks the password policy: 8–128 characters.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (8..=128).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "The password must have 8 to 128 characters.",
        ))
    }
}

/// Registers a new account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = RegisterRequest,
    responses(
        (status = 201, body = Registered),
        (status = 400, body = Problem, description = "VALIDATION_FAILED"),
        (status = 409, body = Problem, description = "ALREADY_EXISTS"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED / UNAVAILABLE"),
    ))]
#[post("/v1/accounts")]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    let body = body.into_inner();
    let email = normalize_email(&body.email)?;
    let phone = body.phone.as_deref().map(normalize_phone).transpose()?;
    let locale = match body.locale.as_deref() {
        Some(tag) => parse_locale(tag)?,
        // unwrap_or_default: checked at start-up (`build_state`).
        None => state
            .settings
            .integrations
            .default_locale()
            .unwrap_or_default(),
    };
    check_password(&body.password)?;
    let display_name = body.display_name.trim().to_owned();
    if display_name.is_empty() || display_name.chars().count() > 64 {
        return Err(ApiError::validation(
            "The display name must have 1 to 64 characters.",
        ));
    }
    let password_hash = state.passwords.hash(body.password).await?;
    let profile = Profile {
        display_name,
        email: Some(email.clone()),
        phone: phone.clone(),
    };
    // Not cancelled with the request (see the module's doc); this handler only
    // waits for it.
    let task_state = state.clone();
    let (id, locale) = actix_web::rt::spawn(async move {
        claim_and_open(&task_state, email, phone, profile, password_hash, locale).await
    })
    .await
    .map_err(|_| ApiError::unavailable())??;
    tracing::info!(account = %id, "account registered");
    Ok(HttpResponse::Created().json(Registered {
        account_id: id.to_string(),
        status: AccountStatus::Active.name().into(),
        kyc: KycSummary {
            status: "none".into(),
            tier: 0,
            reason: None,
        },
        locale: locale.code().into(),
    }))
}

/// Claims the logins and opens the account, releasing the claims if it can't;
/// then sets its locale. Returns the id and the locale the account has.
///
/// The locale is a second command after the opening (the `Opened` event's
/// stored shape stays as journals hold it). Should it fail, the account exists
/// with the default locale and the answer says so: failing the registration
/// would send the client to register again into `ALREADY_EXISTS`, and the
/// owner can change the locale later.
async fn claim_and_open(
    state: &AppState,
    email: String,
    phone: Option<String>,
    profile: Profile,
    password_hash: String,
    locale: Locale,
) -> ApiResult<(AccountId, Locale)> {
    let id = AccountId::random();
    let store = state.store();
    let value = id.to_string();
    let mut claimed: Vec<String> = Vec::new();
    for login in std::iter::once(&email).chain(phone.as_ref()) {
        match store.claim_index(LOGIN_INDEX, login, &value).await {
            Ok(true) => claimed.push(login.clone()),
            Ok(false) => {
                release(state, &claimed).await;
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    "This email or phone is already registered.",
                )
                .with_hint("Log in instead, or reset your password."));
            }
            Err(_) => {
                release(state, &claimed).await;
                return Err(ApiError::unavailable());
            }
        }
    }
    let open = Command::Open {
        profile,
        password_hash,
    };
    // Into the recipient set before the opening, so that it never lacks an account
    // that exists (even if the opening's answer is lost); the id is unknown to
    // anyone until this request answers.
    state.accounts.insert(id);
    if let Err(e) = state.engine.execute(id, open).await {
        release(state, &claimed).await;
        return Err(e.into());
    }
    if locale == Locale::default() {
        return Ok((id, locale));
    }
    match state
        .engine
        .execute(id, Command::SetLocale { locale })
        .await
    {
        Ok(_) => Ok((id, locale)),
        Err(e) => {
            tracing::warn!(account = %id, error = %e, "locale not set at registration; the default stays");
            Ok((id, Locale::default()))
        }
    }
}

async fn release(state: &AppState, claimed: &[String]) {
    for login in claimed {
        if let Err(e) = state.store().delete_index(LOGIN_INDEX, login).await {
            tracing::warn!(error = %e, "could not release a login claim");
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Limits {
    pub single_max: String,
    pub daily_out_max: String,
    /// Outgoing money today (UTC) in the first configured currency.
    pub daily_out_used: String,
    pub challenge_over: String,
}

#[derive(Serialize, ToSchema)]
pub struct Balance {
    pub currency: String,
    pub available: String,
    pub held: String,
    pub total: String,
}

#[derive(Serialize, ToSchema)]
pub struct AccountResponse {
    pub account_id: String,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `active`, `locked`, `restricted`, `frozen` or `closed`.
    pub status: String,
    /// Why the status is what it is, when it is not `active`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub kyc: KycSummary,
    pub limits: Limits,
    pub balances: Vec<Balance>,
    pub totp_enabled: bool,
    /// The language of the account's emails and SMS: `zh-CN` or `en`.
    #[schema(example = "zh-CN")]
    pub locale: String,
}

/// Shapes the engine's view for the API.
pub fn account_response(
    state: &AppState,
    view: &AccountView,
    kyc: KycSummary,
    totp_enabled: bool,
) -> AccountResponse {
    let policy = state.engine.policy();
    let tier = policy.tier(view.kyc_tier);
    let currencies: Vec<_> = policy
        .currencies
        .iter()
        .filter_map(|c| policy.currency(&c.code).ok())
        .collect();
    let primary = currencies[0];
    let used = view
        .daily_out_used
        .iter()
        .find(|(c, _)| *c == primary)
        .map_or(Decimal::ZERO, |(_, d)| *d);
    let balances = currencies
        .iter()
        .map(|c| {
            let (a, h) = view
                .balances
                .iter()
                .find(|b| b.currency == *c)
                .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.available, b.held));
            Balance {
                currency: c.code().into(),
                available: money(a, *c),
                held: money(h, *c),
                total: money(a + h, *c),
            }
        })
        .collect();
    AccountResponse {
        account_id: view.id.to_string(),
        display_name: view.profile.display_name.clone(),
        email: view.profile.email.clone(),
        phone: view.profile.phone.clone(),
        status: view.status.name().into(),
        status_reason: (view.status != AccountStatus::Active)
            .then(|| view.status_reason.clone())
            .flatten(),
        kyc,
        limits: Limits {
            single_max: money(tier.single_max, primary),
            daily_out_max: money(tier.daily_out_max, primary),
            daily_out_used: money(used, primary),
            challenge_over: money(policy.fraud.challenge_over, primary),
        },
        balances,
        totp_enabled,
        locale: view.locale.code().into(),
    }
}

/// The caller's account: profile, status, KYC, limits and balances.
#[utoipa::path(get, path = "/v1/account", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = AccountResponse), (status = 401, body = Problem, description = "UNAUTHENTICATED")))]
#[get("/v1/account")]
pub async fn get_account(state: web::Data<AppState>, auth: Auth) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(load_account(&state, auth.account).await?))
}

/// What the owner may change about their account; fields left out stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// The language of the account's emails and SMS: `zh-CN` or `en`.
    #[schema(example = "en")]
    pub locale: Option<String>,
}

/// Changes the owner's settings: today the language of their messages. An empty
/// body changes nothing and answers the account as it is.
#[utoipa::path(patch, path = "/v1/account/profile", tag = "accounts", security(("bearer" = [])),
    request_body = ProfileUpdate,
    responses(
        (status = 200, body = AccountResponse, description = "The account, as `GET /v1/account` shows it"),
        (status = 400, body = Problem, description = "VALIDATION_FAILED: unknown locale or unknown field"),
        (status = 401, body = Problem, description = "UNAUTHENTICATED"),
        (status = 503, body = Problem, description = "MAINTENANCE / OVERLOADED"),
    ))]
#[patch("/v1/account/profile")]
pub async fn update_profile(
    state: web::Data<AppState>,
    auth: Auth,
    body: web::Json<ProfileUpdate>,
) -> ApiResult<HttpResponse> {
    state.maintenance.check()?;
    // Parsed before anything changes, so a bad field changes nothing.
    let locale = body.locale.as_deref().map(parse_locale).transpose()?;
    if let Some(locale) = locale {
        state
            .engine
            .execute(auth.account, Command::SetLocale { locale })
            .await?;
        tracing::info!(account = %auth.account, locale = locale.code(), "locale set");
    }
    Ok(HttpResponse::Ok().json(load_account(&state, auth.account).await?))
}

/// Reads what the account view needs inside the account's actor (no copy of the
/// whole state) and shapes it for the API; for the owner and for operators.
pub async fn load_account(state: &AppState, id: AccountId) -> ApiResult<AccountResponse> {
    let (view, kyc, totp_enabled) = state
        .engine
        .read(id, |account, _, now| {
            let totp = account.security.totp.as_ref().is_some_and(|t| t.enabled);
            let view = account.opened.then(|| AccountView::of(account, now));
            (view, kyc_summary(account), totp)
        })
        .await?;
    let view = view.ok_or_else(|| ApiError::not_found("account"))?;
    Ok(account_response(state, &view, kyc, totp_enabled))
}

/// The KYC summary of an account: its review record, or `approved` for an
/// account raised to tier 1 without a submission (operators, dev mode).
pub fn kyc_summary(account: &AccountState) -> KycSummary {
    let status = match account.kyc.status {
        KycStatus::None if account.kyc_tier >= 1 => KycStatus::Approved,
        s => s,
    };
    KycSummary {
        status: status.name().into(),
        tier: account.kyc_tier,
        reason: (status == KycStatus::Rejected)
            .then(|| account.kyc.reason.clone())
            .flatten(),
    }
}

/// An engine error as the API answers it, with the account's own status reason
/// added to `ACCOUNT_FROZEN` / `ACCOUNT_RESTRICTED` (why it is frozen, e.g. by
/// fraud monitoring or an operator), so the user knows what happened and what to
/// do. Costs one read of the account, only on those refusals.
pub async fn explain(
    state: &AppState,
    account: AccountId,
    e: okpay_engine::EngineError,
) -> ApiError {
    use okpay_engine::{EngineError, Rejection};
    let mut api: ApiError = e.clone().into();
    if let EngineError::Rejected(Rejection::AccountFrozen | Rejection::AccountRestricted) = e {
        if let Ok(view) = state.engine.view(account).await {
            if let Some(reason) = view.status_reason {
                api.detail = format!("{} Reason: {reason}", api.detail);
            }
        }
    }
    api
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(register)
        .service(get_account)
        .service(update_profile);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_phones_are_normalized_or_refused() {
        assert_eq!(
            normalize_email(" Li.Wei@Example.COM ").unwrap(),
            "li.wei@example.com"
        );
        for bad in [
            "",
            "no-at",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_phone("+86 138-0013-8000").unwrap(),
            "+8613800138000"
        );
        for bad in ["13800138000", "+12", "+861380013800000000", "+86abc"] {
            assert!(normalize_phone(bad).is_err(), "{bad}");
        }
        assert_eq!(login_key("A@Example.com").as_deref(), Some("a@example.com"));
    }

    #[test]
    fn password_policy_is_8_to_128_characters() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"x".repeat(128)).is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
    }
}
