import com.google.rpc.BadRequest.FieldViolation;
import dev.sesame.client.EventWatch;
import dev.sesame.client.SesameClient;
import dev.sesame.client.SesameError;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.StringJoiner;
import java.util.regex.Pattern;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.AccessRequestState;
import sesame.v1.AccessRequestOuterClass.Applicant;
import sesame.v1.AccessRequestOuterClass.ApproveAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.Consent;
import sesame.v1.AccessRequestOuterClass.ListAccessRequestsRequest;
import sesame.v1.AccessRequestOuterClass.ListAccessRequestsResponse;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.UserType;
import sesame.v1.EventOuterClass.Event;
import sesame.v1.EventOuterClass.ListEventsRequest;
import sesame.v1.EventOuterClass.WatchEventsRequest;

/**
 * The cross-client agreement scenario, as every client runs it: submit with a request id twice,
 * list, approve with the etag, approve again with the now stale etag, read the request's events
 * from a watch opened before the first submit, and one invalid submit. Prints one JSON document
 * with the volatile values (names, etags, cursors, sequences) replaced by relations;
 * server/tests/it/agreement.rs runs it in each of the five clients against one server and checks
 * that the documents are equal.
 *
 * <pre>
 * mvn -q compile dependency:build-classpath -Dmdep.outputFile=target/classpath
 * SESAME_URL=http://127.0.0.1:50051 SESAME_ADMIN_KEY=sesame_... SESAME_SUBMITTER_KEY=sesame_... \
 * SESAME_RUN=r1 java -cp "target/classes:$(cat target/classpath)" examples/Agreement.java
 * </pre>
 *
 * (SESAME_RUN keeps runs apart on one server: it is the request id and the resource of the run's
 * request.)
 */
public class Agreement {
  private static final Pattern UUID_NAME =
      Pattern.compile("accessRequests/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}");

  public static void main(String[] args) {
    Map<String, Object> document =
        scenario(env("SESAME_URL"), env("SESAME_ADMIN_KEY"), env("SESAME_SUBMITTER_KEY"), env("SESAME_RUN"));
    System.out.println(json(document));
  }

