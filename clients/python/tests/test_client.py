"""SesameClient against the real server: calls, errors, retries."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import grpc
import pytest

from sesame_client import (
    RetryPolicy,
    SesameClient,
    SesameError,
    access_request_pb2 as ar,
    event_pb2,
    parse_target,
)

from .conftest import DelayProxy, SesameServer

RETRY_LOG = "failed with UNAVAILABLE"
DEADLINE_RETRY_LOG = "failed with DEADLINE_EXCEEDED"


def applicant(email: str = "ada@example.com") -> ar.Applicant:
    return ar.Applicant(email=email, full_name="Ada Lovelace", organization="Analytical Engines")


def submit(client: SesameClient, *, request_id: str | None = None, resource: str = "vpn-paris") -> ar.AccessRequest:
    return client.submit_access_request(
        applicant=applicant(),
        user_type=ar.USER_TYPE_PARTNER,
        resource=resource,
        justification="Maintenance of the difference engine",
        consent=ar.Consent(version="2026-01", purposes=["access_management"]),
        request_id=request_id,
    )


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sesame_client" and RETRY_LOG in r.getMessage()]


def test_submit_is_idempotent_with_request_id(client: SesameClient) -> None:
    first = submit(client, request_id="walkthrough-1")
    again = submit(client, request_id="walkthrough-1")
    assert first.name.startswith("accessRequests/")
    assert again.name == first.name
    assert again.create_time == first.create_time
    assert first.state == ar.ACCESS_REQUEST_STATE_PENDING
    assert first.request_id == "walkthrough-1"
    assert first.submitter == "bootstrap-admin"

    with pytest.raises(SesameError) as reused:
        submit(client, request_id="walkthrough-1", resource="another-resource")
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reused.value.reason == "REQUEST_ID_REUSED"


def test_submit_sends_a_generated_request_id_by_default(client: SesameClient) -> None:
    a = submit(client)
    b = submit(client)
    assert a.name != b.name
    uuid.UUID(a.request_id)  # a UUID was sent, so an automatic retry is safe
    assert a.request_id != b.request_id
    none = submit(client, request_id="")
    assert none.request_id == ""


def test_get_and_list(client: SesameClient, submitter: SesameClient) -> None:
    created = [submit(submitter) for _ in range(3)]
    got = client.get_access_request(created[0].name)
    assert got == created[0]

    page = client.list_access_requests(page_size=2)
    assert [r.name for r in page.access_requests] == [created[2].name, created[1].name]
    assert page.next_page_token
    everything = list(client.iter_access_requests(page_size=2))
    assert [r.name for r in everything] == [r.name for r in reversed(created)]

    client.approve_access_request(created[1].name)
    pending = client.list_access_requests(state=ar.ACCESS_REQUEST_STATE_PENDING)
    assert {r.name for r in pending.access_requests} == {created[0].name, created[2].name}


def test_approve(client: SesameClient, submitter: SesameClient) -> None:
    request = submit(submitter)
    approved = client.approve_access_request(request.name, note="welcome", etag=request.etag)
    assert approved.state == ar.ACCESS_REQUEST_STATE_APPROVED
    assert approved.decision.reason == "welcome"
    assert approved.decision.actor == "bootstrap-admin"
    assert approved.etag != request.etag

    with pytest.raises(SesameError) as again:
        client.approve_access_request(request.name)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert again.value.reason == "REQUEST_ALREADY_DECIDED"
    assert again.value.domain == "sesame.dev"


def test_reject_with_reason(client: SesameClient) -> None:
    request = submit(client)
    rejected = client.reject_access_request(request.name, reason="no contract on file")
    assert rejected.state == ar.ACCESS_REQUEST_STATE_REJECTED
    assert rejected.decision.reason == "no contract on file"
    assert client.get_access_request(request.name).state == ar.ACCESS_REQUEST_STATE_REJECTED


def test_cancel(client: SesameClient) -> None:
    request = submit(client)
    cancelled = client.cancel_access_request(request.name, reason="not needed any more")
    assert cancelled.state == ar.ACCESS_REQUEST_STATE_CANCELLED
    with pytest.raises(SesameError) as late:
        client.approve_access_request(request.name)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert late.value.reason == "REQUEST_ALREADY_CANCELLED"


def test_invalid_input_surfaces_error_info_and_bad_request(
    client: SesameClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sesame_client")
    started = time.monotonic()
    with pytest.raises(SesameError) as caught:
        client.submit_access_request(
            applicant=ar.Applicant(email="not-an-email", full_name="", organization="Analytical Engines"),
            user_type=ar.USER_TYPE_PARTNER,
            resource="vpn-paris",
            justification="x",
            consent=ar.Consent(version="2026-01", purposes=["access_management"]),
        )
    error = caught.value
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert error.domain == "sesame.dev"
    fields = {v.field for v in error.field_violations}
    assert fields == {"applicant.email", "applicant.full_name"}
    # Not retryable: raised at once, after one attempt.
    assert retry_records(caplog) == []
    assert time.monotonic() - started < 2.0


def test_unknown_request_is_not_found(client: SesameClient) -> None:
    with pytest.raises(SesameError) as caught:
        client.approve_access_request(f"accessRequests/{uuid.uuid4()}")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "REQUEST_NOT_FOUND"


def test_keys_and_roles(server: SesameServer) -> None:
    with SesameClient(server.target, api_key="sesame_not-a-real-key") as stranger:
        with pytest.raises(SesameError) as unknown:
            stranger.list_access_requests()
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unknown.value.reason == "API_KEY_INVALID"

    key = server.create_key("billing-backend", "submitter")
    with SesameClient(server.target, api_key=key) as submitter:
        request = submit(submitter)
        assert request.submitter == "billing-backend"
        with pytest.raises(SesameError) as denied:
            submitter.approve_access_request(request.name)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert denied.value.reason == "ROLE_NOT_ALLOWED"


def test_raw_stubs_carry_key_deadline_and_decode(client: SesameClient) -> None:
    request = submit(client)
    response = client.access_request_service.GetAccessRequest(ar.GetAccessRequestRequest(name=request.name))
    assert response.access_request.name == request.name
    chain = client.event_service.VerifyAuditChain(event_pb2.VerifyAuditChainRequest())
    assert chain.intact

    with pytest.raises(grpc.RpcError) as raw:
        client.access_request_service.GetAccessRequest(
            ar.GetAccessRequestRequest(name=f"accessRequests/{uuid.uuid4()}"), timeout=5
        )
    decoded = SesameError.from_rpc_error(raw.value)
    assert decoded.code() == grpc.StatusCode.NOT_FOUND
    assert decoded.reason == "REQUEST_NOT_FOUND"


def test_deadline_bounds_retries_and_is_overridable_per_call(server: SesameServer) -> None:
    assert server.admin_key is not None
    endless = RetryPolicy(max_attempts=1000, initial_backoff=0.1, max_backoff=0.1, jitter=0)
    with SesameClient(server.target, api_key=server.admin_key, default_timeout=0.5, retry=endless) as client:
        server.stop()
        started = time.monotonic()
        with pytest.raises(SesameError) as default_deadline:
            client.list_access_requests()
        default_elapsed = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(SesameError) as own_deadline:
            client.list_access_requests(timeout=1.5)
        own_elapsed = time.monotonic() - started
    # The last attempt either fails at once (UNAVAILABLE) or, when grpc is
    # reconnecting meanwhile, waits out the little time left: both end the
    # retries at the deadline, which is what the timings below check.
    ended = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert default_deadline.value.code() in ended
    assert own_deadline.value.code() in ended
    assert 0.3 < default_elapsed < 2.0
    assert 1.2 < own_elapsed < 3.5


def test_unavailable_is_retried_while_the_server_restarts(
    server: SesameServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sesame_client")
    assert server.admin_key is not None
    retry = RetryPolicy(max_attempts=10, initial_backoff=0.2, max_backoff=1.0)
    with SesameClient(server.target, api_key=server.admin_key, retry=retry) as client:
        request = submit(client)
        server.stop()
        restarter = threading.Timer(1.0, server.start)
        restarter.start()
        try:
            got = client.get_access_request(request.name)  # fails until the server is back
        finally:
            restarter.join()
        assert got.name == request.name
        assert len(retry_records(caplog)) >= 1


def test_retries_are_bounded(server: SesameServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sesame_client")
    assert server.admin_key is not None
    retry = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.1)
    with SesameClient(server.target, api_key=server.admin_key, retry=retry) as client:
        server.stop()
        with pytest.raises(SesameError) as caught:
            client.list_access_requests()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(retry_records(caplog)) == 2  # 3 attempts in all


def test_parse_target() -> None:
    assert parse_target("127.0.0.1:50051") == ("127.0.0.1:50051", None)
    assert parse_target("http://127.0.0.1:50051") == ("127.0.0.1:50051", False)
    assert parse_target("https://sesame.example.com") == ("sesame.example.com:443", True)
    assert parse_target("https://[::1]:8443/") == ("[::1]:8443", True)
    assert parse_target("dns:///sesame:50051") == ("dns:///sesame:50051", None)
    with SesameClient("https://sesame.example.com", api_key="k") as tls_client:
        assert tls_client.tls
    with SesameClient("127.0.0.1:1", api_key="k", tls=True) as explicit:
        assert explicit.tls
    with SesameClient("127.0.0.1:1", api_key="k") as plain:
        assert not plain.tls


def submit_as(client: SesameClient, email: str, request_id: str | None) -> ar.AccessRequest:
    return client.submit_access_request(
        applicant=applicant(email),
        user_type=ar.USER_TYPE_PARTNER,
        resource="vpn-paris",
        justification="Maintenance of the difference engine",
        consent=ar.Consent(version="2026-01", purposes=["access_management"]),
        request_id=request_id,
    )


def stored_for(client: SesameClient, email: str) -> list[ar.AccessRequest]:
    request = ar.ListAccessRequestsRequest(applicant_email=email)
    return list(client.access_request_service.ListAccessRequests(request).access_requests)


def deadline_retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "sesame_client" and DEADLINE_RETRY_LOG in r.getMessage()
    ]


# Guards the operator's finding: a submit whose attempt timed out while the
# server committed it is retried and returns that request, never a second.
def test_a_submit_whose_attempt_times_out_is_retried_and_returns_the_committed_request(
    server: SesameServer,
    client: SesameClient,
    delay_proxy: Callable[[int], DelayProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sesame_client")
    assert server.admin_key is not None
    # Answers held 800 ms from the first request on; attempts get 400 ms.
    proxy = delay_proxy(800)
    with SesameClient(
        proxy.target, api_key=server.admin_key, default_timeout=10.0, attempt_timeout=0.4
    ) as delayed:
        started = time.monotonic()
        submitted = submit_as(delayed, "held@example.com", None)
        assert time.monotonic() - started >= 0.4, "the first attempt timed out"
    assert len(deadline_retries(caplog)) >= 1
    stored = stored_for(client, "held@example.com")
    assert [r.name for r in stored] == [submitted.name], "one request, never a second"
    assert stored[0].request_id == submitted.request_id != ""

    # Without a request_id: one attempt, DEADLINE_EXCEEDED, and the server has it.
    caplog.clear()
    proxy = delay_proxy(800)
    with SesameClient(
        proxy.target, api_key=server.admin_key, default_timeout=10.0, attempt_timeout=0.4
    ) as delayed:
        started = time.monotonic()
        with pytest.raises(SesameError) as caught:
            submit_as(delayed, "unkeyed@example.com", "")
        assert time.monotonic() - started < 5, "one attempt, not the whole deadline"
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert deadline_retries(caplog) == []
    time.sleep(0.5)
    stored = stored_for(client, "unkeyed@example.com")
    assert len(stored) == 1


def test_deadline_exceeded_of_other_calls_is_not_retried(
    server: SesameServer,
    client: SesameClient,
    delay_proxy: Callable[[int], DelayProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sesame_client")
    assert server.admin_key is not None
    known = submit_as(client, "known@example.com", None)
    proxy = delay_proxy(800)
    with SesameClient(
        proxy.target, api_key=server.admin_key, default_timeout=10.0, attempt_timeout=0.4
    ) as delayed:
        with pytest.raises(SesameError) as caught:
            delayed.get_access_request(known.name)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert deadline_retries(caplog) == []
