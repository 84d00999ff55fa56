//! `SesameClient`: one channel, the bearer key, deadlines and retries.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::retry::{RetryPolicy, is_retryable};
use crate::v1::access_request_service_client::AccessRequestServiceClient;
use crate::v1::email_service_client::EmailServiceClient;
use crate::v1::event_service_client::EventServiceClient;
use crate::v1::privacy_service_client::PrivacyServiceClient;
use crate::v1::{
    AccessRequest, ApproveAccessRequestRequest, CancelAccessRequestRequest,
    GetAccessRequestRequest, ListAccessRequestsRequest, ListAccessRequestsResponse,
    RejectAccessRequestRequest, SubmitAccessRequestRequest, WatchEventsRequest,
};
use crate::{AccessRequestClient, Bearer, EmailClient, EventClient, PrivacyClient, Watch};

/// How a [`SesameClient`] connects and calls.
#[derive(Clone, Debug)]
pub struct Options {
    /// Deadline of each unary call, retries included (sent to the server as
    /// `grpc-timeout` too). Default 10 s.
    pub timeout: Duration,
    /// Time allowed to open a connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Deadline of each attempt of a unary call: an attempt gets this or
    /// the time left of [`Options::timeout`], whichever is shorter. `None`
    /// (the default): one attempt may use all the time left. With it, a
    /// [`SesameClient::submit`] whose attempt times out is tried again (its
    /// `request_id` returns the request the server may have committed).
    pub attempt_timeout: Option<Duration>,
    /// Retry of `UNAVAILABLE` for unary calls (and of an attempt's
    /// `DEADLINE_EXCEEDED` for a submit with a `request_id`).
    pub retry: RetryPolicy,
    /// Reconnection policy of [`SesameClient::watch`].
    pub watch_retry: RetryPolicy,
    /// TLS settings for `https://` targets (CA certificate, client identity
    /// for mTLS, domain name); `None` for plaintext `http://`.
    pub tls: Option<ClientTlsConfig>,
    /// Connect on first use instead of in `connect`, so a client can be
    /// created before the server is up. Default false: `connect` fails fast.
    pub lazy: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: None,
            retry: RetryPolicy::default(),
            watch_retry: RetryPolicy::watch_default(),
            tls: None,
            lazy: false,
        }
    }
}

/// Why [`SesameClient::connect`] failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("invalid target URL {url:?}: {source}")]
    InvalidUrl {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the API key is not valid gRPC metadata: it must be printable ASCII")]
    InvalidKey,
    #[error("invalid TLS settings: {0}")]
    Tls(tonic::transport::Error),
    #[error("could not connect to {url}: {source}")]
    Unreachable {
        url: String,
        source: tonic::transport::Error,
    },
}

/// A connection to one Sesame server (or a load balancer in front of
/// several) with an API key. Cheap to clone: clones share the connection.
#[derive(Clone, Debug)]
pub struct SesameClient {
    channel: Channel,
    bearer: Bearer,
    options: Options,
}

