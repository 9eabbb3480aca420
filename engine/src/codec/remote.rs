//! The bytes of requests between nodes (cluster mode): what a node puts in a
//! shard's inbox stream for that shard's owner, and the reply the owner pushes
//! to the asking node's reply list (see `runtime::remote`).
//!
//! A request: `[version u8][id u64][reply_to: u32 len + bytes][tag u8][body]`;
//! a reply: `[version u8][id u64][ok u8][tag u8 + body | error]`. Tags are
//! explicit numbers (never positional, never reused); bodies are postcard of
//! the engine's own serde types, as event records are. A reader refuses a
//! version or tag it does not know. Nothing here is kept long: an inbox entry
//! lives until its owner answered it, a reply until its asker read it; still,
//! nodes of two builds meet during a rolling upgrade, hence the version.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{Reader, Writer};
use super::{CodecError, ShardId};
use crate::domain::view::{AuditShare, Outcome};
use crate::domain::Command;
use crate::ids::AccountId;
use crate::runtime::saga::{CreditAnswer, CreditRequest};
use crate::runtime::EngineError;

/// The format version this build writes and reads.
pub const REMOTE_VERSION: u8 = 1;

/// What a node asks a shard's owner.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    /// Run a command (tag 1); answered with [`Answer::Outcome`].
    Execute { account: AccountId, cmd: Command },
    /// The account's state once everything applied to it is durable (tag 2),
    /// encoded as a checkpoint state; the asker runs its read on it.
    State { account: AccountId },
    /// Answered once the account's history rows are written (tag 3).
    Rows { account: AccountId },
    /// The audit shares of the shard's accounts in memory (tag 4).
    Audit { shard: ShardId },
    /// Saga messages of one durable batch for this shard (tag 6; tag 5, still
    /// read, carried requests without their debit positions); no reply.
    Saga {
        credits: Vec<CreditRequest>,
        answers: Vec<CreditAnswer>,
    },
}

/// A request with its id and the node to answer (empty: no answer).
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    pub id: u64,
    pub reply_to: String,
    pub request: Request,
}

/// What the owner answers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    Outcome(Outcome),
    State(Vec<u8>),
    Done,
    Audit(Vec<AuditShare>, Vec<AccountId>),
}

/// A reply to request `id`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Reply {
    pub id: u64,
    pub result: Result<Answer, EngineError>,
}

fn body<T: Serialize>(w: &mut Writer, value: &T) {
    // unwrap: postcard into a Vec only fails on writer errors, and a Vec never fails.
    postcard::to_io(value, &mut w.buf).map(|_| ()).unwrap();
}

fn read_body<T: DeserializeOwned>(r: &mut Reader<'_>) -> Result<T, CodecError> {
    postcard::from_bytes(r.take(r.remaining())?).map_err(|_| CodecError::Invalid("remote body"))
}

fn version(r: &mut Reader<'_>) -> Result<(), CodecError> {
    match r.u8()? {
        REMOTE_VERSION => Ok(()),
        v => Err(CodecError::UnknownVersion(u16::from(v))),
    }
}

impl Envelope {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut w = Writer::with_capacity(64);
        w.u8(REMOTE_VERSION);
        w.u64(self.id);
        w.bytes(self.reply_to.as_bytes())?;
        match &self.request {
            Request::Execute { account, cmd } => {
                w.u8(1);
                body(&mut w, &(account, cmd));
            }
            Request::State { account } => {
                w.u8(2);
                body(&mut w, account);
            }
            Request::Rows { account } => {
                w.u8(3);
                body(&mut w, account);
            }
            Request::Audit { shard } => {
                w.u8(4);
                w.u16(shard.0);
            }
            Request::Saga { credits, answers } => {
                w.u8(6);
                body(&mut w, &(credits, answers));
            }
        }
        Ok(w.buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let id = r.u64()?;
        let len = r.u32()? as usize;
        let reply_to = std::str::from_utf8(r.take(len)?)
            .map_err(|_| CodecError::Invalid("reply_to is not UTF-8"))?
            .to_owned();
        let request = match r.u8()? {
            1 => {
                let (account, cmd) = read_body(&mut r)?;
                Request::Execute { account, cmd }
            }
            2 => Request::State {
                account: read_body(&mut r)?,
            },
            3 => Request::Rows {
                account: read_body(&mut r)?,
            },
            4 => Request::Audit {
                shard: ShardId(r.u16()?),
            },
            5 => {
                let (credits, answers): (Vec<legacy::CreditRequestTag5>, _) = read_body(&mut r)?;
                Request::Saga {
                    credits: credits.into_iter().map(CreditRequest::from).collect(),
                    answers,
                }
            }
            6 => {
                let (credits, answers) = read_body(&mut r)?;
                Request::Saga { credits, answers }
            }
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "remote request",
                    tag,
                })
            }
        };
        Ok(Envelope {
            id,
            reply_to,
            request,
        })
    }
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        w.u8(REMOTE_VERSION);
        w.u64(self.id);
        match &self.result {
            Ok(answer) => {
                w.u8(1);
                match answer {
                    Answer::Outcome(outcome) => {
                        w.u8(1);
                        body(&mut w, outcome);
                    }
                    Answer::State(state) => {
                        w.u8(2);
                        w.buf.extend_from_slice(state);
                    }
                    Answer::Done => w.u8(3),
                    Answer::Audit(shares, ids) => {
                        w.u8(4);
                        body(&mut w, &(shares, ids));
                    }
                }
            }
            Err(err) => {
                w.u8(0);
                body(&mut w, err);
            }
        }
        w.buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Reply, CodecError> {
        let mut r = Reader::new(bytes);
        version(&mut r)?;
        let id = r.u64()?;
        let result = match r.u8()? {
            1 => Ok(match r.u8()? {
                1 => Answer::Outcome(read_body(&mut r)?),
                2 => Answer::State(r.take(r.remaining())?.to_vec()),
                3 => Answer::Done,
                4 => {
                    let (shares, ids) = read_body(&mut r)?;
                    Answer::Audit(shares, ids)
                }
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "remote answer",
                        tag,
                    })
                }
            }),
            0 => Err(read_body(&mut r)?),
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "remote reply",
                    tag,
                })
            }
        };
        Ok(Reply { id, result })
    }
}

