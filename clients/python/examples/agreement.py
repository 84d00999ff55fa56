"""The cross-client agreement scenario, as every client runs it.

Submit with a request id twice, list, approve with the etag, approve again
with the now stale etag, read the request's events from a watch opened before
the first submit, and one invalid submit. Prints one JSON document with the
volatile values (names, etags, cursors, sequences) replaced by relations;
``server/tests/it/agreement.rs`` runs it in each of the five clients against
one server and checks that the documents are equal.

    SESAME_URL=http://127.0.0.1:50051 SESAME_ADMIN_KEY=sesame_... \\
    SESAME_SUBMITTER_KEY=sesame_... SESAME_RUN=r1 python examples/agreement.py

(``SESAME_RUN`` keeps runs apart on one server: it is the request id and the
resource of the run's request.)
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from sesame_client import SesameClient, SesameError, access_request_pb2 as ar, event_pb2 as ev

UUID_NAME = re.compile(r"accessRequests/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def name_shape(name: str) -> str:
    """``accessRequests/{uuid}`` when ``name`` has that shape, else ``name`` itself."""
    return "accessRequests/{uuid}" if UUID_NAME.fullmatch(name) else name


def error_json(error: SesameError) -> dict[str, Any]:
    """The code, ErrorInfo reason and message of an error."""
    return {"code": error.code().name, "reason": error.reason, "message": error.details()}


def scenario(url: str, admin_key: str, submitter_key: str, run: str) -> dict[str, Any]:
    resource = f"agreement-{run}"
    request_id = f"agreement-{run}"
    applicant = ar.Applicant(email="ada@example.com", full_name="Ada Lovelace", organization="Analytical Engines")
    submission: dict[str, Any] = dict(
        applicant=applicant,
        user_type=ar.USER_TYPE_PARTNER,
        locale="en",
        resource=resource,
        justification=f"Agreement run {run}",
        consent=ar.Consent(version="2026-01", purposes=["access_management"]),
    )
    with SesameClient(url, api_key=admin_key) as admin, SesameClient(url, api_key=submitter_key) as submitter:
        # Live before the first submit: every event of the request comes through it.
        with admin.watch() as watch:
            first = submitter.submit_access_request(**submission, request_id=request_id)
            retry = submitter.submit_access_request(**submission, request_id=request_id)

            this_run = [
                request.name
                for request in admin.iter_access_requests(
                    state=ar.ACCESS_REQUEST_STATE_PENDING, user_type=ar.USER_TYPE_PARTNER
                )
                if request.resource == resource
            ]

            approved = admin.approve_access_request(first.name, etag=first.etag)
            try:
                admin.approve_access_request(first.name, etag=first.etag)
            except SesameError as error:
                stale = error
            else:
                raise SystemExit("an approve with a stale etag succeeded")

            # The audit trail says which events the request has; the watch is
            # read up to the last of them (events arrive in log order).
            audit = list(admin.event_service.ListEvents(ev.ListEventsRequest(access_request=first.name)).events)
            if not audit:
                raise SystemExit("the request has no event")
            last = audit[-1].sequence
            watched = []
            for event in watch:
                if event.access_request == first.name:
                    watched.append(event)
                if event.sequence >= last:
                    break

        invalid_applicant = ar.Applicant()
        invalid_applicant.CopyFrom(applicant)
        invalid_applicant.email = ""
        try:
            submitter.submit_access_request(**{**submission, "applicant": invalid_applicant, "justification": "x" * 2001})
        except SesameError as error:
            invalid = error
        else:
            raise SystemExit("an invalid submit succeeded")

    return {
        "submit": {
            "name": name_shape(first.name),
            "state": ar.AccessRequestState.Name(first.state),
            "submitter": first.submitter,
            "request_id_echoed": first.request_id == request_id,
            "resource_echoed": first.resource == resource,
            "retry_same_name": retry.name == first.name,
            "retry_same_etag": retry.etag == first.etag,
            "retry_state": ar.AccessRequestState.Name(retry.state),
        },
        "list": {
            "this_run": len(this_run),
            "this_run_is_the_submitted": this_run == [first.name],
        },
        "approve": {
            "state": ar.AccessRequestState.Name(approved.state),
            "same_name": approved.name == first.name,
            "etag_changed": approved.etag != first.etag,
            "decided_by": approved.decision.actor,
            "gateway_code": ar.GatewayCodeState.Name(approved.gateway_code.state)
            if approved.HasField("gateway_code")
            else "",
        },
        "approve_stale_etag": error_json(stale),
        "watch": {
            "event_types": [ev.EventType.Name(event.type) for event in watched],
            "actors": [event.actor for event in watched],
            "states": [ar.AccessRequestState.Name(event.state) for event in watched],
            "same_as_audit_trail": [(e.sequence, e.type) for e in watched] == [(e.sequence, e.type) for e in audit],
        },
        "invalid_submit": {
            **error_json(invalid),
            "field_violations": [
                {"field": field, "description": description}
                for field, description in sorted((v.field, v.description) for v in invalid.field_violations)
            ],
        },
    }


def main() -> None:
    env = os.environ
    document = scenario(env["SESAME_URL"], env["SESAME_ADMIN_KEY"], env["SESAME_SUBMITTER_KEY"], env["SESAME_RUN"])
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
