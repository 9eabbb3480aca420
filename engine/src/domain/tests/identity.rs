//! Identity state kept in the account: the password hash from opening, sessions
//! (created, checked by token hash, revoked one by one or all but the caller's,
//! bounded, expired ones compacted away) and contacts (added once, removed).

use super::*;
use crate::domain::command::NewSession;
use crate::domain::state::{MAX_CONTACTS, MAX_SESSIONS};
use crate::domain::{EventBody, Locale};

fn session(byte: u8, expires_at: Timestamp) -> Command {
    Command::CreateSession(NewSession {
        token_hash: [byte; 32],
        device_id: format!("device-{byte}"),
        device_name: Some("phone".into()),
        country: Some("CN".into()),
        expires_at,
    })
}

#[test]
fn opening_keeps_the_password_hash() {
    let mut s = AccountState::new(AccountId(9));
    let open = Command::Open {
        profile: Profile::default(),
        password_hash: "$argon2id$v=19$...".into(),
    };
    run(&Policy::default(), &mut s, &open, T0).unwrap();
    assert_eq!(s.password_hash, "$argon2id$v=19$...");
}

#[test]
fn sessions_are_found_by_number_and_token_hash_until_they_expire() {
    let mut s = opened(1, T0);
    let expires = T0.plus_ms(HOUR_MS);
    let events = run(&Policy::default(), &mut s, &session(7, expires), T0).unwrap();
    let n = events[0].body.minted_op().unwrap();
    assert!(s.session(n, &[7; 32], T0).is_some());
    assert!(s.session(n, &[8; 32], T0).is_none(), "wrong token");
    assert!(s.session(n + 1, &[7; 32], T0).is_none(), "wrong session");
    assert!(s.session(n, &[7; 32], expires).is_none(), "expired");
    s.compact(expires, &Policy::default());
    assert!(s.sessions.is_empty(), "expired sessions are compacted away");
}

#[test]
fn sessions_can_be_revoked_one_by_one_or_all_but_one() {
    let p = Policy::default();
    let mut s = opened(1, T0);
    let exp = T0.plus_ms(DAY_MS);
    let ns: Vec<u64> = (1..=3)
        .map(|b| {
            run(&p, &mut s, &session(b, exp), T0).unwrap()[0]
                .body
                .minted_op()
                .unwrap()
        })
        .collect();
    run(&p, &mut s, &Command::RevokeSession { n: ns[0] }, T0).unwrap();
    assert!(s.session(ns[0], &[1; 32], T0).is_none());
    assert_eq!(
        run(&p, &mut s, &Command::RevokeSession { n: ns[0] }, T0),
        Err(Rejection::UnknownOperation)
    );
    run(
        &p,
        &mut s,
        &Command::RevokeSessions {
            except: Some(ns[2]),
        },
        T0,
    )
    .unwrap();
    assert_eq!(s.sessions.len(), 1);
    assert!(s.session(ns[2], &[3; 32], T0).is_some());
    assert_eq!(
        run(
            &p,
            &mut s,
            &Command::RevokeSessions {
                except: Some(ns[2])
            },
            T0
        ),
        Ok(vec![]),
        "nothing left to revoke"
    );
}

#[test]
fn too_many_sessions_log_the_oldest_out() {
    let p = Policy::default();
    let mut s = opened(1, T0);
    let exp = T0.plus_ms(DAY_MS);
    for b in 0..=MAX_SESSIONS as u8 {
        run(&p, &mut s, &session(b, exp), T0).unwrap();
    }
    assert_eq!(s.sessions.len(), MAX_SESSIONS);
    assert!(
        s.sessions.iter().all(|x| x.token_hash != [0; 32]),
        "the oldest went"
    );
}

#[test]
fn contacts_are_added_once_and_removed() {
    let p = Policy::default();
    let mut s = opened(1, T0);
    let add = Command::AddContact {
        alias: "mom".into(),
        account: AccountId(2),
    };
    let n = run(&p, &mut s, &add, T0).unwrap()[0]
        .body
        .minted_op()
        .unwrap();
    assert_eq!(s.contacts.len(), 1);
    assert_eq!(run(&p, &mut s, &add, T0), Err(Rejection::AlreadyExists));
    let me = Command::AddContact {
        alias: "me".into(),
        account: AccountId(1),
    };
    assert_eq!(run(&p, &mut s, &me, T0), Err(Rejection::SameAccount));
    run(&p, &mut s, &Command::RemoveContact { n }, T0).unwrap();
    assert!(s.contacts.is_empty());
    assert_eq!(
        run(&p, &mut s, &Command::RemoveContact { n }, T0),
        Err(Rejection::UnknownOperation)
    );
}

#[test]
fn contacts_are_bounded() {
    let p = Policy::default();
    let mut s = opened(1, T0);
    for i in 0..MAX_CONTACTS as u64 {
        let add = Command::AddContact {
            alias: format!("c{i}"),
            account: AccountId(1000 + i),
        };
        run(&p, &mut s, &add, T0).unwrap();
    }
    let one_more = Command::AddContact {
        alias: "x".into(),
        account: AccountId(5),
    };
    assert_eq!(
        run(&p, &mut s, &one_more, T0),
        Err(Rejection::LimitExceeded)
    );
}

#[test]
fn the_locale_starts_chinese_changes_once_per_choice_and_replays() {
    let p = Policy::default();
    let mut s = opened(1, T0);
    assert_eq!(s.locale, Locale::ZhCn);
    let set = |locale| Command::SetLocale { locale };
    let events = run(&p, &mut s, &set(Locale::En), T0).unwrap();
    assert_eq!(
        events.iter().map(|e| &e.body).collect::<Vec<_>>(),
        [&EventBody::LocaleSet { locale: Locale::En }]
    );
    assert_eq!(s.locale, Locale::En);
    // The same choice again changes nothing.
    assert_eq!(run(&p, &mut s, &set(Locale::En), T0).unwrap(), []);
    // Replaying the events from a fresh state gives the same locale.
    let mut replayed = opened(1, T0);
    for e in &events {
        crate::domain::apply(&mut replayed, e);
    }
    assert_eq!(replayed.locale, Locale::En);
    // No account, no locale.
    let mut none = AccountState::new(AccountId(2));
    assert_eq!(
        run(&p, &mut none, &set(Locale::En), T0),
        Err(Rejection::AccountNotFound)
    );
}
