//! Tests of events format 2: every variant round-trips, the bytes of a
//! transfer's records are pinned (golden), amounts are stored as minor units,
//! bad bytes are refused without a panic, and format 1 still reads.

use rust_decimal::Decimal;

use super::*;
use crate::domain::command::{Command, DepositMethod, WithdrawalMethod};
use crate::domain::destination::{PayoutDestination, SealedDestination};
use crate::domain::fraud::{FraudAction, FraudRule, Severity};
use crate::domain::locale::Locale;
use crate::domain::rejection::Rejection;
use crate::domain::security::{ChallengeMethod, IdType};
use crate::domain::state::AccountStatus;
use crate::money::{Amount, Currency};

const AT: Timestamp = Timestamp(1_764_460_800_000); // 2025-11-30T00:00:00Z

fn cny() -> Currency {
    Currency::new("CNY", 2).unwrap()
}

fn amount(cents: i64) -> Amount {
    Amount::new(Decimal::new(cents, 2), cny()).unwrap()
}

fn request(key: &str) -> RequestRef {
    RequestRef {
        key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: 0x0102_0304_0506_0708,
    }
}

fn code() -> PendingCode {
    PendingCode {
        code_hash: [7; 32],
        expires_at: AT.plus_ms(600_000),
        attempts_left: 5,
    }
}

const ME: AccountId = AccountId(0x1111_2222_3333_4444);
const YOU: AccountId = AccountId(0x5555_6666_7777_8888);

/// One event of every variant (the test below checks that none is missing).
fn every_body() -> Vec<EventBody> {
    vec![
        EventBody::Opened {
            profile: Profile {
                display_name: "Li Wei".into(),
                email: Some("li@example.com".into()),
                phone: None,
            },
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        },
        EventBody::Deposited {
            op: 2,
            request: request("dep-1"),
            amount: amount(10_000),
            fee: Decimal::new(150, 2),
            method: DepositMethod::CreditCard,
            card: "**** 1234".into(),
        },
        EventBody::WithdrawalRequested {
            op: 3,
            request: request("wd-1"),
            amount: amount(2_500),
            fee: Decimal::new(25, 3), // finer than the currency: stored exactly
            method: WithdrawalMethod::ThirdParty,
            destination: PayoutDestination::Sealed(Box::new(SealedDestination {
                masked: "alipay:****@example.com".into(),
                fingerprint: [9; 16],
                sealed: vec![1, 2, 3, 4, 5],
            })),
        },
        EventBody::WithdrawalRequested {
            op: 4,
            request: request("wd-2"),
            amount: amount(1),
            fee: Decimal::ZERO,
            method: WithdrawalMethod::BankCard,
            destination: PayoutDestination::Clear("6222 0000 1111 2222".into()),
        },
        EventBody::WithdrawalSettled { op: 3 },
        EventBody::WithdrawalFailed {
            op: 4,
            reason: "card closed".into(),
        },
        EventBody::TransferDebited {
            op: 5,
            request: request("tx-1"),
            to: YOU,
            amount: amount(1_250),
            fee: Decimal::new(0, 2),
            memo: Some("lunch 🍜".into()),
            new_recipient: true,
        },
        EventBody::TransferCredited {
            transfer: OpId { account: YOU, n: 9 },
            from: YOU,
            amount: amount(1),
            memo: None,
        },
        EventBody::TransferCompleted { op: 5 },
        EventBody::TransferReversed {
            op: 5,
            reason: Rejection::RecipientUnavailable,
        },
        EventBody::StatusChanged {
            from: AccountStatus::Active,
            to: AccountStatus::Frozen,
            reason: "operator".into(),
        },
        EventBody::KycTierChanged { from: 0, to: 2 },
        EventBody::AlertRaised {
            op: 6,
            rule: FraudRule::FanOut,
            severity: Severity::High,
            action: FraudAction::Freeze,
            message: "12 new recipients in 10 minutes".into(),
        },
        EventBody::SessionCreated {
            op: 7,
            session: NewSession {
                token_hash: [3; 32],
                device_id: "dev-1".into(),
                device_name: Some("Pixel".into()),
                country: Some("CN".into()),
                expires_at: AT.plus_ms(30 * 86_400_000),
            },
            new_device: true,
        },
        EventBody::LoginFailed { locked_until: None },
        EventBody::LoginFailed {
            locked_until: Some(AT.plus_ms(900_000)),
        },
        EventBody::ResetStarted { code: code() },
        EventBody::ResetAttemptFailed,
        EventBody::PasswordChanged {
            password_hash: "$argon2id$new".into(),
        },
        EventBody::TotpBegun {
            secret: vec![0xde, 0xad, 0xbe, 0xef],
        },
        EventBody::TotpEnabled { step: 58_815_360 },
        EventBody::ChallengeCreated {
            challenge: Challenge {
                n: 8,
                key: IdempotencyKey::parse("tx-2").unwrap(),
                fingerprint: u64::MAX,
                command: Command::Transfer {
                    key: IdempotencyKey::parse("tx-2").unwrap(),
                    to: YOU,
                    amount: amount(900_000),
                    memo: None,
                    step_up_verified: false,
                },
                method: ChallengeMethod::Totp,
                code_hash: Some([4; 32]),
                created_at: AT,
                expires_at: AT.plus_ms(300_000),
                attempts_left: 3,
                consumed: false,
            },
        },
        EventBody::ChallengeAttemptFailed { n: 8 },
        EventBody::ChallengeConsumed {
            n: 8,
            totp_step: Some(58_815_361),
        },
        EventBody::ChallengeConsumed {
            n: 8,
            totp_step: None,
        },
        EventBody::KycSubmitted {
            submission: KycSubmission {
                full_name: vec![1, 2, 3],
                id_type: IdType::Passport,
                id_number: vec![4, 5, 6],
                id_number_masked: "*****1234".into(),
                documents: vec!["kyc/a.jpg".into(), "kyc/b.jpg".into()],
            },
        },
        EventBody::KycReviewed {
            approved: false,
            reason: Some("blurry".into()),
        },
        EventBody::SessionRevoked { n: 7 },
        EventBody::SessionsRevoked { except: Some(7) },
        EventBody::SessionsRevoked { except: None },
        EventBody::ContactAdded {
            op: 10,
            alias: "Mum".into(),
            account: YOU,
        },
        EventBody::ContactRemoved { n: 10 },
        EventBody::Refused {
            rejection: Rejection::AccountFrozen,
        },
        EventBody::SecurityCodeSent { code: code() },
        EventBody::SecurityProofFailed,
        EventBody::SecurityProofPassed {
            proof: PassedProof::Code,
        },
        EventBody::SecurityProofPassed {
            proof: PassedProof::TotpStep(58_815_362),
        },
        EventBody::SecurityProofPassed {
            proof: PassedProof::Recovery([5; 32]),
        },
        EventBody::TotpActivated {
            step: 58_815_363,
            recovery: vec![[1; 32], [2; 32]],
        },
        EventBody::TotpRemoved {
            by_operator: true,
            reason: None,
        },
        EventBody::RecoveryCodesRegenerated {
            hashes: vec![[6; 32]],
        },
        EventBody::LocaleSet { locale: Locale::En },
        EventBody::CreditAccepted {
            transfer: OpId {
                account: YOU,
                n: 11,
            },
            from: YOU,
            amount: amount(98_765_432_100),
            memo: Some("rent".into()),
            debit_lsn: 123_456_789,
        },
        EventBody::CreditRefused {
            transfer: OpId {
                account: YOU,
                n: 12,
            },
            from: YOU,
            reason: Rejection::AccountClosed,
            debit_lsn: 0,
        },
    ]
}

