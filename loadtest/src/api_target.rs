//! The OKPay API as a [`TransferTarget`]: `POST /v1/transfers` as the sending
//! user, to the recipient's account id. A 201 to a subscribed recipient is handed
//! to the websocket tracker at the instant it arrived, which is where delivery
//! latency starts.

use std::sync::Arc;
use std::time::Instant;

use crate::client::User;
use crate::load::{TransferOutcome, TransferSpec, TransferTarget};
use crate::transfers::Transfers;
use crate::ws::DeliveryTracker;

#[derive(Debug)]
pub struct ApiTarget {
    pub transfers: Transfers,
    pub users: Arc<Vec<User>>,
    pub tracker: Option<Arc<DeliveryTracker>>,
}

impl TransferTarget for ApiTarget {
    async fn transfer(&self, spec: &TransferSpec) -> TransferOutcome {
        let to = &self.users[spec.to];
        match self
            .transfers
            .send(spec.from, &to.account_id, spec.amount_minor, &spec.key)
            .await
        {
            Ok(ack) => {
                let at = Instant::now();
                if let Some(tracker) = &self.tracker {
                    if tracker.is_subscribed(spec.to) {
                        tracker.acked(&ack.id, at);
                    }
                }
                TransferOutcome::Acked {
                    id: ack.id,
                    fee_minor: ack.fee_minor,
                }
            }
            Err(e) => TransferOutcome::Failed {
                code: e.code.clone(),
                detail: e.to_string(),
            },
        }
    }
}