impl SesameClient {
    /// Connects to `url` (`http://host:port`, or `https://` with
    /// [`Options::tls`]) with the default [`Options`].
    pub async fn connect(url: &str, api_key: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, api_key, Options::default()).await
    }

    /// Connects with explicit options.
    pub async fn connect_with(
        url: &str,
        api_key: &str,
        options: Options,
    ) -> Result<Self, ConnectError> {
        let bearer = Bearer::new(api_key).ok_or(ConnectError::InvalidKey)?;
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|source| ConnectError::InvalidUrl {
                url: url.to_owned(),
                source,
            })?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &options.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(ConnectError::Tls)?;
        }
        let channel = if options.lazy {
            endpoint.connect_lazy()
        } else {
            endpoint
                .connect()
                .await
                .map_err(|source| ConnectError::Unreachable {
                    url: url.to_owned(),
                    source,
                })?
        };
        Ok(Self {
            channel,
            bearer,
            options,
        })
    }

    /// The generated `AccessRequestService` stub, key attached; calls made
    /// on it have no default deadline and no retry.
    pub fn access_requests(&self) -> AccessRequestClient {
        AccessRequestServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The generated `EventService` stub, key attached.
    pub fn events(&self) -> EventClient {
        EventServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The generated `EmailService` stub, key attached.
    pub fn emails(&self) -> EmailClient {
        EmailServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The generated `PrivacyService` stub, key attached (admin keys).
    pub fn privacy(&self) -> PrivacyClient {
        PrivacyServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    /// The underlying channel, e.g. for the health service.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Runs one unary call under the client's deadline and retry policy.
    /// `call` gets a fresh request carrying the attempt's deadline (the
    /// time left, or [`Options::attempt_timeout`] when shorter) as
    /// `grpc-timeout` and is invoked again for each retry of `UNAVAILABLE`.
    /// A `DEADLINE_EXCEEDED` is never retried here: only [`Self::submit`]
    /// knows that trying again is safe.
    pub async fn call<M, T, F, Fut>(&self, message: M, call: F) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.call_with(message, Retry::Unavailable, call).await
    }

    async fn call_with<M, T, F, Fut>(
        &self,
        message: M,
        retry_on: Retry,
        mut call: F,
    ) -> Result<T, Status>
    where
        M: Clone,
        F: FnMut(Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.options.timeout;
        let mut retry = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded(self.options.timeout));
            }
            let attempt_time = self
                .options
                .attempt_timeout
                .map_or(remaining, |attempt| attempt.min(remaining));
            let attempt_deadline = Instant::now() + attempt_time;
            let mut request = Request::new(message.clone());
            request.set_timeout(attempt_time);
            let answer = tokio::time::timeout(attempt_time, call(request)).await;
            // tonic's channel enforces `grpc-timeout` itself and ends the
            // attempt CANCELLED ("Timeout expired"): that is our deadline too.
            let timed_out = match &answer {
                Err(_) => true,
                Ok(Err(status)) => {
                    status.code() == tonic::Code::Cancelled && Instant::now() >= attempt_deadline
                }
                Ok(Ok(_)) => false,
            };
            let outcome = match answer {
                Ok(outcome) if !timed_out => outcome.map(tonic::Response::into_inner),
                _ if attempt_time >= remaining => {
                    return Err(deadline_exceeded(self.options.timeout));
                }
                _ => Err(Status::deadline_exceeded(format!(
                    "no answer within the attempt deadline of {attempt_time:?}"
                ))),
            };
            let status = match outcome {
                Err(status) if retry_on.allows(&status) => status,
                other => return other,
            };
            if retry + 1 >= self.options.retry.max_attempts {
                return Err(status);
            }
            let wait = self.options.retry.backoff(retry);
            if Instant::now() + wait >= deadline {
                return Err(status);
            }
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    /// Submits a request. Without a `request_id` one is generated, so that a
    /// retry after `UNAVAILABLE` cannot create the request twice. Because
    /// the id makes it safe, an attempt that ends `DEADLINE_EXCEEDED` (see
    /// [`Options::attempt_timeout`]) is retried too while the call's
    /// deadline has time left: the server may have committed the request,
    /// and the retry returns it.
    pub async fn submit(
        &self,
        mut request: SubmitAccessRequestRequest,
    ) -> Result<AccessRequest, Status> {
        if request.request_id.is_empty() {
            request.request_id = uuid::Uuid::new_v4().to_string();
        }
        let stub = self.access_requests();
        let response = self
            .call_with(request, Retry::UnavailableOrDeadline, |r| {
                let mut stub = stub.clone();
                async move { stub.submit_access_request(r).await }
            })
            .await?;
        response.access_request.ok_or_else(missing_request)
    }

    /// Reads one request by name (`accessRequests/{uuid}`).
    pub async fn get(&self, name: &str) -> Result<AccessRequest, Status> {
        let stub = self.access_requests();
        let message = GetAccessRequestRequest {
            name: name.to_owned(),
        };
        let response = self
            .call(message, |r| {
                let mut stub = stub.clone();
                async move { stub.get_access_request(r).await }
            })
            .await?;
        response.access_request.ok_or_else(missing_request)
    }

    /// One page of requests.
    pub async fn list(
        &self,
        request: ListAccessRequestsRequest,
    ) -> Result<ListAccessRequestsResponse, Status> {
        let stub = self.access_requests();
        self.call(request, |r| {
            let mut stub = stub.clone();
            async move { stub.list_access_requests(r).await }
        })
        .await
    }

    /// Approves a pending request. A retry of a decision the server had
    /// already applied answers `FAILED_PRECONDITION`; send the `etag` to
    /// make sure the decision is about the version you read.
    pub async fn approve(
        &self,
        request: ApproveAccessRequestRequest,
    ) -> Result<AccessRequest, Status> {
        let stub = self.access_requests();
        let response = self
            .call(request, |r| {
                let mut stub = stub.clone();
                async move { stub.approve_access_request(r).await }
            })
            .await?;
        response.access_request.ok_or_else(missing_request)
    }

    /// Rejects a pending request with a reason.
    pub async fn reject(
        &self,
        request: RejectAccessRequestRequest,
    ) -> Result<AccessRequest, Status> {
        let stub = self.access_requests();
        let response = self
            .call(request, |r| {
                let mut stub = stub.clone();
                async move { stub.reject_access_request(r).await }
            })
            .await?;
        response.access_request.ok_or_else(missing_request)
    }

    /// Cancels a pending request (its submitter or an admin).
    pub async fn cancel(
        &self,
        request: CancelAccessRequestRequest,
    ) -> Result<AccessRequest, Status> {
        let stub = self.access_requests();
        let response = self
            .call(request, |r| {
                let mut stub = stub.clone();
                async move { stub.cancel_access_request(r).await }
            })
            .await?;
        response.access_request.ok_or_else(missing_request)
    }

    /// Watches events after `request.after` (empty: from now), reconnecting
    /// from the last cursor whenever the stream breaks; see [`Watch`].
    /// Returns once the server has confirmed the subscription, so every
    /// event committed after this returns is seen.
    pub async fn watch(&self, request: WatchEventsRequest) -> Result<Watch, Status> {
        let mut watch = Watch::new(self.events(), request, self.options.watch_retry.clone());
        watch.open().await?;
        Ok(watch)
    }
}

/// Which failed attempts [`SesameClient::call_with`] tries again.
#[derive(Clone, Copy, Debug)]
enum Retry {
    /// `UNAVAILABLE` only: every call.
    Unavailable,
    /// `UNAVAILABLE` and an attempt's `DEADLINE_EXCEEDED`: a submit with a
    /// `request_id`, which returns the committed request instead of
    /// creating a second one.
    UnavailableOrDeadline,
}

impl Retry {
    fn allows(self, status: &Status) -> bool {
        match self {
            Self::Unavailable => is_retryable(status),
            Self::UnavailableOrDeadline => {
                is_retryable(status) || status.code() == tonic::Code::DeadlineExceeded
            }
        }
    }
}

fn deadline_exceeded(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "no answer within the client deadline of {timeout:?}"
    ))
}

fn missing_request() -> Status {
    Status::internal("the server's response carried no access_request")
}
