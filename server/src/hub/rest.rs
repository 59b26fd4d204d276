//! The REST API (PROTOCOL.md §6) as the hub answers it.
//!
//! The front parses HTTP (hyper) and hands over method, path, query,
//! headers and body; routing, checks and answers live here so that the
//! simulation can drive REST too.

use cachearoo_core::rest::{
    percent_decode, CONTENT_TYPE_JSON, HEADER_API_KEY, HEADER_EXPIRE, HEADER_FAIL_IF_EXISTS,
    HEADER_LOCATION, HEADER_REMOVE_DATA_FROM_REPLY, HEADER_WRITE_TIMESTAMP,
};
use cachearoo_core::wire::{Expire, EXPIRE_SESSION};
use serde_json::Value;

use super::{Change, Hub};
use crate::store::{Store, StoreError, WriteOptions};
use crate::time::iso8601;

/// One HTTP request, as the front parsed it. `Debug` masks the `API-Key`
/// header.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RestRequest {
    /// Method name in upper case (`GET`, `PUT`, ...).
    pub method: String,
    /// The path as received (percent-encoded), without the query.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// Headers (names in any case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for RestRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if n.eq_ignore_ascii_case(HEADER_API_KEY) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("RestRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl RestRequest {
    /// A request without headers or body.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path_and_query.to_owned(), None),
        };
        RestRequest {
            method: method.to_owned(),
            path,
            query,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first header called `name`, compared case-insensitively.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query_param(&self, name: &str) -> Option<String> {
        let q = self.query.as_deref()?;
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // Query strings use `+` for spaces (as express decodes them).
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k)? == name).then(|| decode(v)).flatten()
        })
    }

    fn flag_header(&self, name: &str) -> bool {
        self.header_value(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true") || v.trim() == "1")
    }
}

/// The answer to a [`RestRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestResponse {
    /// Status code.
    pub status: u16,
    /// Headers to send (the front adds `Content-Length` and `Date`).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl RestResponse {
    /// The first header called `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

const JSON_UTF8: &str = "application/json; charset=utf-8";
const HTML_UTF8: &str = "text/html; charset=utf-8";
const CORS: [(&str, &str); 4] = [
    ("Access-Control-Allow-Origin", "*"),
    (
        "Access-Control-Allow-Methods",
        "GET,PUT,POST,DELETE,OPTIONS,PATCH",
    ),
    (
        "Access-Control-Allow-Headers",
        "Content-Type, Authorization, Content-Length, X-Requested-With, API-Key, X-Timestamp",
    ),
    ("Access-Control-Expose-Headers", "X-Timestamp"),
];

/// Builds answers with the common headers.
struct Reply {
    resp: RestResponse,
}

impl Reply {
    fn new(status: u16) -> Self {
        let headers = CORS.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
        Reply {
            resp: RestResponse {
                status,
                headers,
                body: Vec::new(),
            },
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        if let Some(slot) = self.resp.headers.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value.into();
        } else {
            self.resp.headers.push((name, value.into()));
        }
        self
    }

    fn json(self, status_body: &Value) -> Self {
        let body = serde_json::to_vec(status_body).unwrap_or_default();
        self.raw(JSON_UTF8, body)
    }

    fn error_json(self, message: &str) -> Self {
        self.json(&serde_json::json!({ "error": message }))
    }

    fn text(self, text: &str) -> Self {
        self.raw(HTML_UTF8, text.as_bytes().to_vec())
    }

