//! Table-driven HTTP checks shared by the fakes' tests: a [`Case`] is one
//! request and what its answer must hold; [`check_all`] sends a table of
//! them in order (later cases see what earlier ones did) and answers the
//! bodies for the checks a table cannot hold.

// Each test binary uses part of this.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method};
use serde_json::Value;

/// A client with a 5 s timeout.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Where cases are sent and with which headers.
pub struct Target {
    /// Prefix of every case's path, e.g. `http://127.0.0.1:4711/api/v1`.
    pub base: String,
    /// Headers of every request (credentials).
    pub headers: Vec<(&'static str, String)>,
    /// Headers added to a request with a body.
    pub write_headers: Vec<(&'static str, String)>,
    /// The header carrying a case's idempotency key (Zenchef's
    /// `PublisherModelId`; `None` for an API without one).
    pub key_header: Option<&'static str>,
}

/// One request and what its answer must hold.
pub struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    /// A body sent as is, without `Content-Type`.
    raw: Option<String>,
    key: Option<String>,
    /// `(name, Some(value))` replaces a header, `(name, None)` drops it.
    header_changes: Vec<(&'static str, Option<String>)>,
    status: Option<u16>,
    /// `(JSON pointer, value)`: `""` is the whole body; a missing field
    /// reads as `null`.
    fields: Vec<(&'static str, Value)>,
    message: Vec<Message>,
    answer_headers: Vec<(&'static str, String)>,
}

/// What the answer's `message` must be.
enum Message {
    IsString,
    Contains(String),
    StartsWith(String),
}

impl Case {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Case {
        Case::request(Method::GET, path, None, None)
    }

    /// `method path` with a JSON `body` and no idempotency key.
    pub fn send(method: Method, path: impl Into<String>, body: Value) -> Case {
        Case::request(method, path, Some(body), None)
    }

    /// `method path` with a JSON `body` and the idempotency key `key`.
    pub fn write(method: Method, path: impl Into<String>, body: Value, key: &str) -> Case {
        Case::request(method, path, Some(body), Some(key.to_string()))
    }

    fn request(
        method: Method,
        path: impl Into<String>,
        body: Option<Value>,
        key: Option<String>,
    ) -> Case {
        Case {
            method,
            path: path.into(),
            body,
            raw: None,
            key,
            header_changes: Vec::new(),
            status: None,
            fields: Vec::new(),
            message: Vec::new(),
            answer_headers: Vec::new(),
        }
    }

    /// `method path` with `text` as the body and no `Content-Type`.
    pub fn raw(method: Method, path: impl Into<String>, text: String) -> Case {
        let mut case = Case::request(method, path, None, None);
        case.raw = Some(text);
        case
    }

    /// Sends header `name: value` instead of the target's.
    pub fn header(mut self, name: &'static str, value: &str) -> Case {
        self.header_changes.push((name, Some(value.to_string())));
        self
    }

    /// Sends no header `name`.
    pub fn without(mut self, name: &'static str) -> Case {
        self.header_changes.push((name, None));
        self
    }

    /// The answer's HTTP status must be `status`.
    pub fn answers(mut self, status: u16) -> Case {
        self.status = Some(status);
        self
    }

    /// The answer's body at `pointer` must be `value` (`""`: the whole body).
    pub fn field(mut self, pointer: &'static str, value: Value) -> Case {
        self.fields.push((pointer, value));
        self
    }

    /// The answer's `message` must be a string.
    pub fn message(mut self) -> Case {
        self.message.push(Message::IsString);
        self
    }

    /// The answer's `message` must contain `text`.
    pub fn message_has(mut self, text: &str) -> Case {
        self.message.push(Message::Contains(text.to_string()));
        self
    }

    /// The answer's `message` must start with `text`.
    pub fn message_starts(mut self, text: &str) -> Case {
        self.message.push(Message::StartsWith(text.to_string()));
        self
    }

    /// The answer must carry header `name: value`.
    pub fn answer_header(mut self, name: &'static str, value: &str) -> Case {
        self.answer_headers.push((name, value.to_string()));
        self
    }
}

fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    headers.insert(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
}

/// Sends `case` to `target` and asserts what it expects; answers the HTTP
/// status, the body (`null` when not JSON) and the headers.
pub async fn check(target: &Target, case: Case) -> (u16, Value, HeaderMap) {
    let label = format!("{} {}", case.method, case.path);
    let mut headers = HeaderMap::new();
    for (name, value) in &target.headers {
        set_header(&mut headers, name, value);
    }
    if case.body.is_some() || case.raw.is_some() {
        for (name, value) in &target.write_headers {
            set_header(&mut headers, name, value);
        }
    }
    if let (Some(key), Some(name)) = (&case.key, target.key_header) {
        set_header(&mut headers, name, key);
    }
    for (name, value) in &case.header_changes {
        match value {
            Some(value) => set_header(&mut headers, name, value),
            None => {
                headers.remove(*name);
            }
        }
    }
    let mut rb = client()
        .request(case.method.clone(), format!("{}{}", target.base, case.path))
        .headers(headers);
    if let Some(body) = &case.body {
        rb = rb.json(body);
    }
    if let Some(text) = &case.raw {
        rb = rb.body(text.clone());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    if let Some(want) = case.status {
        assert_eq!(status, want, "{label}: {v}");
    }
    for (pointer, want) in &case.fields {
        let got = v.pointer(pointer).unwrap_or(&Value::Null);
        assert_eq!(got, want, "{label}: {pointer:?} of {v}");
    }
    for m in &case.message {
        let msg = v["message"].as_str();
        match m {
            Message::IsString => assert!(msg.is_some(), "{label}: {v}"),
            Message::Contains(t) => assert!(msg.unwrap().contains(t.as_str()), "{label}: {v}"),
            Message::StartsWith(t) => {
                assert!(msg.unwrap().starts_with(t.as_str()), "{label}: {v}")
            }
        }
    }
    for (name, want) in &case.answer_headers {
        assert_eq!(headers[*name], want.as_str(), "{label}: header {name}");
    }
    (status, v, headers)
}

/// Sends every case in order, asserting each; answers their bodies.
pub async fn check_all(target: &Target, cases: Vec<Case>) -> Vec<Value> {
    let mut bodies = Vec::with_capacity(cases.len());
    for case in cases {
        bodies.push(check(target, case).await.1);
    }
    bodies
}
