"""The resumable watch iterator against the real server."""

from __future__ import annotations

import threading

import grpc
import pytest

from sesame_client import SesameClient, SesameError, event_pb2 as ev

from .conftest import SesameServer
from .test_client import submit

REQUEST_EVENTS = [
    ev.EVENT_TYPE_REQUEST_SUBMITTED,
    ev.EVENT_TYPE_REQUEST_APPROVED,
    ev.EVENT_TYPE_REQUEST_REJECTED,
    ev.EVENT_TYPE_REQUEST_CANCELLED,
]


def test_watch_yields_submitted_and_approved(client: SesameClient, submitter: SesameClient) -> None:
    with client.watch(event_types=REQUEST_EVENTS) as events:
        start = events.cursor
        assert start  # live: the ready cursor is known before anything is submitted
        request = submit(submitter)
        client.approve_access_request(request.name, note="welcome")
        submitted = next(events)
        approved = next(events)
    assert submitted.type == ev.EVENT_TYPE_REQUEST_SUBMITTED
    assert approved.type == ev.EVENT_TYPE_REQUEST_APPROVED
    assert submitted.access_request == approved.access_request == request.name
    assert approved.reason == "welcome"
    assert approved.sequence > submitted.sequence
    assert events.cursor == approved.cursor


def test_watch_can_expose_ready_and_replays_after_a_cursor(client: SesameClient) -> None:
    first = submit(client)
    second = submit(client)
    with client.watch(include_control=True, event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED]) as live:
        ready = next(live)
    assert ready.WhichOneof("kind") == "ready"

    # Replay everything after the start of the log.
    with client.watch(after=ready.ready.cursor, event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED]) as nothing_new:
        third = submit(client)
        assert next(nothing_new).access_request == third.name
    listed = client.event_service.ListEvents(
        ev.ListEventsRequest(event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED])
    ).events
    assert [e.access_request for e in listed] == [first.name, second.name, third.name]
    with client.watch(after=listed[0].cursor, event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED]) as replay:
        assert next(replay).access_request == second.name
        assert next(replay).access_request == third.name


def test_watch_close_from_another_thread_ends_iteration(client: SesameClient) -> None:
    events = client.watch()
    threading.Timer(0.3, events.close).start()
    assert list(events) == []


def test_watch_raises_non_resumable_errors(client: SesameClient) -> None:
    with pytest.raises(SesameError) as caught:
        client.watch(after="not-a-cursor")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "CURSOR_INVALID"


def test_watch_resumes_across_a_server_restart(server: SesameServer) -> None:
    assert server.admin_key is not None
    with SesameClient(server.target, api_key=server.admin_key) as client:
        events = client.watch(event_types=REQUEST_EVENTS)
        a = submit(client)
        event_a = next(events)
        assert event_a.access_request == a.name

        # Restart on the same database and port. The stream was ended by the
        # shutdown (UNAVAILABLE, SERVER_SHUTTING_DOWN); B and C are committed
        # before the iterator notices, so they come from the replay after
        # the cursor of A, and D arrives live on the resumed stream.
        server.stop()
        server.start()
        b = submit(client)
        c = submit(client)
        received = [next(events), next(events)]
        d = submit(client)
        received.append(next(events))
        events.close()

    assert events.reconnects >= 1
    assert [e.access_request for e in received] == [b.name, c.name, d.name]
    assert all(e.type == ev.EVENT_TYPE_REQUEST_SUBMITTED for e in received)
    sequences = [event_a.sequence] + [e.sequence for e in received]
    assert sequences == sorted(set(sequences))  # no duplicate, in order
    assert events.cursor == received[-1].cursor


def test_watch_reconnects_while_the_server_is_down(server: SesameServer) -> None:
    """The iterator keeps trying (bounded backoff) until the server is back."""
    assert server.admin_key is not None
    with SesameClient(server.target, api_key=server.admin_key) as client:
        events = client.watch(event_types=REQUEST_EVENTS)
        a = submit(client)
        assert next(events).access_request == a.name
        server.stop()
        # The next read finds the stream broken and the server down; the
        # server comes back 1.5 s later with a request already waiting.
        def restart_and_submit() -> None:
            server.start()
            with SesameClient(server.target, api_key=server.admin_key or "") as other:
                holder.append(submit(other))

        holder: list = []
        timer = threading.Timer(1.5, restart_and_submit)
        timer.start()
        try:
            event_b = next(events)
        finally:
            timer.join()
            events.close()
    assert event_b.access_request == holder[0].name
