package dev.sesame.client;

import static dev.sesame.client.Fixtures.submission;
import static dev.sesame.client.Fixtures.submit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.common.util.concurrent.ListenableFuture;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.AccessRequestState;
import sesame.v1.AccessRequestOuterClass.Applicant;
import sesame.v1.AccessRequestOuterClass.ApproveAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.GetAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.ListAccessRequestsRequest;
import sesame.v1.AccessRequestOuterClass.ListAccessRequestsResponse;
import sesame.v1.AccessRequestOuterClass.RejectAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestResponse;
import sesame.v1.EventOuterClass.VerifyAuditChainRequest;

/** The calls, through the blocking, async and future stubs, against the real server. */
@ExtendWith(SesameServerExtension.class)
class AccessRequestTest {

  @Test
  void submitWithTheSameRequestIdTwiceReturnsTheSameRequest(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      AccessRequest first =
          client.accessRequests()
              .submitAccessRequest(submission().setRequestId("walkthrough-1").build())
              .getAccessRequest();
      AccessRequest again =
          client.accessRequests()
              .submitAccessRequest(submission().setRequestId("walkthrough-1").build())
              .getAccessRequest();
      assertTrue(first.getName().startsWith("accessRequests/"), first.getName());
      assertEquals(first.getName(), again.getName());
      assertEquals(first.getCreateTime(), again.getCreateTime());
      assertEquals(AccessRequestState.ACCESS_REQUEST_STATE_PENDING, first.getState());
      assertEquals("walkthrough-1", first.getRequestId());
      assertEquals("bootstrap-admin", first.getSubmitter());

      StatusRuntimeException reused =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .submitAccessRequest(
                          submission().setRequestId("walkthrough-1").setResource("another").build()));
      SesameError error = SesameError.from(reused);
      assertEquals(Status.Code.ALREADY_EXISTS, error.code());
      assertEquals("REQUEST_ID_REUSED", error.reason());
    }
  }

  @Test
  void submitWithoutRequestIdGetsAGeneratedOne(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      AccessRequest a = submit(client);
      AccessRequest b = submit(client);
      assertNotEquals(a.getName(), b.getName());
      UUID.fromString(a.getRequestId()); // a UUID was sent, so an automatic retry is safe
      assertNotEquals(a.getRequestId(), b.getRequestId());
    }
    try (SesameClient client = server.clientBuilder().generateRequestIds(false).build()) {
      assertEquals("", submit(client).getRequestId());
    }
  }

  @Test
  void getAndListWithPagesAndAStateFilter(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build();
        SesameClient backend = server.submitterBuilder().build()) {
      List<AccessRequest> created = List.of(submit(backend), submit(backend), submit(backend));
      AccessRequest got =
          client.accessRequests()
              .getAccessRequest(GetAccessRequestRequest.newBuilder().setName(created.get(0).getName()).build())
              .getAccessRequest();
      assertEquals(created.get(0), got);

      ListAccessRequestsResponse page =
          client.accessRequests().listAccessRequests(ListAccessRequestsRequest.newBuilder().setPageSize(2).build());
      assertEquals(
          List.of(created.get(2).getName(), created.get(1).getName()),
          page.getAccessRequestsList().stream().map(AccessRequest::getName).toList());
      assertFalse(page.getNextPageToken().isEmpty());
      ListAccessRequestsResponse rest =
          client.accessRequests()
              .listAccessRequests(
                  ListAccessRequestsRequest.newBuilder().setPageSize(2).setPageToken(page.getNextPageToken()).build());
      assertEquals(
          List.of(created.get(0).getName()),
          rest.getAccessRequestsList().stream().map(AccessRequest::getName).toList());
      assertEquals("", rest.getNextPageToken());

      client.accessRequests()
          .approveAccessRequest(ApproveAccessRequestRequest.newBuilder().setName(created.get(1).getName()).build());
      ListAccessRequestsResponse pending =
          client.accessRequests()
              .listAccessRequests(
                  ListAccessRequestsRequest.newBuilder()
                      .setState(AccessRequestState.ACCESS_REQUEST_STATE_PENDING)
                      .build());
      assertEquals(
          Set.of(created.get(0).getName(), created.get(2).getName()),
          pending.getAccessRequestsList().stream().map(AccessRequest::getName).collect(Collectors.toSet()));
    }
  }

  @Test
  void approveWithTheEtagThenAgainIsAlreadyDecided(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build();
        SesameClient backend = server.submitterBuilder().build()) {
      AccessRequest request = submit(backend);
      AccessRequest approved =
          client.accessRequests()
              .approveAccessRequest(
                  ApproveAccessRequestRequest.newBuilder()
                      .setName(request.getName())
                      .setEtag(request.getEtag())
                      .setNote("welcome")
                      .build())
              .getAccessRequest();
      assertEquals(AccessRequestState.ACCESS_REQUEST_STATE_APPROVED, approved.getState());
      assertEquals("welcome", approved.getDecision().getReason());
      assertEquals("bootstrap-admin", approved.getDecision().getActor());
      assertNotEquals(request.getEtag(), approved.getEtag());

      StatusRuntimeException again =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .approveAccessRequest(
                          ApproveAccessRequestRequest.newBuilder().setName(request.getName()).build()));
      SesameError error = SesameError.from(again);
      assertEquals(Status.Code.FAILED_PRECONDITION, error.code());
      assertEquals("REQUEST_ALREADY_DECIDED", error.reason());
      assertEquals(SesameError.DOMAIN, error.domain());
    }
  }

  @Test
  void aStaleEtagIsAbortedWithEtagMismatch(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      AccessRequest request = submit(client);
      AccessRequest other = submit(client);
      StatusRuntimeException stale =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .rejectAccessRequest(
                          RejectAccessRequestRequest.newBuilder()
                              .setName(request.getName())
                              .setEtag(other.getEtag()) // an etag that is not this request's
                              .setReason("stale")
                              .build()));
      SesameError error = SesameError.from(stale);
      assertEquals(Status.Code.ABORTED, error.code());
      ErrorInfo info = error.errorInfo().orElseThrow();
      assertEquals("ETAG_MISMATCH", info.getReason());
      assertEquals("sesame.dev", info.getDomain());
      // Still pending: nothing was decided.
      assertEquals(
          AccessRequestState.ACCESS_REQUEST_STATE_PENDING,
          client.accessRequests()
              .getAccessRequest(GetAccessRequestRequest.newBuilder().setName(request.getName()).build())
              .getAccessRequest()
              .getState());
    }
  }

  @Test
  void anInvalidSubmitCarriesItsFieldViolationsAndIsNotRetried(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      long started = System.nanoTime();
      StatusRuntimeException invalid =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .submitAccessRequest(
                          submission()
                              .setApplicant(
                                  Applicant.newBuilder()
                                      .setEmail("not-an-email")
                                      .setOrganization("Analytical Engines"))
                              .build()));
      SesameError error = SesameError.from(invalid);
      assertEquals(Status.Code.INVALID_ARGUMENT, error.code());
      assertEquals("INVALID_ARGUMENT", error.reason());
      assertEquals(SesameError.DOMAIN, error.domain());
      BadRequest badRequest = error.badRequest().orElseThrow();
      assertEquals(
          Set.of("applicant.email", "applicant.full_name"),
          badRequest.getFieldViolationsList().stream()
              .map(BadRequest.FieldViolation::getField)
              .collect(Collectors.toSet()));
      assertTrue(error.fieldViolations().stream().allMatch(v -> !v.getDescription().isEmpty()));
      // Not retryable: raised at once, after one attempt.
      assertEquals(List.of(), log.retries());
      assertTrue(SesameServer.elapsedSince(started).compareTo(Duration.ofSeconds(2)) < 0);
    }
  }

  @Test
  void anUnknownRequestIsNotFound(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      StatusRuntimeException missing =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .getAccessRequest(
                          GetAccessRequestRequest.newBuilder().setName("accessRequests/" + UUID.randomUUID()).build()));
      assertEquals(Status.Code.NOT_FOUND, SesameError.from(missing).code());
      assertEquals("REQUEST_NOT_FOUND", SesameError.from(missing).reason());
    }
  }

  @Test
  void keysAndRoles(SesameServer server) throws Exception {
    try (SesameClient stranger = SesameClient.builder(server.target(), "sesame_not-a-real-key").build()) {
      StatusRuntimeException unknown =
          assertThrows(
              StatusRuntimeException.class,
              () -> stranger.accessRequests().listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAUTHENTICATED, SesameError.from(unknown).code());
      assertEquals("API_KEY_INVALID", SesameError.from(unknown).reason());
    }
    String key = server.createKey("billing-backend", "submitter");
    try (SesameClient submitter = SesameClient.builder(server.target(), key).build()) {
      AccessRequest request = submit(submitter);
      assertEquals("billing-backend", request.getSubmitter());
      StatusRuntimeException denied =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  submitter.accessRequests()
                      .approveAccessRequest(ApproveAccessRequestRequest.newBuilder().setName(request.getName()).build()));
      assertEquals(Status.Code.PERMISSION_DENIED, SesameError.from(denied).code());
      assertEquals("ROLE_NOT_ALLOWED", SesameError.from(denied).reason());
    }
  }

  @Test
  void theAsyncStubSubmitsAndDecodesErrors(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build();
        SesameClient backend = server.submitterBuilder().build()) {
      CompletableFuture<SubmitAccessRequestResponse> submitted = new CompletableFuture<>();
      backend.accessRequestsAsync().submitAccessRequest(submission().build(), observer(submitted));
      AccessRequest request = submitted.get(10, TimeUnit.SECONDS).getAccessRequest();
      assertEquals(AccessRequestState.ACCESS_REQUEST_STATE_PENDING, request.getState());
      UUID.fromString(request.getRequestId()); // the async stub gets a request_id too

      CompletableFuture<SubmitAccessRequestResponse> invalid = new CompletableFuture<>();
      client.accessRequestsAsync()
          .submitAccessRequest(submission().setResource("").build(), observer(invalid));
      ExecutionException failed = assertThrows(ExecutionException.class, () -> invalid.get(10, TimeUnit.SECONDS));
      SesameError error = SesameError.from(failed);
      assertEquals(Status.Code.INVALID_ARGUMENT, error.code());
      assertEquals(
          List.of("resource"),
          error.fieldViolations().stream().map(BadRequest.FieldViolation::getField).toList());

      // The future stub, on the same channel.
      ListenableFuture<sesame.v1.AccessRequestOuterClass.ApproveAccessRequestResponse> approved =
          client.accessRequestsFuture()
              .approveAccessRequest(ApproveAccessRequestRequest.newBuilder().setName(request.getName()).build());
      assertEquals(
          AccessRequestState.ACCESS_REQUEST_STATE_APPROVED,
          approved.get(10, TimeUnit.SECONDS).getAccessRequest().getState());
    }
  }

  @Test
  void otherServicesOnTheSameChannelCarryTheKey(SesameServer server) {
    try (SesameClient client = server.clientBuilder().build()) {
      submit(client);
      assertTrue(client.events().verifyAuditChain(VerifyAuditChainRequest.getDefaultInstance()).getIntact());
    }
  }

  static <T> StreamObserver<T> observer(CompletableFuture<T> result) {
    return new StreamObserver<>() {
      @Override
      public void onNext(T value) {
        result.complete(value);
      }

      @Override
      public void onError(Throwable error) {
        result.completeExceptionally(error);
      }

      @Override
      public void onCompleted() {}
    };
  }
}
