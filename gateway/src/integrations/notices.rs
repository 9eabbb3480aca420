//! Notices to account owners (KYC result, account frozen / restricted / active
//! again, a login from a new device, a large withdrawal, a changed password),
//! derived from the engine's durable notifications, so a notice exists exactly
//! when the event that causes it is durable.
//!
//! The engine keeps each account's last notifications, numbered by `seq`, in the
//! account's durable state (written with the event). This module reads them and
//! turns the noticeable ones into deliveries of the durable outbox
//! (`deliveries`), idempotently by `(account, seq)`:
//!
//! 1. the delivery is queued under an id made of the account and the seq
//!    (`dlv_n_<account>_<seq>`; writing it again is a no-op);
//! 2. then `notice_log[<account>:<seq>]` records that the notice was derived; the
//!    delivery worker sends a notice only once its log entry exists;
//! 3. a later pass skips every seq already in the log.
//!
//! A crash before step 2 leaves the seq unlogged: the next pass derives it again
//! into the same id (not a second message). A crash after it changes nothing. So
//! a crash neither loses nor duplicates a notice; sending itself stays at least
//! once (a crash between the relay's acceptance and the queue's removal sends
//! that message again, see `deliveries`).
//!
//! A pass over an account runs when a route that can cause a notice kicks it
//! (`Deliveries::kick`: login, withdrawal, KYC review, password reset), when the
//! operators' stream reports a status change, and over every account at
//! start-up, which picks up whatever a crash left between the engine's
//! acknowledgement and the pass. The start-up pass looks back
//! [`START_UP_LOOKBACK`] (older notifications are not turned into notices after
//! a restart), and the engine retains the last 256 notifications per account, so
//! a pass must come before that many newer ones; both hold for a server that is
//! restarted within the hour.
//!
//! [`Notice::of`] is the one place that decides which notification is a notice,
//! and [`Notice::template`] the one place naming its template (`templates/`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use okpay_engine::domain::notification::{
    Direction, Notification, NotificationKind, SecurityChange, TxStatus,
};
use okpay_engine::domain::security::kyc::KycStatus;
use okpay_engine::domain::state::AccountStatus;
use okpay_engine::domain::Locale;
use okpay_engine::ids::{AccountId, OpKind};
use okpay_engine::money::format_money;
use okpay_engine::policy::Policy;
use okpay_engine::Engine;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::deliveries::Deliveries;
use super::templates;
use crate::notifier::{Notifier, Outbox, OutboxMessage};

/// `<account>:<seq, 20 digits>` → the delivery id: notices derived.
pub const LOG_INDEX: &str = "notice_log";
/// How far back the start-up pass turns notifications into notices.
pub const START_UP_LOOKBACK: Duration = Duration::from_secs(3600);
/// Accounts waiting for a pass; beyond it a kick is dropped (logged): the next
/// kick of that account or the next start-up derives the notice.
pub const KICK_QUEUE: usize = 10_000;
/// Accounts whose last derived seq is remembered (a shortcut only: the log is
/// what counts); the map is cleared when it reaches this size.
const CURSORS_MAX: usize = 100_000;

/// One notice, with the values its template fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    KycApproved,
    KycRejected { reason: String },
    AccountFrozen { reason: String },
    AccountRestricted { reason: String },
    AccountActive { reason: String },
    NewDeviceLogin { device: String, country: String },
    LargeWithdrawal { amount: String, id: String },
    SecurityChanged(SecurityChange),
}

impl Notice {
    /// The notice a notification gives its owner, if any: the one mapping.
    pub fn of(kind: &NotificationKind, policy: &Policy) -> Option<Notice> {
        match kind {
            NotificationKind::KycUpdated { status, reason, .. } => match status {
                KycStatus::Approved => Some(Notice::KycApproved),
                KycStatus::Rejected => Some(Notice::KycRejected {
                    reason: reason.clone().unwrap_or_default(),
                }),
                KycStatus::None | KycStatus::Pending => None,
            },
            NotificationKind::StatusChanged { to, reason, .. } => {
                let reason = reason.clone();
                match to {
                    AccountStatus::Frozen => Some(Notice::AccountFrozen { reason }),
                    AccountStatus::Restricted => Some(Notice::AccountRestricted { reason }),
                    AccountStatus::Active => Some(Notice::AccountActive { reason }),
                    // Closing is the owner's own request or an operator's
                    // decision told in person; the legacy lock is no status.
                    AccountStatus::Closed | AccountStatus::Locked => None,
                }
            }
            NotificationKind::SessionCreated {
                device_id,
                country,
                new_device,
                ..
            } => new_device.then(|| Notice::NewDeviceLogin {
                device: device_id.clone(),
                country: country.clone().unwrap_or_else(|| "?".into()),
            }),
            NotificationKind::TransactionUpdated {
                id,
                kind: OpKind::Withdrawal,
                status: TxStatus::Processing,
                amount,
                currency,
                direction: Direction::Out,
                ..
            } if *amount >= policy.fraud.challenge_over => Some(Notice::LargeWithdrawal {
                amount: format!("{} {}", format_money(*amount, *currency), currency.code()),
                id: id.display(OpKind::Withdrawal),
            }),
            NotificationKind::SecurityChanged { change, .. } => {
                Some(Notice::SecurityChanged(*change))
            }
            NotificationKind::TransactionUpdated { .. }
            | NotificationKind::BalanceUpdated { .. }
            | NotificationKind::AlertRaised { .. } => None,
        }
    }

