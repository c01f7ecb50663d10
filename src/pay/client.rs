//! The Zenchef Pay POS-connector client (docs/protocol/zenchef-pay.md): checks,
//! payments, acks. Same error classes as the Zenchef API
//! ([`crate::zenchef::client::ErrorClass`]); the bearer token never appears
//! in a message, and no redirect is followed (a 3xx is an error naming
//! only where it pointed, retried like an outage), so the token never
//! reaches another host.

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::wire::{AckBody, CheckBody, CheckConflict, PaymentsAnswer};
use crate::config::{PayConfig, Secret};
use crate::zenchef::client::{
    CallError, ErrorClass, answer_message, classify, no_redirects, redirect_message,
    transport_message,
};

/// A payment made by a guest: the domain's value, read from the payments
/// page as it is (docs/protocol/zenchef-pay.md § Payments).
pub use domain::payments::GuestPayment;

/// Why a payment that parsed cannot be settled as it is: an empty id or
/// order, an amount below 1 cent (a settle command needs one), a negative
/// tip. `None`: usable.
fn unusable(p: &GuestPayment) -> Option<String> {
    if p.payment_id.trim().is_empty() {
        return Some("payment_id is empty".into());
    }
    if p.order_id.trim().is_empty() {
        return Some("order_id is empty".into());
    }
    if p.amount_cents < 1 {
        return Some(format!("amount_cents must be ≥ 1, got {}", p.amount_cents));
    }
    if p.tip_cents < 0 {
        return Some(format!("tip_cents must be ≥ 0, got {}", p.tip_cents));
    }
    None
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
                .redirect(no_redirects())
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
        body: &CheckBody,
    ) -> Result<(), CallError> {
        let url = self.url(&["installations", iid, "checks", order_id], &[])?;
        match self.call(Method::PUT, url, Some(body)).await {
            Ok(_) => Ok(()),
            Err((e, Some(answer))) if e.status == Some(409) => {
                let ours = body
                    .version
                    .and_then(|v| i64::try_from(v).ok())
                    .unwrap_or(i64::MAX);
                // Only an object says which version is held.
                let stored = answer
                    .is_object()
                    .then(|| serde_json::from_value::<CheckConflict>(answer).ok())
                    .flatten()
                    .and_then(|c| c.held());
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
        let mut query = vec![("limit", "100")];
        if let Some(c) = after {
            query.push(("after", c));
        }
        let url = self.url(&["installations", iid, "payments"], &query)?;
        let v = self
            .call(Method::GET, url, None::<&()>)
            .await
            .map_err(|(e, _)| e)?;
        // Not an object (or no JSON at all): no payments, no cursor.
        let answer = serde_json::from_value::<PaymentsAnswer>(v).unwrap_or_default();
        let mut page = PaymentsPage {
            payments: vec![],
            unreadable: vec![],
            next_cursor: answer.next_cursor,
        };
        for raw in answer.payments {
            match serde_json::from_value::<GuestPayment>(raw.clone()) {
                Ok(p) => match unusable(&p) {
                    None => page.payments.push((p, raw)),
                    Some(why) => page.unreadable.push((raw, why)),
                },
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
        let body = AckBody::new(rejected);
        let url = self.url(&["installations", iid, "payments", payment_id, "ack"], &[])?;
        self.call(Method::POST, url, Some(&body))
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// The URL of `segments` under the base URL, each one percent-encoded
    /// as one path segment by the `url` crate (an order id `T 1/2` is
    /// `T%201%2F2`; an Installation ID can never add a path level), then
    /// `query` form-encoded.
    ///
    /// Errors: [`ErrorClass::Dead`] when the base URL cannot take path
    /// segments (never for a base URL that passed the configuration's
    /// check).
    pub fn url(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<reqwest::Url, CallError> {
        segment_url(&self.base, segments, query).map_err(|message| CallError {
            class: ErrorClass::Dead,
            status: None,
            what: "Zenchef Pay URL".into(),
            message,
        })
    }

    /// One call, `body` (a typed request body, [`super::wire`]) sent as
    /// JSON; answers the answer's JSON (`null` when it has none), and on an
    /// error answer also its JSON body (for 409).
    async fn call<B: Serialize>(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<&B>,
    ) -> Result<Value, (CallError, Option<Value>)> {
        let what = format!(
            "Zenchef Pay {method} {}",
            url.path()
                .strip_prefix(self.base_path().as_str())
                .unwrap_or(url.path())
        );
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header("Accept", "application/json")
            .header("Content-Type", "application/json");
        if let Some(b) = body {
            let text = serde_json::to_string(b).map_err(|e| {
                let message = format!("the request body cannot be written: {e}");
                let class = ErrorClass::Dead;
                let (status, what) = (None, what.clone());
                (
                    CallError {
                        class,
                        status,
                        what,
                        message,
                    },
                    None,
                )
            })?;
            req = req.body(text);
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
        if let Some(moved) = redirect_message(status, &headers, resp.url()) {
            let message = format!("{moved}: check zenchef_pay.base_url");
            return Err((
                CallError {
                    class: classify(status, &headers),
                    status: Some(status.as_u16()),
                    what: what.clone(),
                    message,
                },
                None,
            ));
        }
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

impl PayClient {
    /// The path of the base URL (`/pos/v1`), what [`PayClient::call`]
    /// leaves out of the names of calls in messages.
    fn base_path(&self) -> String {
        reqwest::Url::parse(&self.base)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default()
    }
}

/// `base` (a checked base URL, no trailing `/`) followed by `segments`,
/// each percent-encoded as one path segment (`url::PathSegmentsMut`), then
/// `query` form-encoded. Also used by `doctor`.
///
/// Errors: `base` is not a URL, or one that cannot take path segments; a
/// segment is `.` or `..` (the url crate would drop it).
pub fn segment_url(
    base: &str,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<reqwest::Url, String> {
    // The url crate drops "." and ".." segments (they would change the
    // path level): refuse them instead.
    if let Some(dots) = segments.iter().find(|s| matches!(**s, "." | "..")) {
        return Err(format!("`{dots}` cannot be a path segment"));
    }
    let mut u = reqwest::Url::parse(base).map_err(|e| format!("{base} is not a URL: {e}"))?;
    u.path_segments_mut()
        .map_err(|()| format!("{base} cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        u.query_pairs_mut().extend_pairs(query);
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::segment_url;

    #[test]
    fn path_segments_are_encoded_by_the_url_crate() {
        let u = |b: &str, s: &[&str], q: &[(&str, &str)]| segment_url(b, s, q).unwrap().to_string();
        assert_eq!(
            u(
                "https://pay.zenchef.com/pos/v1",
                &["installations", "CP-4F2A91", "checks", "O-881"],
                &[]
            ),
            "https://pay.zenchef.com/pos/v1/installations/CP-4F2A91/checks/O-881"
        );
        assert_eq!(
            u(
                "http://127.0.0.1:9/pos/v1",
                &["installations", "CP/../x", "checks", "T 1/2"],
                &[]
            ),
            "http://127.0.0.1:9/pos/v1/installations/CP%2F..%2Fx/checks/T%201%2F2"
        );
        assert_eq!(
            u(
                "https://pay.zenchef.com",
                &["installations", "a?b#c", "payments"],
                &[("limit", "100"), ("after", "c&d=e")]
            ),
            "https://pay.zenchef.com/installations/a%3Fb%23c/payments?limit=100&after=c%26d%3De"
        );
        assert!(segment_url("https://p/x", &["installations", "..", "checks"], &[]).is_err());
        assert!(segment_url("https://p/x", &["installations", "CP", "checks", "."], &[]).is_err());
    }
}
