//! SMS through an HTTP gateway, in the shape most providers share: one POST per
//! message to a configured URL, form-encoded (`To`, `From`, `Body`, as Twilio
//! does) or JSON (`{"to", "from", "body"}`), with HTTP basic auth (account id and
//! token) or a bearer token. 2xx is delivered; 429 and 5xx are retried; other 4xx
//! are permanent (a bad number is not fixed by retrying).

use std::time::Duration;

use super::DeliveryError;
use crate::config::{SmsEncoding, SmsSettings};

/// Posts messages to the SMS gateway.
pub struct SmsGateway {
    client: reqwest::Client,
    settings: SmsSettings,
}

impl SmsGateway {
    pub fn new(settings: &SmsSettings) -> anyhow::Result<SmsGateway> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(SmsGateway {
            client,
            settings: settings.clone(),
        })
    }

    /// Sends one SMS.
    pub async fn send(&self, to: &str, body: &str) -> Result<(), DeliveryError> {
        let s = &self.settings;
        let from = s.from.clone().unwrap_or_default();
        let mut request = self.client.post(&s.url);
        request = match s.encoding {
            SmsEncoding::Form => request.form(&[("To", to), ("From", &from), ("Body", body)]),
            SmsEncoding::Json => {
                request.json(&serde_json::json!({"to": to, "from": from, "body": body}))
            }
        };
        let token = s.token.as_ref().map(|t| t.0.as_str());
        request = match (&s.username, token) {
            (Some(user), token) => request.basic_auth(user, token),
            (None, Some(token)) => request.bearer_auth(token),
            (None, None) => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| DeliveryError::Retry(format!("SMS gateway: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.as_u16() == 429 || status.is_server_error() {
            Err(DeliveryError::Retry(format!(
                "SMS gateway answered {status}"
            )))
        } else {
            Err(DeliveryError::Permanent(format!(
                "SMS gateway answered {status}"
            )))
        }
    }
}