    /// The template (`templates/<locale>/<name>.txt`) of this notice.
    pub fn template(&self) -> &'static str {
        match self {
            Notice::KycApproved => "kyc_approved",
            Notice::KycRejected { .. } => "kyc_rejected",
            Notice::AccountFrozen { .. } => "account_frozen",
            Notice::AccountRestricted { .. } => "account_restricted",
            Notice::AccountActive { .. } => "account_active",
            Notice::NewDeviceLogin { .. } => "new_device_login",
            Notice::LargeWithdrawal { .. } => "large_withdrawal",
            Notice::SecurityChanged(SecurityChange::PasswordChanged) => "password_changed",
            Notice::SecurityChanged(_) => "security_changed",
        }
    }

    /// The values the template fills in (`{name}`), in `locale` where they are
    /// words of ours (reasons are the operator's own words, kept as written).
    pub fn vars(&self, locale: Locale) -> Vec<(&'static str, String)> {
        match self {
            Notice::KycApproved | Notice::SecurityChanged(SecurityChange::PasswordChanged) => {
                Vec::new()
            }
            Notice::SecurityChanged(change) => {
                vec![("message", security_sentence(*change, locale).to_owned())]
            }
            Notice::KycRejected { reason }
            | Notice::AccountFrozen { reason }
            | Notice::AccountRestricted { reason }
            | Notice::AccountActive { reason } => vec![("reason", reason.clone())],
            Notice::NewDeviceLogin { device, country } => {
                vec![("device", device.clone()), ("country", country.clone())]
            }
            Notice::LargeWithdrawal { amount, id } => {
                vec![("amount", amount.clone()), ("id", id.clone())]
            }
        }
    }
}

/// What changed, in the owner's language, for the `security_changed` template.
fn security_sentence(change: SecurityChange, locale: Locale) -> &'static str {
    match locale {
        Locale::En => change.sentence(),
        Locale::ZhCn => match change {
            SecurityChange::TotpEnabled => "您的账户已设置身份验证器应用。",
            SecurityChange::TotpReplaced => "您账户的身份验证器应用已更换为新的应用。",
            SecurityChange::TotpRemoved => "您账户的身份验证器应用已被移除。",
            SecurityChange::TotpReset => "客服已应您的请求重置了您账户的身份验证器应用。",
            SecurityChange::RecoveryCodesRegenerated => {
                "您的账户已生成新的恢复码，旧的恢复码已失效。"
            }
            SecurityChange::RecoveryCodeUsed => "您账户的一个恢复码已被使用。",
            SecurityChange::PasswordChanged => "您账户的密码已修改。",
        },
    }
}

/// Whether the login notified at `seq` was the account's first, from the
/// notifications before it: an earlier login means other devices were known
/// then (the engine forgets none until it has more than it keeps); none, in a
/// history that starts at seq 1, means it was the first. `None` when the
/// retained notifications (the last [`NOTIFICATIONS_RETAINED`]) no longer start
/// at seq 1 and hold no earlier login.
///
/// Never from the devices known now: a pass runs some time after the login it
/// derives (after a kick, at start-up), and a second device's login in between
/// would make the first device look like news, mailing the owner about the
/// device they registered on.
///
/// [`NOTIFICATIONS_RETAINED`]: okpay_engine::domain::state::NOTIFICATIONS_RETAINED
pub fn first_login(notifications: &VecDeque<Notification>, seq: u64) -> Option<bool> {
    let earlier_login = notifications
        .iter()
        .any(|n| n.seq < seq && matches!(n.kind, NotificationKind::SessionCreated { .. }));
    if earlier_login {
        return Some(false);
    }
    notifications
        .front()
        .is_some_and(|n| n.seq == 1)
        .then_some(true)
}

/// The delivery id of `account`'s notification `seq`.
pub fn delivery_id(account: AccountId, seq: u64) -> String {
    format!("dlv_n_{account}_{seq:020}")
}

