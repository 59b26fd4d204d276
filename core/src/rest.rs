//! The REST API (PROTOCOL.md §6): HTTP requests for operations made while
//! the WebSocket is down (or with `force_http`), and the mapping of HTTP
//! answers back to typed results.
//!
//! The core only describes requests and interprets responses; the driver
//! performs them.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

use crate::config::Config;
use crate::op::{ok_result, OpError, Operation, Reply};

/// `Content-Type` header name.
pub const HEADER_CONTENT_TYPE: &str = "Content-Type";
/// The only accepted body type.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// apiKey header.
pub const HEADER_API_KEY: &str = "API-Key";
/// Fail a write when the key exists.
pub const HEADER_FAIL_IF_EXISTS: &str = "FailIfExists";
/// Expiry of a write (`session` is refused over REST).
pub const HEADER_EXPIRE: &str = "Expire";
/// Answer `{}` to a patch.
pub const HEADER_REMOVE_DATA_FROM_REPLY: &str = "RemoveDataFromReply";
/// Where a generated key was written.
pub const HEADER_LOCATION: &str = "Location";
/// Time of the last write of a read value.
pub const HEADER_WRITE_TIMESTAMP: &str = "X-Write-Timestamp";

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// PUT
    Put,
    /// POST
    Post,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An HTTP request for the driver to perform. `Debug` never shows the
/// apiKey header.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// `https` instead of `http`.
    pub secure: bool,
    /// Host to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Origin-form target, already percent-encoded: `/path/_data/b/k?...`.
    pub path_and_query: String,
    /// Headers to send (besides `Host` and `Content-Length`).
    pub headers: Vec<(&'static str, String)>,
    /// Body, when there is one.
    pub body: Option<Vec<u8>>,
}

impl core::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Headers<'a>(&'a [(&'static str, String)]);
        impl core::fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(n, v)| {
                        let v = if n.eq_ignore_ascii_case(HEADER_API_KEY) {
                            "<redacted>"
                        } else {
                            v.as_str()
                        };
                        (*n, v)
                    }))
                    .finish()
            }
        }
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url())
            .field("headers", &Headers(&self.headers))
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

impl HttpRequest {
    /// The full URL (for logs: it never contains the apiKey).
    pub fn url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path_and_query)
    }
}

/// An HTTP response handed back by the driver.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (names in any case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// bucket or key is one path segment (or one query value).
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    out
}

/// Decodes `%XX` escapes (and nothing else); `None` when an escape is
/// malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = char::from(hex[0]).to_digit(16)?;
            let lo = char::from(hex[1]).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The HTTP request that performs `op` on `bucket`, or why it cannot go
/// over REST (session writes; scalar values, which the reference refuses).
pub fn request_for(config: &Config, bucket: &str, op: &Operation) -> Result<HttpRequest, OpError> {
    let base = format!(
        "{}_data/{}",
        config.normalized_path(),
        percent_encode(bucket)
    );
    let at_key = |key: &str| format!("{base}/{}", percent_encode(key));
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    if let Some(k) = &config.api_key {
        headers.push((HEADER_API_KEY, k.clone()));
    }
    let json_body = |headers: &mut Vec<(&'static str, String)>, v: &Value| {
        headers.push((HEADER_CONTENT_TYPE, String::from(CONTENT_TYPE_JSON)));
        serde_json::to_vec(v).map_err(|_| OpError::Unsupported("value cannot be serialised"))
    };
    let (method, path_and_query, body) = match op {
        Operation::Read { key } if key.is_empty() => (Method::Get, base, None),
        Operation::Read { key } => (Method::Get, at_key(key), None),
        Operation::List { keys_only, filter } => {
            let mut q = format!("{base}?keysOnly={keys_only}");
            if let Some(f) = filter {
                q.push_str("&filter=");
                q.push_str(&percent_encode(f));
            }
            (Method::Get, q, None)
        }
        Operation::Write {
            key,
            value,
            fail_if_exists,
            expire_session,
        } => {
            if *expire_session {
                return Err(OpError::Unsupported(
                    "session keys can only be written over the WebSocket",
                ));
            }
            if *fail_if_exists {
                headers.push((HEADER_FAIL_IF_EXISTS, String::from("true")));
            }
            let body = match value {
                None => {
                    headers.push((HEADER_CONTENT_TYPE, String::from(CONTENT_TYPE_JSON)));
                    None
                }
                Some(v @ (Value::Object(_) | Value::Array(_))) => Some(json_body(&mut headers, v)?),
                Some(_) => {
                    return Err(OpError::Unsupported(
                        "a scalar value (number, string, bool, null) cannot be written over REST",
                    ))
                }
            };
            if key.is_empty() {
                (Method::Post, base, body)
            } else {
                (Method::Put, at_key(key), body)
            }
        }
        Operation::Patch {
            key,
            patch,
            remove_data_from_reply,
        } => {
            if *remove_data_from_reply {
                headers.push((HEADER_REMOVE_DATA_FROM_REPLY, String::from("true")));
            }
            let body = json_body(&mut headers, patch)?;
            (Method::Patch, at_key(key), Some(body))
        }
        Operation::Remove { key } => (Method::Delete, at_key(key), None),
    };
    Ok(HttpRequest {
        method,
        secure: config.secure,
        host: config.host.clone(),
        port: config.port,
        path_and_query,
        headers,
        body,
    })
}

