//! The request contract of every operation, read from the OpenAPI document and enforced
//! in one middleware before authorization and before any handler runs:
//!
//! - **Query parameters**: a parameter the operation does not document is refused (400,
//!   naming it and the accepted ones), so a misspelt `dryRun=All` or `since=` never
//!   silently does the unfiltered, non-dry thing. A parameter given twice is refused.
//!   An integer parameter accepts integral decimals (`10.0`) and must lie within the
//!   documented `minimum`/`maximum` (400 naming the bound).
//! - **Bodies**: an operation that takes a body gets it with one of its documented content
//!   types (415 otherwise), parsed once and strictly ([`crate::body::parse`]) into a
//!   [`ParsedBody`] that authorization and the handler both use.
//!
//! Because the table comes from the document, what is documented and what is accepted
//! cannot drift apart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, OnceLock},
};

use axum::{
    body::Body,
    extract::{MatchedPath, Query, Request},
    http::{Uri, header, uri::PathAndQuery},
    middleware::Next,
    response::Response,
};
use serde_json::Value;

use crate::{
    body::{self, MAX_BODY, ParsedBody},
    error::{ApiError, Result},
};

/// What one operation accepts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Operation {
    /// Its query parameters, by name.
    pub query: BTreeMap<String, QueryParam>,
    /// The content types of its body, when it takes one.
    pub body: Option<Vec<String>>,
}

/// One documented query parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryParam {
    /// Whether its schema is an integer.
    pub integer: bool,
    /// The documented smallest value.
    pub minimum: Option<f64>,
    /// The documented largest value.
    pub maximum: Option<f64>,
    /// The range its `format` (`int32`, `int64`) allows, exactly.
    pub format_range: Option<(i128, i128)>,
}

/// The contract of every operation: `(METHOD, template under /api/v1)`.
pub fn operations() -> &'static BTreeMap<(String, String), Operation> {
    static OPERATIONS: OnceLock<BTreeMap<(String, String), Operation>> = OnceLock::new();
    OPERATIONS.get_or_init(|| {
        let doc = serde_json::to_value(crate::openapi()).unwrap_or_default();
        from_document(&doc)
    })
}

/// Reads the contract of every operation out of an OpenAPI document.
#[must_use]
pub fn from_document(doc: &Value) -> BTreeMap<(String, String), Operation> {
    let mut out = BTreeMap::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return out;
    };
    for (template, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, op) in item {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let query = op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
                .filter_map(|p| {
                    let name = p.get("name")?.as_str()?.to_owned();
                    let schema = p.get("schema").cloned().unwrap_or_default();
                    let integer = match schema.get("type") {
                        Some(Value::String(t)) => t == "integer",
                        Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                        _ => false,
                    };
                    Some((
                        name,
                        QueryParam {
                            integer,
                            minimum: schema.get("minimum").and_then(Value::as_f64),
                            maximum: schema.get("maximum").and_then(Value::as_f64),
                            format_range: match schema.get("format").and_then(Value::as_str) {
                                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                                Some("int64") => Some((i64::MIN.into(), i64::MAX.into())),
                                _ => None,
                            },
                        },
                    ))
                })
                .collect();
            let body = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .map(|content| content.keys().cloned().collect());
            out.insert(
                (method.to_ascii_uppercase(), template.clone()),
                Operation { query, body },
            );
        }
    }
    out
}

/// Middleware: enforces the contract of the matched operation (see the module docs).
/// Runs after authentication and before authorization.
pub async fn enforce(matched: Option<MatchedPath>, req: Request, next: Next) -> Result<Response> {
    let Some(matched) = matched else {
        return Ok(next.run(req).await);
    };
    let template = matched
        .as_str()
        .strip_prefix("/api/v1")
        .unwrap_or(matched.as_str());
    let Some(op) = operations().get(&(req.method().as_str().to_owned(), template.to_owned())) else {
        // A method the path does not take: authorization answers 405 whatever the query.
        if operations().keys().any(|(_, t)| t == template) {
            return Ok(next.run(req).await);
        }
        // Not in the document (the document itself): no query parameters, no body read.
        let req = check_query(&Operation::default(), req)?;
        return Ok(next.run(req).await);
    };
    let req = check_query(op, req)?;
    let req = read_body(op, req).await?;
    Ok(next.run(req).await)
}

/// Refuses unknown, repeated and out-of-range query parameters; writes integral
/// decimals of integer parameters as integers.
fn check_query(op: &Operation, mut req: Request) -> Result<Request> {
    let Some(raw) = req.uri().query() else {
        return Ok(req);
    };
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(req.uri())
        .map_err(|_| ApiError::BadRequest(format!("'{raw}' is not a valid query string")))?
        .0;
    let mut seen = BTreeSet::new();
    let mut rewritten = false;
    let mut out = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let Some(param) = op.query.get(&name) else {
            return Err(ApiError::BadRequest(unknown_parameter(op, &name)));
        };
        if !seen.insert(name.clone()) {
            return Err(ApiError::BadRequest(format!(
                "query parameter '{name}' is given more than once; give it once"
            )));
        }
        let value = if param.integer {
            let n = integer_param(&name, &value, param)?;
            rewritten |= n != value;
            n
        } else {
            value
        };
        out.push((name, value));
    }
    if rewritten {
        let query: Vec<String> = out
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let path = req.uri().path();
        let pq: PathAndQuery = format!("{path}?{}", query.join("&"))
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("'{raw}' is not a valid query string")))?;
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(pq);
        *req.uri_mut() = Uri::from_parts(parts)
            .map_err(|_| ApiError::BadRequest(format!("'{raw}' is not a valid query string")))?;
    }
    Ok(req)
}

