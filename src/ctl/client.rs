//! A blocking client for the control API: one HTTP/1.1 request per
//! connection (hyper's client half over a tokio TCP stream, on a
//! current-thread runtime the client owns), JSON in and out, every failure
//! a [`CtlError`] that says what to do about it.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a `sluice ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// `--api` is not an address.
    #[error(
        "--api {0:?} is not an API address; use host:port or http://host:port, e.g. http://127.0.0.1:7480"
    )]
    BadAddress(String),
    /// Nothing answers at the address.
    #[error(
        "cannot reach the control API at http://{api} ({reason}); is sluice running there? Pass --api to name another address"
    )]
    Unreachable {
        /// The address tried.
        api: String,
        /// Why.
        reason: String,
    },
    /// The API answered with an error.
    #[error("{code}: {message}{hint}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's sentence.
        message: String,
        /// What to do about it, where ctl knows.
        hint: &'static str,
    },
    /// The answer was not what the API promises.
    #[error("the control API at http://{api} gave an answer ctl cannot read: {reason}")]
    BadAnswer {
        /// The address.
        api: String,
        /// What was wrong.
        reason: String,
    },
    /// The runtime could not start.
    #[error("cannot start the client: {0}")]
    Runtime(std::io::Error),
}

/// The control API at one address.
#[derive(Debug)]
pub struct ApiClient {
    authority: String,
    token: Option<String>,
    runtime: tokio::runtime::Runtime,
}

impl ApiClient {
    /// A client for `api` (`host:port` or `http://host:port`) sending
    /// `token` as the bearer token when given.
    pub fn new(api: &str, token: Option<String>) -> Result<Self, CtlError> {
        let authority = parse_api(api)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(CtlError::Runtime)?;
        Ok(Self {
            authority,
            token,
            runtime,
        })
    }

    /// The `host:port` requests go to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET path`, the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None)
    }

    /// `POST path` with a JSON body, the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        self.call(Method::POST, path, Some(body))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<(), CtlError> {
        self.call(Method::DELETE, path, None).map(drop)
    }

    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CtlError> {
        let (status, bytes) = self.runtime.block_on(async {
            match tokio::time::timeout(TIMEOUT, self.send(method, path, body)).await {
                Ok(result) => result,
                Err(_) => Err(self.unreachable(format!("no answer within {TIMEOUT:?}"))),
            }
        })?;
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| CtlError::BadAnswer {
            api: self.authority.clone(),
            reason: format!("{status} with a body that is not JSON ({e})"),
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let text = |field: &str| value["error"][field].as_str().map(str::to_owned);
        match (text("code"), text("message")) {
            (Some(code), Some(message)) => Err(CtlError::Api {
                status: status.as_u16(),
                hint: match code.as_str() {
                    "unauthorized" => {
                        " (set SLUICE_API_TOKEN or pass --token-file with the daemon's token)"
                    }
                    _ => "",
                },
                code,
                message,
            }),
            _ => Err(CtlError::BadAnswer {
                api: self.authority.clone(),
                reason: format!("{status} without the JSON error shape"),
            }),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), CtlError> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        // The connection task ends with the one request on it.
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let payload = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| self.bad_answer(format!("cannot build the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.bad_answer(format!("the body broke off: {e}")))?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    }

    fn unreachable(&self, reason: String) -> CtlError {
        CtlError::Unreachable {
            api: self.authority.clone(),
            reason,
        }
    }

    fn bad_answer(&self, reason: String) -> CtlError {
        CtlError::BadAnswer {
            api: self.authority.clone(),
            reason,
        }
    }
}

/// `http://host:port/` or `host:port` → `host:port`.
fn parse_api(api: &str) -> Result<String, CtlError> {
    let bad = || CtlError::BadAddress(api.to_owned());
    let rest = api.strip_prefix("http://").unwrap_or(api);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains("://") || rest.contains('/') || rest.is_empty() {
        return Err(bad());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(rest.to_owned())
}

/// Percent-encodes one path segment (RFC 3986 §2.3 unreserved kept).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_addresses_are_host_and_port() {
        for (given, want) in [
            ("127.0.0.1:7480", "127.0.0.1:7480"),
            ("http://127.0.0.1:7480", "127.0.0.1:7480"),
            ("http://[::1]:7480/", "[::1]:7480"),
            ("localhost:9", "localhost:9"),
        ] {
            assert_eq!(parse_api(given).unwrap(), want);
        }
        for bad in [
            "",
            "127.0.0.1",
            "https://127.0.0.1:7480",
            "http://h:7480/v1",
            ":7480",
            "h:99999",
        ] {
            let e = parse_api(bad).unwrap_err().to_string();
            assert!(e.contains("use host:port"), "{bad}: {e}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("standup-1.a_b~"), "standup-1.a_b~");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn nothing_listening_is_a_sentence_naming_the_address() {
        // Bind and drop: the port is then (almost surely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ApiClient::new(&format!("127.0.0.1:{port}"), None).unwrap();
        let e = client.get("/v1/meetings").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "cannot reach the control API at http://127.0.0.1:{port}"
            )),
            "{e}"
        );
        assert!(e.contains("is sluice running"), "{e}");
    }
}