/// Shapes written by older builds.
mod legacy {
    use serde::Deserialize;

    use crate::domain::state::LEGACY_DEBIT_LSN;
    use crate::ids::{AccountId, OpId};
    use crate::money::Amount;
    use crate::runtime::saga::CreditRequest;

    /// A credit request of tag 5 (before 2026-11-30): no debit position, no
    /// watermark. The destination records it as a legacy credit.
    #[derive(Deserialize)]
    pub struct CreditRequestTag5 {
        pub transfer: OpId,
        pub to: AccountId,
        pub amount: Amount,
        pub memo: Option<String>,
        pub attempt: u32,
    }

    impl From<CreditRequestTag5> for CreditRequest {
        fn from(r: CreditRequestTag5) -> CreditRequest {
            CreditRequest {
                transfer: r.transfer,
                to: r.to,
                amount: r.amount,
                memo: r.memo,
                attempt: r.attempt,
                debit_lsn: LEGACY_DEBIT_LSN,
                settled_below: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Rejection;

    #[test]
    fn a_request_keeps_its_bytes() {
        let envelope = Envelope {
            id: 7,
            reply_to: "n1".into(),
            request: Request::Rows {
                account: AccountId(5),
            },
        };
        let bytes = envelope.encode().unwrap();
        assert_eq!(
            bytes,
            [
                1, // version
                7, 0, 0, 0, 0, 0, 0, 0, // id
                2, 0, 0, 0, b'n', b'1', // reply_to
                3,    // tag: rows
                5,    // the account (postcard varint)
            ]
        );
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!((back.id, back.reply_to.as_str()), (7, "n1"));
        assert!(matches!(back.request, Request::Rows { account } if account == AccountId(5)));
        let audit = Envelope {
            id: 1,
            reply_to: String::new(),
            request: Request::Audit { shard: ShardId(3) },
        };
        assert_eq!(
            audit.encode().unwrap(),
            [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 0]
        );
    }

    #[test]
    fn a_reply_keeps_its_bytes() {
        let done = Reply {
            id: 2,
            result: Ok(Answer::Done),
        };
        assert_eq!(done.encode(), [1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
        let refused = Reply {
            id: 2,
            result: Err(EngineError::Overloaded),
        };
        // The error is postcard: variant 1 (Overloaded) of EngineError.
        assert_eq!(refused.encode(), [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        for reply in [
            done,
            refused,
            Reply {
                id: 9,
                result: Err(EngineError::Rejected(Rejection::AccountNotFound)),
            },
            Reply {
                id: 9,
                result: Ok(Answer::State(vec![1, 2, 3])),
            },
        ] {
            assert_eq!(Reply::decode(&reply.encode()).unwrap(), reply);
        }
    }

    #[test]
    fn unknown_versions_and_tags_are_refused() {
        assert_eq!(
            Reply::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3]),
            Err(CodecError::UnknownVersion(2))
        );
        assert!(matches!(
            Reply::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9]),
            Err(CodecError::UnknownTag { .. })
        ));
        assert!(Envelope::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]).is_err());
    }

    fn credit(debit_lsn: u64, settled_below: u64) -> CreditRequest {
        CreditRequest {
            transfer: crate::ids::OpId {
                account: AccountId(2),
                n: 3,
            },
            to: AccountId(4),
            amount: crate::money::Amount::new(
                rust_decimal::Decimal::new(150, 2),
                crate::money::Currency::new("CNY", 2).unwrap(),
            )
            .unwrap(),
            memo: None,
            attempt: 1,
            debit_lsn,
            settled_below,
        }
    }

    #[test]
    fn saga_entries_carry_debit_positions_and_old_ones_still_read() {
        let saga = Envelope {
            id: 0,
            reply_to: String::new(),
            request: Request::Saga {
                credits: vec![credit(300, 200)],
                answers: Vec::new(),
            },
        };
        let bytes = saga.encode().unwrap();
        assert_eq!(bytes[13], 6, "tag 6");
        let Request::Saga { credits, .. } = Envelope::decode(&bytes).unwrap().request else {
            panic!("not a saga entry");
        };
        assert_eq!((credits[0].debit_lsn, credits[0].settled_below), (300, 200));
        // Tag 5, as written before 2026-11-30: the same request without the two
        // positions (they are the body's last two varints, 2 bytes each here).
        let mut old = bytes[..bytes.len() - 1].to_vec(); // no answers
        old.truncate(old.len() - 4);
        old.push(0); // no answers
        old[13] = 5;
        let Request::Saga { credits, .. } = Envelope::decode(&old).unwrap().request else {
            panic!("not a saga entry");
        };
        assert_eq!(credits[0].debit_lsn, crate::domain::state::LEGACY_DEBIT_LSN);
        assert_eq!(credits[0].settled_below, 0);
        assert_eq!(credits[0].attempt, 1);
        assert_eq!(credits[0].to, AccountId(4));
    }
}
