import dev.sesame.client.EventWatch;
import dev.sesame.client.SesameClient;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.Applicant;
import sesame.v1.AccessRequestOuterClass.ApproveAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.Consent;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.UserType;
import sesame.v1.EventOuterClass.Event;
import sesame.v1.EventOuterClass.EventType;
import sesame.v1.EventOuterClass.WatchEventsRequest;

public class Quickstart {
  public static void main(String[] args) {
    String url = System.getenv("SESAME_URL");
    // A backend submits with its submitter key; an administrator watches and approves.
    try (SesameClient backend = SesameClient.builder(url, System.getenv("SESAME_SUBMITTER_KEY")).build();
        SesameClient admin = SesameClient.builder(url, System.getenv("SESAME_ADMIN_KEY")).build();
        EventWatch events = admin.watch(WatchEventsRequest.newBuilder()
            .addEventTypes(EventType.EVENT_TYPE_REQUEST_SUBMITTED)
            .addEventTypes(EventType.EVENT_TYPE_REQUEST_APPROVED)
            .build())) { // live once returned: no event from now on can be missed
      AccessRequest request = backend.accessRequests().submitAccessRequest(SubmitAccessRequestRequest.newBuilder()
          .setApplicant(Applicant.newBuilder()
              .setEmail("ada@example.com").setFullName("Ada Lovelace").setOrganization("Analytical Engines"))
          .setUserType(UserType.USER_TYPE_PARTNER)
          .setResource("vpn-paris")
          .setJustification("Maintenance of the difference engine")
          .setConsent(Consent.newBuilder().setVersion("2026-01").addPurposes("access_management"))
          .build()).getAccessRequest();
      admin.accessRequests().approveAccessRequest(ApproveAccessRequestRequest.newBuilder()
          .setName(request.getName()).setNote("welcome").build());
      for (int seen = 0; seen < 2; seen++) {
        Event event = events.next();
        System.out.println(event.getType() + " " + event.getAccessRequest());
      }
    }
  }
}
