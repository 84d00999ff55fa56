//! `sesame.v1.EventService`: watch, list and verify the event log.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use sesame_proto::v1 as pb;
use sesame_proto::v1::event_service_server::EventService;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::paging::Paging;
use super::{convert, paging, principal};
use crate::auth::{Permission, authorize};
use crate::domain::decode_cursor;
use crate::domain::validation::{TextRule, Validator, Violations};
use crate::events::{self, Hub, WatchItem, WatchOptions, WatchRequest};
use crate::store::{EventFilter, Store};
use crate::telemetry::Metrics;

/// Serves the event RPCs.
#[derive(Clone, Debug)]
pub struct EventApi {
    store: Store,
    hub: Hub,
    options: WatchOptions,
    /// Counts open streams in `sesame_watchers_connected`.
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl EventApi {
    /// The service over `store` and `hub`; streams end when `shutdown` is
    /// cancelled.
    pub fn new(
        store: Store,
        hub: Hub,
        options: WatchOptions,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            hub,
            options,
            metrics,
            shutdown,
        }
    }
}

/// The response stream of WatchEvents.
pub type WatchEventsStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send + 'static>>;

fn watch_message(item: WatchItem) -> pb::WatchEventsResponse {
    use pb::watch_events_response::Kind;
    let kind = match item {
        WatchItem::Ready { cursor } => Kind::Ready(pb::WatchReady {
            cursor: crate::domain::encode_cursor(cursor),
        }),
        WatchItem::Event(shared) => Kind::Event(shared.wire.clone()),
        WatchItem::Heartbeat { cursor } => Kind::Heartbeat(pb::WatchHeartbeat {
            cursor: crate::domain::encode_cursor(cursor),
            time: Some(convert::timestamp(chrono::Utc::now())),
        }),
    };
    pb::WatchEventsResponse { kind: Some(kind) }
}

// The argument checks of each RPC, run after authorization and before any
// store call. Public so that the fuzz targets (fuzz/) run exactly these.

/// The checked arguments of WatchEvents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchArgs {
    /// Resume after this sequence; `None`: from now on.
    pub after: Option<i64>,
    /// The kinds and request to watch (the other filters are unused).
    pub filter: EventFilter,
}

/// Checks a WatchEvents message: its filters, then its cursor.
pub fn check_watch_events(message: &pb::WatchEventsRequest) -> Result<WatchArgs, Status> {
    let mut check = Validator::new();
    let kinds = convert::event_types_input(&mut check, "event_types", &message.event_types);
    let access_request = check.optional_name("access_request", &message.access_request);
    check.finish()?;
    let after = if message.after.is_empty() {
        None
    } else {
        Some(decode_cursor(&message.after).ok_or_else(super::status::cursor_invalid)?)
    };
    Ok(WatchArgs {
        after,
        filter: EventFilter {
            kinds,
            access_request,
            ..EventFilter::default()
        },
    })
}

/// Checks a ListEvents message: its paging and its filters.
pub fn check_list_events(
    message: &pb::ListEventsRequest,
) -> Result<(Paging<'_>, EventFilter), Violations> {
    let mut check = Validator::new();
    let paging = paging::paging(&mut check, message.page_size, &message.page_token);
    let kinds = convert::event_types_input(&mut check, "event_types", &message.event_types);
    let access_request = check.optional_name("access_request", &message.access_request);
    let actor = check.text("actor", &message.actor, TextRule::optional(64));
    let (from, before) = paging::time_range(
        &mut check,
        ("occur_time_start", message.occur_time_start.as_ref()),
        ("occur_time_end", message.occur_time_end.as_ref()),
    );
    check.finish()?;
    let filter = EventFilter {
        kinds,
        access_request,
        actor,
        from,
        before,
    };
    Ok((paging, filter))
}

/// Checks a VerifyAuditChain message: the first sequence and the last
/// (`None`: up to the head of the log).
pub fn check_verify_audit_chain(
    message: &pb::VerifyAuditChainRequest,
) -> Result<(i64, Option<i64>), Violations> {
    let mut check = Validator::new();
    if message.start_sequence < 0 {
        check.violation("start_sequence", "must not be negative");
    }
    if message.end_sequence < 0 {
        check.violation("end_sequence", "must not be negative");
    }
    if message.end_sequence > 0 && message.end_sequence < message.start_sequence {
        check.violation("end_sequence", "must not be before start_sequence");
    }
    check.finish()?;
    let end = (message.end_sequence > 0).then_some(message.end_sequence);
    Ok((message.start_sequence, end))
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchEventsStream = WatchEventsStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadEvents)?;
        let args = check_watch_events(request.get_ref())?;
        let watch_request = WatchRequest {
            caller: Some(caller.name.clone()),
            after: args.after,
            filter: args.filter,
        };
        // The watcher task holds the guard: the watcher is counted until
        // the server ends the stream (even if a stalled transport cannot
        // deliver the end yet) or the client goes away.
        let connected = self.metrics.watcher_connected();
        let opened = events::open(
            &self.hub,
            &self.store,
            watch_request,
            self.options.clone(),
            self.shutdown.clone(),
            connected,
        )
        .await?;
        let items = ReceiverStream::new(opened.items).map(|item| Ok(watch_message(item)));
        let end = futures::stream::once(opened.end)
            .filter_map(|ended| std::future::ready(ended.ok().map(|end| Err(Status::from(end)))));
        Ok(Response::new(Box::pin(items.chain(end))))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadEvents)?;
        let message = request.into_inner();
        let (paging, filter) = check_list_events(&message)?;
        let page = self
            .store
            .list_events(&caller.name, &filter, paging.page_size, paging.page_token)
            .await?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.events.iter().map(convert::event).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadEvents)?;
        let (start, end) = check_verify_audit_chain(request.get_ref())?;
        let report = self.store.verify_chain(start, end).await?;
        let (broken_sequence, problem) = report.broken.clone().unwrap_or_default();
        Ok(Response::new(pb::VerifyAuditChainResponse {
            intact: report.broken.is_none(),
            first_sequence: report.first_seq,
            last_verified_sequence: report.last_verified_seq,
            verified_events: report.verified,
            broken_sequence,
            problem,
            next_start_sequence: report.next_start_seq.unwrap_or_default(),
        }))
    }
}
