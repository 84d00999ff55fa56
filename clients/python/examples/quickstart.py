import itertools
import os

from sesame_client import SesameClient, access_request_pb2 as ar, event_pb2 as ev

url = os.environ["SESAME_URL"]
# A backend submits with its submitter key; an administrator watches and approves.
with (
    SesameClient(url, api_key=os.environ["SESAME_SUBMITTER_KEY"]) as backend,
    SesameClient(url, api_key=os.environ["SESAME_ADMIN_KEY"]) as admin,
):
    with admin.watch(event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED, ev.EVENT_TYPE_REQUEST_APPROVED]) as events:
        request = backend.submit_access_request(
            applicant=ar.Applicant(email="ada@example.com", full_name="Ada Lovelace", organization="Analytical Engines"),
            user_type=ar.USER_TYPE_PARTNER,
            resource="vpn-paris",
            justification="Maintenance of the difference engine",
            consent=ar.Consent(version="2026-01", purposes=["access_management"]),
        )
        admin.approve_access_request(request.name, note="welcome")
        for event in itertools.islice(events, 2):
            print(ev.EventType.Name(event.type), event.access_request)