fn unknown_parameter(op: &Operation, name: &str) -> String {
    if op.query.is_empty() {
        format!("unknown query parameter '{name}': this operation takes no query parameters")
    } else {
        let accepted: Vec<&str> = op.query.keys().map(String::as_str).collect();
        format!(
            "unknown query parameter '{name}': this operation accepts {}",
            accepted.join(", ")
        )
    }
}

/// Checks an integer parameter against its documented range; returns it as integer text.
fn integer_param(name: &str, value: &str, param: &QueryParam) -> Result<String> {
    let Some(n) = integral(value) else {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' must be a whole number, not '{value}'"
        )));
    };
    if let Some((low, high)) = param.format_range
        && !(low..=high).contains(&n)
    {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' must be between {low} and {high} (it is {n})"
        )));
    }
    #[allow(clippy::cast_precision_loss)]
    let as_f64 = n as f64;
    if let Some(min) = param.minimum
        && as_f64 < min
    {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' must be at least {min} (it is {n})"
        )));
    }
    if let Some(max) = param.maximum
        && as_f64 > max
    {
        return Err(ApiError::BadRequest(format!(
            "query parameter '{name}' must be at most {max} (it is {n})"
        )));
    }
    Ok(n.to_string())
}

/// Reads a whole number written as an integer (`10`) or an integral decimal (`10.0`,
/// `1e3`), as JSON and the OpenAPI generators write them.
#[must_use]
pub fn integral(text: &str) -> Option<i128> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i128>() {
        return Some(n);
    }
    // Decimals only when exact (|n| <= 2^53); no `inf`/`nan` spellings.
    if !text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    #[allow(clippy::cast_possible_truncation)]
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i128)
}

/// Percent-encodes a query component (everything but the unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks the content type of a body the operation takes and parses it once, keeping
/// the value in the request's extensions; a body of an operation that takes none is
/// never read.
async fn read_body(op: &Operation, req: Request) -> Result<Request> {
    let Some(types) = &op.body else {
        return Ok(req);
    };
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given.as_deref().map(|g| {
        g.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if essence.as_ref().is_none_or(|e| !types.contains(e)) {
        return Err(ApiError::UnsupportedMediaType {
            given,
            accepted: types.clone(),
        });
    }
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::TooLarge { limit: MAX_BODY })?;
    let value = body::parse(&bytes)?;
    parts.extensions.insert(ParsedBody(Arc::new(value)));
    Ok(Request::from_parts(parts, Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_numbers_are_read_in_both_spellings() {
        assert_eq!(integral("10"), Some(10));
        assert_eq!(integral("10.0"), Some(10));
        assert_eq!(integral("1e3"), Some(1000));
        assert_eq!(integral("-2.0"), Some(-2));
        for bad in ["1.5", "ten", "", "inf", "NaN", "1e400", "0x10"] {
            assert_eq!(integral(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_document_gives_every_operation_a_contract() {
        let ops = operations();
        let list = &ops[&("GET".to_owned(), "/applications".to_owned())];
        assert!(list.body.is_none());
        let limit = &list.query["limit"];
        assert!(limit.integer);
        assert_eq!((limit.minimum, limit.maximum), (Some(1.0), Some(1000.0)));
        let deploy = &ops[&("POST".to_owned(), "/applications/{name}/deploy".to_owned())];
        assert_eq!(deploy.body.as_deref(), Some(&["application/json".to_owned()][..]));
        // Every `limit` the document lists says its range.
        for ((method, path), op) in ops {
            if let Some(limit) = op.query.get("limit") {
                assert_eq!(limit.maximum, Some(1000.0), "{method} {path}");
                assert_eq!(limit.minimum, Some(1.0), "{method} {path}");
            }
        }
    }

    #[test]
    fn unknown_parameters_are_named_with_the_accepted_ones() {
        let op = &operations()[&("GET".to_owned(), "/events".to_owned())];
        let message = unknown_parameter(op, "since");
        assert!(
            message.contains("'since'") && message.contains("after, application, limit"),
            "{message}"
        );
        assert!(unknown_parameter(&Operation::default(), "dryRun").contains("takes no query parameters"));
    }

    #[test]
    fn the_document_says_what_the_middleware_answers() {
        let doc = serde_json::to_value(crate::openapi()).unwrap_or_default();
        let mut bodies = 0;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let responses = &op["responses"];
                assert!(responses["400"].is_object(), "{method} {path} lacks 400");
                if op.get("requestBody").is_some() {
                    bodies += 1;
                    for status in ["413", "415"] {
                        assert!(responses[status].is_object(), "{method} {path} lacks {status}");
                    }
                }
            }
        }
        assert!(bodies >= 20, "{bodies}");
    }

    #[test]
    fn integers_stay_within_their_format() {
        let after = &operations()[&("GET".to_owned(), "/events".to_owned())].query["after"];
        assert_eq!(after.format_range, Some((i64::MIN.into(), i64::MAX.into())));
        // 2^63 is i64::MAX + 1, which an f64 comparison cannot tell from i64::MAX.
        let err = integer_param("after", "9223372036854775808", after).unwrap_err();
        assert!(err.to_string().contains("must be between"), "{err}");
        assert_eq!(
            integer_param("after", "9223372036854775807", after)
                .ok()
                .as_deref(),
            Some("9223372036854775807")
        );
    }

    #[test]
    fn query_components_are_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
