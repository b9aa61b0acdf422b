//! Calling Berth's REST API from tests over real HTTP.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// Sends `method url` with bearer `token` and the JSON `body`, if any; returns the status
/// and the answer as JSON (or as a JSON string when it is not JSON).
pub async fn call(
    http: &Client,
    url: &str,
    token: &str,
    method: Method,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