  /** Runs the scenario against {@code url} and returns its normalized document. */
  static Map<String, Object> scenario(String url, String adminKey, String submitterKey, String run) {
    String resource = "agreement-" + run;
    String requestId = "agreement-" + run;
    SubmitAccessRequestRequest submission = SubmitAccessRequestRequest.newBuilder()
        .setApplicant(Applicant.newBuilder()
            .setEmail("ada@example.com").setFullName("Ada Lovelace").setOrganization("Analytical Engines"))
        .setUserType(UserType.USER_TYPE_PARTNER)
        .setLocale("en")
        .setResource(resource)
        .setJustification("Agreement run " + run)
        .setConsent(Consent.newBuilder().setVersion("2026-01").addPurposes("access_management"))
        .setRequestId(requestId)
        .build();
    try (SesameClient admin = SesameClient.builder(url, adminKey).build();
        SesameClient submitter = SesameClient.builder(url, submitterKey).build()) {
      AccessRequest first;
      AccessRequest retry;
      List<String> thisRun = new ArrayList<>();
      AccessRequest approved;
      SesameError stale;
      List<Event> audit;
      List<Event> watched = new ArrayList<>();
      // Live before the first submit: every event of the request comes through it.
      try (EventWatch watch = admin.watch(WatchEventsRequest.getDefaultInstance())) {
        first = submitter.accessRequests().submitAccessRequest(submission).getAccessRequest();
        retry = submitter.accessRequests().submitAccessRequest(submission).getAccessRequest();

        String pageToken = "";
        do {
          ListAccessRequestsResponse page = admin.accessRequests().listAccessRequests(
              ListAccessRequestsRequest.newBuilder()
                  .setState(AccessRequestState.ACCESS_REQUEST_STATE_PENDING)
                  .setUserType(UserType.USER_TYPE_PARTNER)
                  .setPageToken(pageToken)
                  .build());
          for (AccessRequest request : page.getAccessRequestsList()) {
            if (request.getResource().equals(resource)) {
              thisRun.add(request.getName());
            }
          }
          pageToken = page.getNextPageToken();
        } while (!pageToken.isEmpty());

        ApproveAccessRequestRequest approve = ApproveAccessRequestRequest.newBuilder()
            .setName(first.getName()).setEtag(first.getEtag()).build();
        approved = admin.accessRequests().approveAccessRequest(approve).getAccessRequest();
        stale = failure(() -> admin.accessRequests().approveAccessRequest(approve), "an approve with a stale etag");

        // The audit trail says which events the request has; the watch is read up to the last of
        // them (events arrive in log order).
        audit = admin.events()
            .listEvents(ListEventsRequest.newBuilder().setAccessRequest(first.getName()).build())
            .getEventsList();
        if (audit.isEmpty()) {
          throw new IllegalStateException("the request has no event");
        }
        long last = audit.get(audit.size() - 1).getSequence();
        while (true) {
          Event event = watch.next();
          if (event.getAccessRequest().equals(first.getName())) {
            watched.add(event);
          }
          if (event.getSequence() >= last) {
            break;
          }
        }
      }

      SubmitAccessRequestRequest.Builder bad = submission.toBuilder()
          .setJustification("x".repeat(2001))
          .setRequestId("");
      bad.getApplicantBuilder().setEmail("");
      SesameError invalid =
          failure(() -> submitter.accessRequests().submitAccessRequest(bad.build()), "an invalid submit");
      List<Map<String, Object>> violations = new ArrayList<>();
      invalid.fieldViolations().stream()
          .sorted(Comparator.comparing((FieldViolation v) -> v.getField()).thenComparing(v -> v.getDescription()))
          .forEach(v -> violations.add(object("field", v.getField(), "description", v.getDescription())));
      Map<String, Object> invalidJson = errorJson(invalid);
      invalidJson.put("field_violations", violations);

      List<String> eventTypes = new ArrayList<>();
      List<String> actors = new ArrayList<>();
      List<String> states = new ArrayList<>();
      for (Event event : watched) {
        eventTypes.add(event.getType().name());
        actors.add(event.getActor());
        states.add(event.getState().name());
      }
      boolean sameAsAuditTrail = watched.size() == audit.size();
      for (int i = 0; sameAsAuditTrail && i < watched.size(); i++) {
        sameAsAuditTrail = watched.get(i).getSequence() == audit.get(i).getSequence()
            && watched.get(i).getType() == audit.get(i).getType();
      }

      return object(
          "submit", object(
              "name", nameShape(first.getName()),
              "state", first.getState().name(),
              "submitter", first.getSubmitter(),
              "request_id_echoed", first.getRequestId().equals(requestId),
              "resource_echoed", first.getResource().equals(resource),
              "retry_same_name", retry.getName().equals(first.getName()),
              "retry_same_etag", retry.getEtag().equals(first.getEtag()),
              "retry_state", retry.getState().name()),
          "list", object(
              "this_run", thisRun.size(),
              "this_run_is_the_submitted", thisRun.equals(List.of(first.getName()))),
          "approve", object(
              "state", approved.getState().name(),
              "same_name", approved.getName().equals(first.getName()),
              "etag_changed", !approved.getEtag().equals(first.getEtag()),
              "decided_by", approved.getDecision().getActor(),
              "gateway_code", approved.hasGatewayCode() ? approved.getGatewayCode().getState().name() : ""),
          "approve_stale_etag", errorJson(stale),
          "watch", object(
              "event_types", eventTypes,
              "actors", actors,
              "states", states,
              "same_as_audit_trail", sameAsAuditTrail),
          "invalid_submit", invalidJson);
    }
  }

  /** A call that must fail. */
  private interface Call {
    void run();
  }

  /** The error of a call that must fail. */
  private static SesameError failure(Call call, String what) {
    try {
      call.run();
    } catch (StatusRuntimeException e) {
      return SesameError.from(e);
    }
    throw new IllegalStateException(what + " succeeded");
  }

  /** The code, ErrorInfo reason and message of an error. */
  private static Map<String, Object> errorJson(SesameError error) {
    return object("code", error.code().name(), "reason", error.reason(), "message", error.message());
  }

  /** {@code accessRequests/{uuid}} when {@code name} has that shape, else {@code name} itself. */
  private static String nameShape(String name) {
    return UUID_NAME.matcher(name).matches() ? "accessRequests/{uuid}" : name;
  }

  private static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalStateException(name + " is not set");
    }
    return value;
  }

  /** A JSON object from alternating keys and values, in that order. */
  private static Map<String, Object> object(Object... keysAndValues) {
    Map<String, Object> object = new LinkedHashMap<>();
    for (int i = 0; i < keysAndValues.length; i += 2) {
      object.put((String) keysAndValues[i], keysAndValues[i + 1]);
    }
    return object;
  }

  /** JSON text of maps, lists, strings, booleans and numbers (the client has no JSON library). */
  private static String json(Object value) {
    if (value instanceof Map<?, ?> map) {
      StringJoiner members = new StringJoiner(", ", "{", "}");
      map.forEach((key, member) -> members.add(quote(key.toString()) + ": " + json(member)));
      return members.toString();
    }
    if (value instanceof List<?> list) {
      StringJoiner items = new StringJoiner(", ", "[", "]");
      list.forEach(item -> items.add(json(item)));
      return items.toString();
    }
    if (value instanceof String text) {
      return quote(text);
    }
    return String.valueOf(value);
  }

  private static String quote(String text) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }
}
