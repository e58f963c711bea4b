//! OTLP/HTTP sending: a POST of the pre-encoded (and pre-compressed) body with reqwest.
//!
//! The body is a [`Bytes`] clone, so no request copies or compresses anything. Each
//! `--connections` slot is its own reqwest client with its own connection pool: over HTTP/1.1 a
//! pool opens one connection per request in flight on it, over HTTP/2 (`--http2`) one
//! connection carries them all. Redirects are not followed and proxies from the environment are
//! ignored: loadgen measures the endpoint it was given and nothing else.

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};

use super::answer::{Answer, Outcome};
use super::options::{LoadgenError, Plan};
use super::payload::Payload;
use super::signal::Signal;

const PROTOBUF: HeaderValue = HeaderValue::from_static("application/x-protobuf");

/// Sends the run's request through one client. Clones share the client and its pool.
#[derive(Debug, Clone)]
pub struct HttpSender {
    client: reqwest::Client,
    url: reqwest::Url,
    body: Bytes,
    content_encoding: Option<HeaderValue>,
    signal: Signal,
}

impl HttpSender {
    /// One sender (client and pool) per connection slot of the plan.
    pub fn connect(plan: &Plan, payload: &Payload) -> Result<Vec<HttpSender>, LoadgenError> {
        let url = reqwest::Url::parse(&plan.endpoint).map_err(|_| LoadgenError::Endpoint {
            endpoint: plan.endpoint.clone(),
            reason: "not a URL",
            expected: "expected http://host:port or http://host:port/path",
        })?;
        let content_encoding = plan
            .compression
            .content_encoding()
            .map(HeaderValue::from_static);
        (0..plan.connections.max(1))
            .map(|_| {
                // reqwest is built without a crypto provider of its own (outpost uses ring only).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder = reqwest::Client::builder()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(plan.timeout)
                    .tcp_nodelay(true);
                if plan.http2 {
                    builder = builder.http2_prior_knowledge();
                } else {
                    builder = builder.http1_only();
                }
                let client = builder.build().map_err(LoadgenError::HttpClient)?;
                Ok(HttpSender {
                    client,
                    url: url.clone(),
                    body: payload.wire_body().clone(),
                    content_encoding: content_encoding.clone(),
                    signal: payload.signal(),
                })
            })
            .collect()
    }

    /// Sends the request once and says how it ended.
    pub async fn send(&mut self) -> Outcome {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, PROTOBUF)
            .body(self.body.clone());
        if let Some(encoding) = &self.content_encoding {
            request = request.header(CONTENT_ENCODING, encoding.clone());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Outcome::of(answer_for_error(&err)),
        };
        let status = response.status();
        // Read the body whatever the status: HTTP/1.1 reuses a connection only once its
        // response has been read to the end, and a reconnect per error would skew the run.
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => return Outcome::of(answer_for_error(&err)),
        };
        let answer = Answer::Http(status.as_u16());
        if !answer.is_success() {
            return Outcome::of(answer);
        }
        match self.signal.rejected_items(&body) {
            Ok(rejected) => Outcome { answer, rejected },
            Err(_) => Outcome::of(Answer::BadResponse),
        }
    }
}

fn answer_for_error(err: &reqwest::Error) -> Answer {
    if err.is_timeout() {
        Answer::Timeout
    } else if err.is_connect() {
        Answer::ConnectError
    } else {
        Answer::TransportError
    }
}
