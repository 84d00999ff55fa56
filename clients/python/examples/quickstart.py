import itertools
import os

from sesame_client import SesameClient, access_request_pb2 as ar, event_pb2 as ev

with SesameClient(os.environ["SESAME_URL"], api_key=os.environ["SESAME_KEY"]) as client:
    with client.watch(event_types=[ev.EVENT_TYPE_REQUEST_SUBMITTED, ev.EVENT_TYPE_REQUEST_APPROVED]) as events:
        request = client.submit_access_request(
            applicant=ar.Applicant(email="ada@example.com", full_name="Ada Lovelace", organization="Analytical Engines"),
            user_type=ar.USER_TYPE_PARTNER,
            resource="vpn-paris",
            justification="Maintenance of the difference engine",
            consent=ar.Consent(version="2026-01", purposes=["access_management"]),
        )
        client.approve_access_request(request.name, note="welcome")
        for event in itertools.islice(events, 2):
            print(ev.EventType.Name(event.type), event.access_request)
