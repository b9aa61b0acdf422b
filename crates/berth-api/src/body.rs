//! Reading request bodies: one strict parse per request, shared by the authorization
//! middleware and the handler.
//!
//! The middleware ([`crate::contract`]) reads the body of every operation that takes one,
//! checks its content type and parses it with [`parse`] into a [`ParsedBody`] kept in the
//! request's extensions. Authorization decides on that value and [`JsonBody`] deserializes
//! the handler's type from the very same value: there is no second parser that could read
//! the bytes differently (a lenient one accepting trailing bytes, or one keeping the other
//! of two duplicate keys). Errors are problem documents naming line and column (syntax) or
//! the field path (shape).

use std::{fmt, sync::Arc};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, request::Parts},
};
use serde::{
    Deserialize, Deserializer,
    de::{DeserializeOwned, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Number, Value};

use crate::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// The request body, parsed once by the contract middleware.
#[derive(Debug, Clone)]
pub struct ParsedBody(pub Arc<Value>);

impl<S: Send + Sync> FromRequestParts<S> for ParsedBody {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::BadRequest("this operation needs a JSON body".to_owned()))
    }
}

/// A JSON request body of type `T`, deserialized from the request's [`ParsedBody`];
/// errors name the field path.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let parsed = req.extensions().get::<ParsedBody>().cloned();
        let value = match parsed {
            Some(parsed) => parsed.0,
            // An operation the document lists without a body: parse here, as strictly.
            None => Arc::new(parse(&read(req, state).await?)?),
        };
        request(&value).map(JsonBody)
    }
}

/// A request body `T` from its parsed value. Every request body of this API is an object;
/// serde alone would also fill a struct from an array (`[null, null]`), which the document
/// does not allow.
fn request<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the body must be a JSON object ({{\"field\": value, …}}), not {}",
            kind_of(value)
        )));
    }
    shape(value)
}

/// What kind of JSON value `value` is, for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a whole body up to [`MAX_BODY`].
pub async fn read<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit: MAX_BODY }
        } else {
            ApiError::BadRequest(format!("the request body could not be read: {rejection}"))
        }
    })
}

/// Deserializes `T` from a parsed body, naming the field path of a mismatch.
pub fn shape<T: DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = at(&e.path().to_string());
        ApiError::BadRequest(format!(
            "the body does not have the expected shape{at}: {}",
            e.into_inner()
        ))
    })
}

/// Parses exactly one JSON document: refuses syntax errors, trailing bytes after the
/// document and an object naming a key twice (at any depth), naming where. Numbers
/// written as integral decimals (`1.0`, `1e3`) become integers, so that an integer field
/// accepts them as it accepts `1`.
pub fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, Strict>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            not_json(&inner)
        } else {
            // Only the duplicate-key check fails a parse into a value with a non-syntax
            // error; its message says which key.
            ApiError::BadRequest(format!(
                "the body is not a JSON document Berth accepts{}: {inner} (send each key of an object once)",
                at(&path)
            ))
        }
    })?;
    de.end().map_err(|e| {
        ApiError::BadRequest(format!(
            "the body has more after its JSON document (line {}, column {}): send exactly one JSON document",
            e.line(),
            e.column()
        ))
    })?;
    Ok(value.0)
}

fn not_json(inner: &serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!(
        "the body is not valid JSON: {inner} (send a JSON document; line {}, column {})",
        inner.line(),
        inner.column()
    ))
}

fn at(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// A JSON value parsed strictly: no duplicate keys, integral decimals as integers.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

/// Largest integer an `f64` holds exactly (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        #[allow(clippy::cast_possible_truncation)]
        if v.fract() == 0.0 && v.abs() <= EXACT {
            // Exact: |v| <= 2^53 and integral.
            return Ok(Value::Number((v as i64).into()));
        }
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "the key '{key}' appears twice"
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn detail(bytes: &str) -> String {
        parse(bytes.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn one_document_is_accepted() {
        assert_eq!(
            parse(br#" {"a": [1, {"b": null}], "c": "x"} "#).unwrap(),
            json!({"a": [1, {"b": null}], "c": "x"})
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for body in [
            r#"{"environment":"production","release":1} x"#,
            r#"{"a":1}{"a":2}"#,
            "[] []",
            "1 2",
        ] {
            assert!(detail(body).contains("more after its JSON document"), "{body}");
        }
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_and_named() {
        let d = detail(r#"{"environment":"qa","environment":"production"}"#);
        assert!(d.contains("'environment' appears twice"), "{d}");
        let d = detail(r#"{"spec":{"team":"a","x":[{"k":1,"k":2}]}}"#);
        assert!(
            d.contains("'k' appears twice") && d.contains("at spec.x[0]"),
            "{d}"
        );
        // The same key in sibling objects is fine.
        assert!(parse(br#"[{"k":1},{"k":2}]"#).is_ok());
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let d = detail("{\n  \"kind\": ");
        assert!(d.contains("not valid JSON") && d.contains("line 2"), "{d}");
        assert!(detail("").contains("not valid JSON"));
    }

    #[test]
    fn integral_decimals_become_integers() {
        assert_eq!(
            parse(br#"{"release": 1.0, "big": 1e3, "half": 0.5, "neg": -2.0}"#).unwrap(),
            json!({"release": 1, "big": 1000, "half": 0.5, "neg": -2})
        );
        // Too large to be exact: left a float, so an integer field refuses it.
        assert!(parse(b"1e300").unwrap().is_f64());
    }

    #[test]
    fn request_bodies_are_objects() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Release {
            image: Option<String>,
            description: Option<String>,
        }
        // serde on its own takes an array for a struct: what let `[null, null]` through.
        assert!(shape::<Release>(&json!([null, null])).is_ok());
        for body in [json!([null, null]), json!("x"), json!(1), json!(null)] {
            let err = request::<Release>(&body).unwrap_err().to_string();
            assert!(err.contains("must be a JSON object"), "{body}: {err}");
        }
        assert!(request::<Release>(&json!({"image": null})).is_ok());
    }

    #[test]
    fn shape_errors_name_the_field_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Deploy {
            release: u64,
        }
        let err = shape::<Deploy>(&json!({"release": "one"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at release"), "{err}");
        let d: Deploy = shape(&parse(br#"{"release": 2.0}"#).unwrap()).unwrap();
        assert_eq!(d.release, 2);
    }
}