    /// Express's HTML error page.
    fn html_error(self, message: &str) -> Self {
        let page = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>{}</pre>\n</body>\n</html>\n",
            escape_html(message)
        );
        self.raw(HTML_UTF8, page.into_bytes())
    }

    fn raw(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self = self.header("Content-Type", content_type);
        self.resp.body = body;
        self
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A header value made of visible ASCII: other bytes are percent-encoded
/// (a `Location` with a non-ASCII bucket would otherwise be unsendable).
fn header_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a request goes.
enum Route {
    Id,
    Ping,
    Meta { bucket: String },
    Bucket { bucket: String },
    Key { bucket: String, key: String },
    NotFound,
    BadPath,
}

/// Routes on the first `_data`/`_meta`/`_id`/`_ping` segment, so that any
/// path prefix (a client's `path` option) reaches the API.
fn route(path: &str) -> Route {
    let mut segs: Vec<&str> = path.split('/').skip(1).collect();
    if segs.len() > 1 && segs.last() == Some(&"") {
        segs.pop();
    }
    let Some(at) = segs
        .iter()
        .position(|s| matches!(*s, "_data" | "_meta" | "_id" | "_ping"))
    else {
        return Route::NotFound;
    };
    let rest = &segs[at + 1..];
    let decoded: Option<Vec<String>> = rest.iter().map(|s| percent_decode(s)).collect();
    let Some(args) = decoded else {
        return Route::BadPath;
    };
    match (segs[at], args.as_slice()) {
        ("_id", []) => Route::Id,
        ("_ping", []) => Route::Ping,
        ("_meta", [b]) => Route::Meta { bucket: b.clone() },
        ("_data", [b]) => Route::Bucket { bucket: b.clone() },
        ("_data", [b, k]) => Route::Key {
            bucket: b.clone(),
            key: k.clone(),
        },
        _ => Route::NotFound,
    }
}

/// The media type of a `Content-Type` value, without parameters.
fn media_type(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

impl<S: Store> Hub<S> {
    /// Answers one REST request; changes it makes are broadcast to every
    /// subscribed connection (drain [`Hub::poll_output`] afterwards).
    pub fn handle_rest(&mut self, req: &RestRequest, now_ms: u64) -> RestResponse {
        self.stats.rest_requests += 1;
        if req.method == "OPTIONS" {
            // CORS preflight: answered before any check, like the reference.
            let mut r = Reply::new(200);
            r.resp.headers.retain(|(n, _)| !n.starts_with("X-"));
            return r.resp;
        }
        let reply = self
            .rest_inner(req, now_ms)
            .header("X-Served-By", self.config.served_by.clone())
            .header("X-Timestamp", iso8601(now_ms));
        reply.resp
    }

    fn rest_inner(&mut self, req: &RestRequest, now_ms: u64) -> Reply {
        let method = req.method.as_str();
        let not_found = || Reply::new(404).html_error(&format!("Cannot {method} {}", req.path));
        let (bucket, key) = match route(&req.path) {
            Route::Id if method == "GET" => {
                return Reply::new(200).json(&serde_json::json!({ "id": self.config.server_id }))
            }
            Route::Ping if method == "GET" => {
                return Reply::new(200).json(
                    &serde_json::json!({ "timestamp": iso8601(now_ms), "backend": "memory" }),
                )
            }
            Route::Meta { bucket } if method == "GET" => {
                if !self.may_read(req.header_value(HEADER_API_KEY)) {
                    return Reply::new(401).text("401 Unauthorized");
                }
                let items = self.store.list(&bucket, None, true);
                return Reply::new(200).json(&serde_json::to_value(items).unwrap_or_default());
            }
            Route::Bucket { bucket } if matches!(method, "GET" | "POST" | "DELETE") => {
                (bucket, None)
            }
            Route::Key { bucket, key }
                if matches!(method, "GET" | "PUT" | "POST" | "PATCH" | "DELETE") =>
            {
                (bucket, Some(key))
            }
            Route::BadPath => return Reply::new(400).html_error("Bad Request"),
            _ => return not_found(),
        };

        let has_body = matches!(method, "PUT" | "POST" | "PATCH");
        if has_body {
            // Checked before the apiKey, like the reference.
            let ct = req.header_value("Content-Type").unwrap_or("");
            if !media_type(ct).eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
                return Reply::new(400).text(&format!("Wrong content type {ct}"));
            }
        }
        let api_key = req.header_value(HEADER_API_KEY);
        let allowed = if method == "GET" {
            self.may_read(api_key)
        } else {
            self.authorized(api_key)
        };
        if !allowed {
            return Reply::new(401).text("401 Unauthorized");
        }
        let body = if has_body {
            match parse_body(&req.body) {
                Ok(b) => b,
                Err(()) => return Reply::new(400).html_error("Bad Request"),
            }
        } else {
            None
        };

        match (method, key) {
            ("GET", None) => {
                let keys_only = req
                    .query_param("keysOnly")
                    .is_some_and(|v| v == "true" || v == "1");
                let filter = req.query_param("filter");
                let items = self.store.list(&bucket, filter.as_deref(), keys_only);
                Reply::new(200).json(&serde_json::to_value(items).unwrap_or_default())
            }
            ("GET", Some(key)) => match self.store.get(&bucket, &key) {
                Ok(r) => {
                    let body = r
                        .value
                        .as_ref()
                        .map(|v| serde_json::to_vec(v).unwrap_or_default())
                        .unwrap_or_default();
                    Reply::new(200)
                        .header(HEADER_WRITE_TIMESTAMP, iso8601(r.written_ms))
                        .raw(JSON_UTF8, body)
                }
                Err(StoreError::KeyNotFound { key }) => {
                    Reply::new(404).error_json(&format!("Key not found in database [{key}]"))
                }
                Err(e) => Reply::new(404).error_json(&e.to_string()),
            },
            ("PUT" | "POST", key) => self.rest_write(req, &bucket, key, body, now_ms),
            ("PATCH", Some(key)) => self.rest_patch(req, &bucket, &key, body, now_ms),
            ("DELETE", None) => {
                self.store.remove_bucket(&bucket);
                self.clear_bucket_sessions(&bucket);
                Reply::new(200).text("ok")
            }
            ("DELETE", Some(key)) => match self.store.remove(&bucket, &key) {
                Ok(_) => {
                    self.clear_session(&bucket, &key);
                    self.broadcast(None, &Change::deleted(&bucket, &key, None, None));
                    Reply::new(200).text("ok")
                }
                Err(_) => Reply::new(500)
                    .error_json(&format!("Could not delete bucket={bucket}, key={key}")),
            },
            _ => not_found(),
        }
    }

    fn rest_write(
        &mut self,
        req: &RestRequest,
        bucket: &str,
        key: Option<String>,
        value: Option<Value>,
        now_ms: u64,
    ) -> Reply {
        if req
            .header_value(HEADER_EXPIRE)
            .is_some_and(|v| v.trim() == EXPIRE_SESSION)
        {
            return Reply::new(400)
                .text("Session expiration keys cannot be written with REST protocol");
        }
        let options = WriteOptions {
            fail_if_exists: req.flag_header(HEADER_FAIL_IF_EXISTS),
            // REST writes store `"expire":null`, as the reference's do.
            expire: Expire::Null,
        };
        let generated = key.is_none();
        match self
            .store
            .write(bucket, key.as_deref(), value.clone(), options, now_ms)
        {
            Ok(key) => {
                self.clear_session(bucket, &key);
                self.broadcast(
                    None,
                    &Change {
                        bucket,
                        key: &key,
                        timestamp: Some(iso8601(now_ms)),
                        origin_request_id: Some(Value::Null),
                        client_id: None,
                        is_deleted: false,
                        value: value.as_ref(),
                    },
                );
                if generated {
                    Reply::new(201)
                        .header("Access-Control-Expose-Headers", "Location")
                        .header(
                            HEADER_LOCATION,
                            header_safe(&format!("/_data/{bucket}/{key}")),
                        )
                        .text("Created")
                } else {
                    Reply::new(200)
                }
            }
            // The reference answers 500 here by mistake; 412 is what it meant.
            Err(StoreError::AlreadyExists { .. }) => Reply::new(412).error_json("EEXISTS"),
            Err(e) => Reply::new(500).error_json(&e.to_string()),
        }
    }

    fn rest_patch(
        &mut self,
        req: &RestRequest,
        bucket: &str,
        key: &str,
        patch: Option<Value>,
        now_ms: u64,
    ) -> Reply {
        match self.apply_patch(bucket, key, patch.as_ref(), now_ms) {
            Ok(doc) => {
                self.broadcast(
                    None,
                    &Change {
                        bucket,
                        key,
                        timestamp: None,
                        origin_request_id: Some(Value::Null),
                        client_id: None,
                        is_deleted: false,
                        value: Some(&doc),
                    },
                );
                if req.flag_header(HEADER_REMOVE_DATA_FROM_REPLY) {
                    Reply::new(200).json(&Value::Object(serde_json::Map::new()))
                } else {
                    Reply::new(200).json(&doc)
                }
            }
            Err(StoreError::KeyNotFound { key }) => {
                Reply::new(500).error_json(&format!("Key not found in database [{key}]"))
            }
            Err(e) => Reply::new(500).error_json(&e.to_string()),
        }
    }
}

/// A REST body: empty means "no value"; otherwise a JSON object or array
/// (the reference's parser is strict and refuses bare scalars).
fn parse_body(body: &[u8]) -> Result<Option<Value>, ()> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => Ok(Some(v)),
        _ => Err(()),
    }
}