/// The message of an error body: `{"error":"..."}`'s text, else the body as text.
fn error_message(body: &[u8]) -> String {
    if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) {
        if let Some(Value::String(s)) = o.get("error") {
            return s.clone();
        }
    }
    String::from_utf8_lossy(body).into_owned()
}

/// Interprets the HTTP answer to `op` (PROTOCOL.md §6).
pub fn response_result(
    op: &Operation,
    sent_key: &str,
    resp: &HttpResponse,
) -> Result<Reply, OpError> {
    let status = resp.status;
    if status == 401 || status == 403 {
        return Err(OpError::NotAuthorized);
    }
    if (200..300).contains(&status) {
        let value = match op {
            // Writes and removes answer with no JSON ("", "Created", "ok").
            Operation::Write { .. } | Operation::Remove { .. } => None,
            _ if resp.body.iter().all(u8::is_ascii_whitespace) => None,
            _ => Some(serde_json::from_slice::<Value>(&resp.body).map_err(|_| {
                OpError::Protocol {
                    message: format!("HTTP {status} body is not JSON"),
                }
            })?),
        };
        return ok_result(op, sent_key, value, resp.header(HEADER_LOCATION));
    }
    let message = error_message(&resp.body);
    let not_found = status == 404 || message.contains("not found");
    Err(match op {
        Operation::Write { .. } if message.contains("EEXISTS") => OpError::AlreadyExists,
        Operation::Write { .. } if status == 412 => OpError::AlreadyExists,
        _ if not_found => OpError::NotFound,
        Operation::Remove { .. } if message.starts_with("Could not delete") => OpError::NotFound,
        Operation::Patch { .. } if status == 500 || status == 400 || status == 422 => {
            OpError::InvalidPatch { message }
        }
        _ => OpError::Server {
            message: format!("HTTP {status}: {message}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config {
            api_key: Some("secret".into()),
            path: "api".into(),
            ..Config::default()
        }
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn debug_hides_the_api_key() {
        let r = request_for(&config(), "b", &Operation::Read { key: "k".into() }).unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
    }

    #[test]
    fn read_and_list_requests() {
        let r = request_for(&config(), "b 1", &Operation::Read { key: "a/b".into() }).unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path_and_query, "/api/_data/b%201/a%2Fb");
        assert_eq!(r.headers, vec![(HEADER_API_KEY, "secret".to_string())]);
        let l = request_for(
            &config(),
            "b1",
            &Operation::List {
                keys_only: true,
                filter: Some("k".into()),
            },
        )
        .unwrap();
        assert_eq!(l.path_and_query, "/api/_data/b1?keysOnly=true&filter=k");
        assert_eq!(
            l.url(),
            "http://127.0.0.1:4300/api/_data/b1?keysOnly=true&filter=k"
        );
    }

    #[test]
    fn write_requests() {
        let w = |key: &str, value: Option<Value>, fie: bool, session: bool| {
            request_for(
                &Config::default(),
                "b1",
                &Operation::Write {
                    key: key.into(),
                    value,
                    fail_if_exists: fie,
                    expire_session: session,
                },
            )
        };
        let put = w("k1", Some(json!({"x":1})), true, false).unwrap();
        assert_eq!(put.method, Method::Put);
        assert_eq!(put.body.as_deref(), Some(&b"{\"x\":1}"[..]));
        assert!(put
            .headers
            .contains(&(HEADER_FAIL_IF_EXISTS, "true".into())));
        assert!(put
            .headers
            .contains(&(HEADER_CONTENT_TYPE, CONTENT_TYPE_JSON.into())));
        let post = w("", Some(json!([1])), false, false).unwrap();
        assert_eq!(
            (post.method, post.path_and_query.as_str()),
            (Method::Post, "/_data/b1")
        );
        assert!(matches!(
            w("k", Some(json!(5)), false, false),
            Err(OpError::Unsupported(_))
        ));
        assert!(matches!(
            w("k", Some(json!({})), false, true),
            Err(OpError::Unsupported(_))
        ));
        assert!(w("k", None, false, false).unwrap().body.is_none());
    }

    #[test]
    fn interprets_reference_answers() {
        let read = Operation::Read { key: "k1".into() };
        assert_eq!(
            response_result(&read, "k1", &resp(200, "{\"name\":\"x\"}")),
            Ok(Reply::Value(Some(json!({"name":"x"}))))
        );
        assert_eq!(
            response_result(&read, "k1", &resp(200, "")),
            Ok(Reply::Value(None))
        );
        assert_eq!(
            response_result(
                &read,
                "k1",
                &resp(404, "{\"error\":\"Key not found in database [k1]\"}")
            ),
            Err(OpError::NotFound)
        );
        assert_eq!(
            response_result(&read, "k1", &resp(401, "401 Unauthorized")),
            Err(OpError::NotAuthorized)
        );
        let write = Operation::Write {
            key: String::new(),
            value: Some(json!({})),
            fail_if_exists: true,
            expire_session: false,
        };
        let mut created = resp(201, "Created");
        created
            .headers
            .push(("location".into(), "/_data/b1/gen_1796313902951".into()));
        assert_eq!(
            response_result(&write, "", &created),
            Ok(Reply::Written {
                key: "gen_1796313902951".into()
            })
        );
        for status in [500, 412] {
            assert_eq!(
                response_result(&write, "", &resp(status, "{\"error\":\"EEXISTS\"}")),
                Err(OpError::AlreadyExists)
            );
        }
        let patch = Operation::Patch {
            key: "k".into(),
            patch: json!([]),
            remove_data_from_reply: false,
        };
        assert_eq!(
            response_result(
                &patch,
                "k",
                &resp(500, "{\"error\":\"Key not found in database [k]\"}")
            ),
            Err(OpError::NotFound)
        );
        assert_eq!(
            response_result(
                &patch,
                "k",
                &resp(500, "{\"error\":\"invalid operation: bogus\"}")
            ),
            Err(OpError::InvalidPatch {
                message: "invalid operation: bogus".into()
            })
        );
        let remove = Operation::Remove { key: "k".into() };
        assert_eq!(
            response_result(&remove, "k", &resp(200, "ok")),
            Ok(Reply::Removed)
        );
        let list = Operation::List {
            keys_only: true,
            filter: None,
        };
        let items = "[{\"key\":\"k1\",\"timestamp\":\"2026-12-03T16:05:02.940Z\",\"size\":18,\"expire\":null}]";
        match response_result(&list, "", &resp(200, items)) {
            Ok(Reply::List(l)) => {
                assert_eq!(l.len(), 1);
                assert_eq!(l[0].expire, crate::wire::Expire::Null);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
