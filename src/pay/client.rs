//! The Zenchef Pay POS-connector client (zenchef-pay-api.md): checks,
//! payments, acks. Same error classes as the Zenchef API
//! ([`crate::zenchef::client::ErrorClass`]); the bearer token never appears
//! in a message.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{PayConfig, Secret};
use crate::zenchef::client::{CallError, ErrorClass, answer_message, classify, transport_message};

/// A payment made by a guest (zenchef-pay-api.md § Payments).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GuestPayment {
    /// Zenchef Pay id, e.g. `pay_8f2c`.
    pub payment_id: String,
    /// POS order id the check belongs to.
    pub order_id: String,
    /// Amount paid toward the bill, cents.
    pub amount_cents: i64,
    /// Tip, cents.
    #[serde(default)]
    pub tip_cents: i64,
    /// Card, wallet… (informational).
    #[serde(default)]
    pub method: Option<String>,
    /// When the guest paid.
    #[serde(default)]
    pub paid_at: Option<String>,
}

/// One page of payments.
#[derive(Debug, Clone)]
pub struct PaymentsPage {
    /// Payments after the cursor, each with its raw JSON.
    pub payments: Vec<(GuestPayment, Value)>,
    /// Payments that could not be read (raw JSON, reason).
    pub unreadable: Vec<(Value, String)>,
    /// Cursor to ask from next time.
    pub next_cursor: Option<String>,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct PayClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl PayClient {
    /// Builds the client (rustls, `timeout` per call).
    pub fn new(cfg: &PayConfig, timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(PayClient {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!("zenchef-edge/", env!("CARGO_PKG_VERSION")))
                .build()?,
            base: cfg.base_url.clone(),
            token: cfg.token.clone(),
        })
    }

    /// `PUT /installations/{iid}/checks/{order_id}`. A 409 whose stored
    /// version is ≥ ours counts as success (Zenchef Pay already has this
    /// version or a newer one).
    pub async fn put_check(
        &self,
        iid: &str,
        order_id: &str,
        body: &Value,
    ) -> Result<(), CallError> {
        let path = format!("/installations/{iid}/checks/{}", encode(order_id));
        match self.call(Method::PUT, &path, Some(body)).await {
            Ok(_) => Ok(()),
            Err((e, Some(answer))) if e.status == Some(409) => {
                let ours = body
                    .get("version")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MAX);
                let stored = answer
                    .get("stored_version")
                    .or_else(|| answer.get("version"))
                    .and_then(Value::as_i64);
                match stored {
                    Some(v) if v >= ours => Ok(()),
                    _ => Err(CallError {
                        class: ErrorClass::Dead,
                        ..e
                    }),
                }
            }
            Err((e, _)) => Err(e),
        }
    }

    /// `GET /installations/{iid}/payments?after=<cursor>&limit=100`.
    pub async fn payments(
        &self,
        iid: &str,
        after: Option<&str>,
    ) -> Result<PaymentsPage, CallError> {
        let mut path = format!("/installations/{iid}/payments?limit=100");
        if let Some(c) = after {
            path.push_str(&format!("&after={}", encode(c)));
        }
        let v = self
            .call(Method::GET, &path, None)
            .await
            .map_err(|(e, _)| e)?;
        let mut page = PaymentsPage {
            payments: vec![],
            unreadable: vec![],
            next_cursor: v
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        for raw in v
            .get("payments")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            match serde_json::from_value::<GuestPayment>(raw.clone()) {
                Ok(p) if p.amount_cents >= 0 && p.tip_cents >= 0 => page.payments.push((p, raw)),
                Ok(_) => page.unreadable.push((raw, "negative amount".into())),
                Err(e) => page.unreadable.push((raw, e.to_string())),
            }
        }
        Ok(page)
    }

    /// `POST /installations/{iid}/payments/{payment_id}/ack`, `settled` or
    /// `rejected` with a reason.
    pub async fn ack(
        &self,
        iid: &str,
        payment_id: &str,
        rejected: Option<&str>,
    ) -> Result<(), CallError> {
        let body = match rejected {
            None => json!({"status": "settled"}),
            Some(reason) => json!({"status": "rejected", "reason": reason}),
        };
        let path = format!("/installations/{iid}/payments/{}/ack", encode(payment_id));
        self.call(Method::POST, &path, Some(&body))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// One call; on an error answer also gives its JSON body (for 409).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, (CallError, Option<Value>)> {
        let what = format!(
            "Zenchef Pay {method} {}",
            path.split('?').next().unwrap_or(path)
        );
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let retry = |message: String, status: Option<u16>| CallError {
            class: ErrorClass::Retry { after: None },
            status,
            what: what.clone(),
            message,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| (retry(transport_message(&e), None), None))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| (retry(transport_message(&e), Some(status.as_u16())), None))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return Ok(json.unwrap_or(Value::Null));
        }
        Err((
            CallError {
                class: classify(status, &headers),
                status: Some(status.as_u16()),
                what: what.clone(),
                message: answer_message(&text),
            },
            json,
        ))
    }
}

/// Percent-encodes a path segment (ids are usually plain, but a POS order
/// id may hold `/` or spaces).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("O-881"), "O-881");
        assert_eq!(super::encode("T 1/2"), "T%201%2F2");
    }
}
