//! The population, made through the public API like real users would: register,
//! log in, raise to tier 1 when the run needs it (admin KYC approve), and fund with
//! one bank-card deposit each. The sum credited is what the conservation check
//! compares with at the end.
//!
//! Registration and login hash passwords (argon2, deliberately slow), so they run
//! at bounded concurrency; a 503 `OVERLOADED` is retried a few times with a pause
//! rather than failing the set-up. Every user of a run gets a unique e-mail (it
//! carries the run tag), so runs against the same server never collide.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use indicatif::ProgressBar;

use crate::client::{Api, CallError, User};
use crate::money::format_minor;

/// Attempts per set-up call when the server answers 503 or times out.
const ATTEMPTS: usize = 4;

/// Whether to raise the accounts to tier 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KycMode {
    /// Only when the funding or the largest transfer exceeds tier 0's limits.
    Auto,
    Always,
    Never,
}

/// The run's users, funded.
#[derive(Debug, Clone)]
pub struct Population {
    pub users: Vec<User>,
    /// The sum of the deposits' net amounts (what the accounts were credited).
    pub funded_minor: i64,
    /// Whether the accounts were approved to tier 1.
    pub kyc_approved: bool,
    /// Set-up notes for the report (e.g. the KYC route missing).
    pub notes: Vec<String>,
}

/// Retries `call` on 503 and transport timeouts, with a growing pause.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.status == Some(503) || e.code == "TIMEOUT" => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    // unwrap: the loop ran at least once and every path that continues set `last`.
    Err(last.unwrap())
}

/// Registers and logs in `count` users named after `run_tag`.
async fn sign_up(
    api: &Api,
    count: usize,
    run_tag: &str,
    parallel: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<User>> {
    let results: Vec<anyhow::Result<(usize, User)>> = futures::stream::iter(0..count)
        .map(|i| async move {
            let email = format!("{run_tag}-{i}@loadtest.okpay.test");
            retrying(|| api.register(&email))
                .await
                .with_context(|| format!("registering {email}"))?;
            let user = retrying(|| api.login(&email))
                .await
                .with_context(|| format!("logging in {email}"))?;
            bar.inc(1);
            Ok((i, user))
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let mut users: Vec<Option<User>> = vec![None; count];
    for r in results {
        let (i, user) = r?;
        users[i] = Some(user);
    }
    // Every index was filled or an error returned above.
    Ok(users.into_iter().flatten().collect())
}

/// What the set-up makes.
#[derive(Debug, Clone, Copy)]
pub struct SetupPlan {
    pub count: usize,
    /// Deposited into each account.
    pub fund_minor: i64,
    /// The largest transfer the load will send (for the KYC decision).
    pub largest_transfer_minor: i64,
    pub kyc: KycMode,
    /// Set-up calls in flight at once.
    pub parallel: usize,
}

/// Makes the population: `plan.count` users, each funded with `plan.fund_minor`.
pub async fn populate(
    api: &Api,
    plan: SetupPlan,
    run_tag: &str,
    bar: &ProgressBar,
) -> anyhow::Result<Population> {
    let SetupPlan {
        count,
        fund_minor,
        largest_transfer_minor,
        kyc,
        parallel,
    } = plan;
    bar.set_length(2 * count as u64);
    bar.set_message("registering and logging in");
    let users = sign_up(api, count, run_tag, parallel, bar).await?;
    let mut notes = Vec::new();

    let approve = match kyc {
        KycMode::Always => true,
        KycMode::Never => false,
        KycMode::Auto => {
            // Every account starts at the same tier, so one account's limits are
            // everyone's. Money in an account can be sent on in one day at most up
            // to its daily limit, so funding above it needs tier 1.
            let first = users.first().context("no users")?;
            let limits = api
                .limits(&first.token)
                .await
                .context("reading tier 0 limits from GET /v1/account")?;
            fund_minor > limits.daily_out_max_minor
                || largest_transfer_minor > limits.single_max_minor
        }
    };

    bar.set_message(if approve {
        "KYC approval and deposits"
    } else {
        "deposits"
    });
    let kyc_route_missing = std::sync::atomic::AtomicBool::new(false);
    let funded: Vec<anyhow::Result<i64>> = futures::stream::iter(users.iter().enumerate())
        .map(|(i, user)| {
            let kyc_route_missing = &kyc_route_missing;
            async move {
                if approve && !kyc_route_missing.load(std::sync::atomic::Ordering::Relaxed) {
                    match retrying(|| api.approve_kyc(&user.account_id)).await {
                        Ok(()) => {}
                        Err(e) if e.status == Some(404) => {
                            kyc_route_missing.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("KYC approval of {} (admin token right?)", user.account_id)
                            })
                        }
                    }
                }
                let key = format!("{run_tag}-fund-{i}");
                let net = retrying(|| api.deposit(&user.token, fund_minor, &key))
                    .await
                    .with_context(|| {
                        format!(
                            "depositing {} to {}",
                            format_minor(fund_minor),
                            user.account_id
                        )
                    })?;
                bar.inc(1);
                Ok(net)
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    let mut funded_minor = 0i64;
    for r in funded {
        funded_minor += r?;
    }
    let kyc_approved = approve && !kyc_route_missing.into_inner();
    if approve && !kyc_approved {
        let note = "POST /v1/admin/kyc/{id}/approve answered 404 (route not deployed on this server?): \
                    the accounts stay at tier 0, and transfers beyond its limits will fail with LIMIT_EXCEEDED"
            .to_owned();
        eprintln!("warning: {note}");
        notes.push(note);
    }
    Ok(Population {
        users,
        funded_minor,
        kyc_approved,
        notes,
    })
}