/// The log key of a notice delivery id (`None` for other deliveries).
pub fn log_key_of(delivery_id: &str) -> Option<String> {
    let rest = delivery_id.strip_prefix("dlv_n_")?;
    let (account, seq) = rest.rsplit_once('_')?;
    Some(format!("{account}:{seq}"))
}

/// Derives notices; see the module doc.
pub struct Notices {
    engine: Engine,
    deliveries: Arc<Deliveries>,
    /// In `--dev`, notices are also kept here (readable by admins), as codes are.
    dev_outbox: Option<Arc<Outbox>>,
    /// The last seq derived per account (a shortcut; see [`CURSORS_MAX`]).
    cursors: Mutex<HashMap<AccountId, u64>>,
}

impl Notices {
    pub fn new(
        engine: Engine,
        deliveries: Arc<Deliveries>,
        dev_outbox: Option<Arc<Outbox>>,
    ) -> Arc<Notices> {
        Arc::new(Notices {
            engine,
            deliveries,
            dev_outbox,
            cursors: Mutex::new(HashMap::new()),
        })
    }

    /// Runs until the kick channel closes: first (with `start_up`) a pass over
    /// every account, then one per kick. Several nodes starting together make
    /// the start-up pass once between them (`crate::jobs`; a second would
    /// derive nothing new: notices are idempotent by `(account, seq)`).
    pub async fn run(self: Arc<Self>, mut kicks: mpsc::Receiver<AccountId>, start_up: bool) {
        let horizon = self.engine.clock().now().millis()
            - i64::try_from(START_UP_LOOKBACK.as_millis()).unwrap_or(i64::MAX);
        let shards = if start_up {
            self.engine.layout().all().collect()
        } else {
            Vec::new()
        };
        for shard in shards {
            let accounts = match self.engine.accounts_in_shard(shard).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "notice start-up pass stopped early");
                    break;
                }
            };
            for account in &accounts {
                self.pass(*account, Some(horizon)).await;
            }
        }
        while let Some(account) = kicks.recv().await {
            self.pass(account, None).await;
        }
    }

    /// Derives the notices of `account`'s notifications not yet derived (only
    /// those at or after `horizon`, in Unix ms, when given).
    pub async fn pass(&self, account: AccountId, horizon: Option<i64>) {
        let after = self.cursors.lock().get(&account).copied().unwrap_or(0);
        let read = self
            .engine
            .read(account, move |s, policy, _| {
                // (notification, notice, whether it is sent): the first device an
                // account ever uses is no news to its owner (the rule of the
                // new-device alert); such a notice is logged as skipped, so a later
                // pass, when more devices are known, does not send it either.
                let notices: Vec<(Notification, Notice, bool)> = s
                    .notifications_after(after)
                    .filter_map(|n| Notice::of(&n.kind, policy).map(|notice| (n.clone(), notice)))
                    .map(|(n, notice)| {
                        let send = match &notice {
                            Notice::NewDeviceLogin { device, .. } => {
                                match first_login(&s.notifications, n.seq) {
                                    Some(first) => !first,
                                    // Only when the retained notifications no
                                    // longer reach back that far (see the fn).
                                    None => s.security.known_devices.iter().any(|d| d != device),
                                }
                            }
                            _ => true,
                        };
                        (n, notice, send)
                    })
                    .collect();
                let last = s.notifications.back().map_or(after, |n| n.seq);
                let destination = s
                    .profile
                    .email
                    .clone()
                    .map(|e| (e, "email"))
                    .or_else(|| s.profile.phone.clone().map(|p| (p, "sms")));
                (notices, last, destination, s.locale)
            })
            .await;
        let (notices, last, destination, locale) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%account, error = %e, "notices not derived now; the next pass will");
                return;
            }
        };
        let mut done = true;
        for (n, notice, send) in notices {
            if horizon.is_some_and(|h| n.at.millis() < h) {
                continue;
            }
            let to = if send { destination.as_ref() } else { None };
            if let Err(e) = self.derive(account, &n, &notice, to, locale).await {
                tracing::warn!(%account, seq = n.seq, error = %e, "notice not derived now; the next pass will");
                done = false;
                break;
            }
        }
        if done {
            let mut cursors = self.cursors.lock();
            if cursors.len() >= CURSORS_MAX {
                cursors.clear();
            }
            cursors.insert(account, last);
        }
    }

    /// Queues one notice (steps 1 and 2 of the module doc), unless logged. Without
    /// a destination (no address, or a notice not to send) it is only logged.
    async fn derive(
        &self,
        account: AccountId,
        n: &Notification,
        notice: &Notice,
        destination: Option<&(String, &'static str)>,
        locale: Locale,
    ) -> anyhow::Result<()> {
        let store = self.engine.store();
        let key = format!("{account}:{:020}", n.seq);
        if store.get_index(LOG_INDEX, &key).await?.is_some() {
            return Ok(());
        }
        let id = delivery_id(account, n.seq);
        let rendered = templates::render_vars(locale, notice.template(), &notice.vars(locale));
        if let Some((to, channel)) = destination {
            if let Some(outbox) = &self.dev_outbox {
                outbox.send(OutboxMessage {
                    to: to.clone(),
                    channel: (*channel).into(),
                    kind: notice.template().into(),
                    code: None,
                    locale: locale.code().into(),
                    body: rendered.body.clone(),
                    at: crate::clock::now(&self.engine),
                });
            }
            if self.deliveries.delivers(channel) {
                self.deliveries
                    .queue_with_id(
                        &id,
                        channel,
                        to,
                        notice.template(),
                        rendered.subject,
                        rendered.body,
                    )
                    .await?;
            } else if self.dev_outbox.is_none() {
                tracing::warn!(%account, kind = notice.template(), channel, "no adapter for this channel; notice not sent");
            }
        }
        store.claim_index(LOG_INDEX, &key, &id).await?;
        // The worker may have looked at it before it was logged.
        self.deliveries.wake();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(seq: u64, kind: NotificationKind) -> Notification {
        Notification {
            seq,
            at: okpay_engine::time::Timestamp(0),
            kind,
        }
    }

    fn login(seq: u64, device: &str) -> Notification {
        let account: AccountId = "acc_0123456789abcdef".parse().unwrap();
        notification(
            seq,
            NotificationKind::SessionCreated {
                session: okpay_engine::ids::OpId { account, n: seq },
                device_id: device.into(),
                country: None,
                new_device: true,
            },
        )
    }

    #[test]
    fn the_first_login_is_told_by_the_logins_before_it_not_by_later_ones() {
        let kyc = |seq| {
            notification(
                seq,
                NotificationKind::KycUpdated {
                    status: KycStatus::Pending,
                    tier: 0,
                    reason: None,
                },
            )
        };
        // Registered, logged in on a phone, then on a laptop before any pass ran.
        let history: VecDeque<Notification> = [kyc(1), login(2, "phone"), login(3, "laptop")]
            .into_iter()
            .collect();
        assert_eq!(first_login(&history, 2), Some(true));
        assert_eq!(first_login(&history, 3), Some(false));
        // A history that no longer starts at seq 1: a login before this one
        // still says it was not the first; without one it is unknown.
        let trimmed: VecDeque<Notification> = [kyc(40), login(41, "phone"), login(42, "laptop")]
            .into_iter()
            .collect();
        assert_eq!(first_login(&trimmed, 42), Some(false));
        assert_eq!(first_login(&trimmed, 41), None);
    }

    #[test]
    fn the_log_key_is_read_back_from_the_delivery_id() {
        let account: AccountId = "acc_0123456789abcdef".parse().unwrap();
        let id = delivery_id(account, 42);
        assert_eq!(log_key_of(&id).unwrap(), format!("{account}:{:020}", 42));
        assert_eq!(log_key_of("dlv_0001234"), None);
    }

    #[test]
    fn every_notice_has_its_template_in_both_locales() {
        let all = [
            Notice::KycApproved,
            Notice::KycRejected {
                reason: "blurred".into(),
            },
            Notice::AccountFrozen { reason: "r".into() },
            Notice::AccountRestricted { reason: "r".into() },
            Notice::AccountActive { reason: "r".into() },
            Notice::NewDeviceLogin {
                device: "d".into(),
                country: "CN".into(),
            },
            Notice::LargeWithdrawal {
                amount: "1,000.00 CNY".into(),
                id: "wd_1".into(),
            },
            Notice::SecurityChanged(SecurityChange::PasswordChanged),
            Notice::SecurityChanged(SecurityChange::TotpEnabled),
        ];
        for locale in Locale::ALL {
            for notice in &all {
                assert!(
                    templates::has(locale, notice.template()),
                    "{locale:?}/{}",
                    notice.template()
                );
                let vars = notice.vars(locale);
                let r = templates::render_vars(locale, notice.template(), &vars);
                assert!(
                    !r.body.contains('{'),
                    "{locale:?}/{}: {}",
                    notice.template(),
                    r.body
                );
                for (_, v) in vars {
                    assert!(
                        r.body.contains(&v),
                        "{locale:?}/{}: {v} missing",
                        notice.template()
                    );
                }
                // A Chinese notice carries no English sentence of ours.
                if locale == Locale::ZhCn {
                    assert!(
                        !r.body.contains("your account"),
                        "{}: {}",
                        notice.template(),
                        r.body
                    );
                }
            }
        }
    }
}