fn events(bodies: Vec<EventBody>) -> Vec<Event> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            // Times going back as well as forward (deltas are signed).
            at: AT.plus_ms(if i % 3 == 2 {
                -(i as i64)
            } else {
                17 * i as i64
            }),
            body,
        })
        .collect()
}

#[test]
fn every_variant_round_trips_alone_and_together() {
    let all = events(every_body());
    for e in &all {
        let one = std::slice::from_ref(e);
        assert_eq!(decode(&encode(one)).unwrap(), one, "{e:?}");
    }
    assert_eq!(decode(&encode(&all)).unwrap(), all);
    assert_eq!(decode(&encode(&[])).unwrap(), Vec::<Event>::new());
}

#[test]
fn every_variant_has_its_own_tag() {
    // The byte after a one-event payload's count and time is the tag.
    let mut tags: Vec<u8> = every_body()
        .into_iter()
        .map(|body| {
            let bytes = encode(&[Event {
                at: Timestamp(0),
                body,
            }]);
            assert_eq!(&bytes[..2], &[1, 0], "count 1, time 0");
            bytes[2]
        })
        .collect();
    tags.dedup();
    tags.sort_unstable();
    tags.dedup();
    // 38 variants, tags 1..=38: a variant missing from `every_body` (or a new
    // one without a sample) fails here.
    assert_eq!(tags, (1..=38).collect::<Vec<u8>>());
}

