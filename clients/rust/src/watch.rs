//! `Watch`: a WatchEvents stream that survives disconnects.

use tonic::{Status, Streaming};

use crate::EventClient;
use crate::retry::{RetryPolicy, is_resumable};
use crate::v1::watch_events_response::Kind;
use crate::v1::{Event, WatchEventsRequest, WatchEventsResponse};

/// Events of a `WatchEvents` subscription, each exactly once, in log order.
///
/// The watch remembers the latest cursor it was given (by `ready`, an event
/// or a heartbeat). When the stream breaks (server restart or shutdown,
/// lost connection, or the server cutting off a reader that fell too far
/// behind) it opens a new stream with `after` set to that cursor, waiting
/// per its [`RetryPolicy`] between attempts; events committed meanwhile are
/// replayed from the log. Other errors (revoked key, invalid cursor, a
/// cursor older than the log keeps) end the watch.
pub struct Watch {
    client: EventClient,
    request: WatchEventsRequest,
    stream: Option<Streaming<WatchEventsResponse>>,
    policy: RetryPolicy,
    /// Consecutive failed attempts to open or keep a stream.
    failures: u32,
    reconnects: u64,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("cursor", &self.request.after)
            .field("connected", &self.stream.is_some())
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl Watch {
    pub(crate) fn new(
        client: EventClient,
        request: WatchEventsRequest,
        policy: RetryPolicy,
    ) -> Self {
        Self {
            client,
            request,
            stream: None,
            policy,
            failures: 0,
            reconnects: 0,
        }
    }

    /// The latest position: pass it as `after` to resume later elsewhere.
    /// Empty until the first stream is ready.
    pub fn cursor(&self) -> &str {
        &self.request.after
    }

    /// How many times the stream was reopened after a break.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Opens a stream from the current cursor and waits for its `ready`.
    pub(crate) async fn open(&mut self) -> Result<(), Status> {
        let mut stream = self
            .client
            .watch_events(self.request.clone())
            .await?
            .into_inner();
        match stream.message().await? {
            Some(WatchEventsResponse {
                kind: Some(Kind::Ready(ready)),
            }) => self.request.after = ready.cursor,
            Some(_) => return Err(Status::internal("the stream did not start with `ready`")),
            None => return Err(Status::unavailable("the server closed the stream at once")),
        }
        self.stream = Some(stream);
        self.failures = 0;
        Ok(())
    }

    /// The next event; `None` never comes (a watch has no end), an error
    /// ends the watch for good.
    pub async fn next(&mut self) -> Option<Result<Event, Status>> {
        loop {
            let Some(stream) = &mut self.stream else {
                if let Err(status) = self.open().await
                    && let Err(status) = self.pause_after(status).await
                {
                    return Some(Err(status));
                }
                continue;
            };
            let status = match stream.message().await {
                Ok(Some(message)) => {
                    match message.kind {
                        Some(Kind::Ready(ready)) => self.request.after = ready.cursor,
                        Some(Kind::Heartbeat(beat)) => self.request.after = beat.cursor,
                        Some(Kind::Event(event)) => {
                            self.request.after.clone_from(&event.cursor);
                            return Some(Ok(event));
                        }
                        None => {}
                    }
                    continue;
                }
                Ok(None) => Status::unavailable("the server closed the stream"),
                Err(status) => status,
            };
            self.stream = None;
            if let Err(status) = self.pause_after(status).await {
                return Some(Err(status));
            }
        }
    }

    /// After a break: waits before the next attempt, or gives `status`
    /// back when it is not resumable or the attempts are spent.
    async fn pause_after(&mut self, status: Status) -> Result<(), Status> {
        if !is_resumable(&status) || self.failures + 1 >= self.policy.max_attempts {
            return Err(status);
        }
        let wait = self.policy.backoff(self.failures);
        self.failures += 1;
        self.reconnects += 1;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The watch as a `futures::Stream`, for combinators.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Event, Status>> {
        futures::stream::unfold(Some(self), |watch| async move {
            let mut watch = watch?;
            match watch.next().await? {
                Ok(event) => Some((Ok(event), Some(watch))),
                Err(status) => Some((Err(status), None)),
            }
        })
    }
}