/// The three records of a local transfer, pinned byte for byte: a change to
/// the layout fails here, and must be a new format instead.
#[test]
fn a_transfers_records_are_golden() {
    let debit = vec![Event {
        at: AT,
        body: EventBody::TransferDebited {
            op: 5,
            request: request("tx-1"),
            to: YOU,
            amount: amount(1_250),
            fee: Decimal::new(0, 2),
            memo: Some("lunch".into()),
            new_recipient: true,
        },
    }];
    let credit = vec![Event {
        at: AT.plus_ms(2),
        body: EventBody::CreditAccepted {
            transfer: OpId { account: ME, n: 5 },
            from: ME,
            amount: amount(1_250),
            memo: Some("lunch".into()),
            debit_lsn: 300,
        },
    }];
    let done = vec![Event {
        at: AT.plus_ms(3),
        body: EventBody::TransferCompleted { op: 5 },
    }];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let debit_bytes = encode(&debit);
    assert_eq!(
        hex(&debit_bytes),
        concat!(
            "01",               // one event
            "80a0f9a0da66",     // at: zigzag ms since 0
            "06",               // TransferDebited
            "05",               // op 5
            "0474782d31",       // key "tx-1"
            "0807060504030201", // fingerprint u64 LE
            "00",               // to: account index 0, new...
            "8888777766665555", // ...its id u64 LE
            "00",
            "434e5902",       // currency index 0, new: "CNY", scale 2
            "904e",           // amount: varint of zigzag(1250) << 2 = 10000: minor units
            "00",             // fee 0.00 at the implied scale
            "01056c756e6368", // memo Some("lunch")
            "01",             // new recipient
        )
    );
    let credit_bytes = encode(&credit);
    assert_eq!(
        hex(&credit_bytes),
        concat!(
            "01",
            "84a0f9a0da66", // at + 2 ms
            "25",           // CreditAccepted (37)
            "00",
            "4444333322221111", // transfer: account (new), n 5
            "05",
            "00", // from: the same account, by index
            "00",
            "434e5902",
            "904e", // 12.50 as 1250 minor units
            "01056c756e6368",
            "ac02", // debit lsn 300
        )
    );
    assert_eq!(hex(&encode(&done)), "0186a0f9a0da660805");
    for (bytes, want) in [(&debit_bytes, &debit), (&credit_bytes, &credit)] {
        assert_eq!(&decode(bytes).unwrap(), want);
    }
    // And smaller than format 1 (postcard, decimals as strings).
    let v1: usize = [&debit, &credit, &done]
        .iter()
        .map(|e| crate::domain::event::encode_events(e).len())
        .sum();
    let v2 = debit_bytes.len() + credit_bytes.len() + encode(&done).len();
    assert!(v2 < v1, "format 2: {v2} bytes, format 1: {v1}");
}

#[test]
fn both_formats_decode_through_the_record_kind() {
    let all = events(every_body());
    for format in [EventsFormat::V1, EventsFormat::V2] {
        let (kind, payload) = encode_record(&all, format);
        assert_eq!(kind, format.record_kind());
        assert!(kind.holds_events());
        assert_eq!(decode_record(kind, &payload).unwrap(), Some(all.clone()));
    }
    // The kinds are not interchangeable: each payload read as the other fails.
    let (_, v1) = encode_record(&all, EventsFormat::V1);
    let (_, v2) = encode_record(&all, EventsFormat::V2);
    assert!(decode_record(RecordKind::EventsV2, &v1).is_err());
    assert!(decode_record(RecordKind::Events, &v2).is_err());
    assert_eq!(
        decode_record(RecordKind::CreditWatermark, &[]).unwrap(),
        None
    );
    assert_eq!(EventsFormat::default(), EventsFormat::V2);
    assert_eq!(EventsFormat::from_number(1), Some(EventsFormat::V1));
    assert_eq!(EventsFormat::from_number(3), None);
}

#[test]
fn bad_bytes_are_refused_never_a_panic() {
    let all = encode(&events(every_body()));
    // Every truncation fails (a prefix is never a whole payload: the count
    // promises more events).
    for len in 0..all.len() {
        assert!(decode(&all[..len]).is_err(), "prefix of {len} bytes");
    }
    // A trailing byte.
    let mut longer = all.clone();
    longer.push(0);
    assert!(decode(&longer).is_err());
    // An unknown event tag.
    assert_eq!(
        decode(&[1, 0, 39]),
        Err(CodecError::UnknownTag {
            what: "event",
            tag: 39
        })
    );
    // An unknown rejection inside a known event.
    assert!(matches!(
        decode(&[1, 0, REFUSED, 200]),
        Err(CodecError::UnknownTag { .. })
    ));
    // A count far beyond the bytes allocates nothing and fails.
    assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    // Every single flipped bit either fails or decodes to something else
    // without a panic.
    for i in 0..all.len() {
        for bit in 0..8 {
            let mut b = all.clone();
            b[i] ^= 1 << bit;
            let _ = decode(&b);
        }
    }
}

#[test]
fn accounts_past_the_scanned_few_keep_their_indexes() {
    // 12 accounts, each named twice: the writer looks the first 8 up by a
    // scan and the rest by id; every repeat is a one-byte index either way.
    let contacts = |round: u64| {
        (0..12u64).map(move |i| EventBody::ContactAdded {
            op: round * 100 + i,
            alias: String::new(),
            account: AccountId(0x1000 + i),
        })
    };
    let all = events(contacts(0).chain(contacts(1)).collect());
    let bytes = encode(&all);
    assert_eq!(decode(&bytes).unwrap(), all);
    // The second round names each account by a one-byte index where the
    // first wrote its 8-byte id too.
    let first = encode(&all[..12]).len();
    let second = bytes.len() - first;
    assert!(
        first >= second + 12 * 7,
        "first round {first} B, second {second} B"
    );
}
