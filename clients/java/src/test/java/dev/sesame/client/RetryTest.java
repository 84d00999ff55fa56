package dev.sesame.client;

import static dev.sesame.client.Fixtures.submission;
import static dev.sesame.client.Fixtures.submit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.Applicant;
import sesame.v1.AccessRequestOuterClass.GetAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.ListAccessRequestsRequest;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestResponse;

/**
 * Deadlines and the retry of UNAVAILABLE, provoked by stopping and restarting the real server;
 * the retry of a submit whose attempt timed out, provoked by {@link DelayProxy}.
 */
@ExtendWith(SesameServerExtension.class)
class RetryTest {
  private static final Set<Status.Code> ENDED_AT_THE_DEADLINE =
      Set.of(Status.Code.UNAVAILABLE, Status.Code.DEADLINE_EXCEEDED);

  @Test
  void unavailableIsRetriedWhileTheServerRestarts(SesameServer server) throws Exception {
    RetryPolicy retry = new RetryPolicy(10, Duration.ofMillis(200), Duration.ofSeconds(1), 2.0, 0.2);
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    try (SesameClient client = server.clientBuilder().retry(retry).build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      AccessRequest request = submit(client);
      server.stop();
      ScheduledFuture<?> restart = timer.schedule(() -> { server.start(); return null; }, 1, TimeUnit.SECONDS);
      AccessRequest got;
      try {
        // Fails with UNAVAILABLE until the server is back.
        got =
            client.accessRequests()
                .getAccessRequest(GetAccessRequestRequest.newBuilder().setName(request.getName()).build())
                .getAccessRequest();
      } finally {
        restart.get(30, TimeUnit.SECONDS);
      }
      assertEquals(request.getName(), got.getName());
      assertFalse(log.retries().isEmpty(), "at least one retry was logged");
    } finally {
      timer.shutdownNow();
    }
  }

  @Test
  void theAsyncStubIsRetriedToo(SesameServer server) throws Exception {
    RetryPolicy retry = new RetryPolicy(10, Duration.ofMillis(200), Duration.ofSeconds(1), 2.0, 0.2);
    ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
    try (SesameClient client = server.clientBuilder().retry(retry).build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      server.stop();
      ScheduledFuture<?> restart = timer.schedule(() -> { server.start(); return null; }, 1, TimeUnit.SECONDS);
      CompletableFuture<SubmitAccessRequestResponse> submitted = new CompletableFuture<>();
      client.accessRequestsAsync().submitAccessRequest(submission().build(), AccessRequestTest.observer(submitted));
      AccessRequest request = submitted.get(30, TimeUnit.SECONDS).getAccessRequest();
      restart.get(30, TimeUnit.SECONDS);
      assertFalse(log.retries().isEmpty(), "at least one retry was logged");
      // One request_id for every attempt: exactly one request exists.
      List<AccessRequest> all =
          client.accessRequests().listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()).getAccessRequestsList();
      assertEquals(List.of(request.getName()), all.stream().map(AccessRequest::getName).toList());
    } finally {
      timer.shutdownNow();
    }
  }

  @Test
  void retriesAreBounded(SesameServer server) throws Exception {
    RetryPolicy retry = new RetryPolicy(3, Duration.ofMillis(50), Duration.ofMillis(100), 2.0, 0.2);
    try (SesameClient client = server.clientBuilder().retry(retry).build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      server.stop();
      StatusRuntimeException error =
          assertThrows(
              StatusRuntimeException.class,
              () -> client.accessRequests().listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAVAILABLE, error.getStatus().getCode());
      assertEquals(2, log.retries().size(), "3 attempts in all: " + log.retries());
      // Made by gRPC, not by Sesame: no ErrorInfo.
      assertEquals("", SesameError.from(error).reason());
      assertEquals("", SesameError.from(error).domain());
    }
  }

  @Test
  void noRetryPolicyFailsAtOnce(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().retry(RetryPolicy.NONE).build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      server.stop();
      StatusRuntimeException error =
          assertThrows(
              StatusRuntimeException.class,
              () -> client.accessRequests().listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      assertEquals(Status.Code.UNAVAILABLE, error.getStatus().getCode());
      assertEquals(List.of(), log.retries());
    }
  }

  @Test
  void theDeadlineBoundsRetriesAndIsSetPerCall(SesameServer server) throws Exception {
    RetryPolicy endless = new RetryPolicy(1000, Duration.ofMillis(100), Duration.ofMillis(100), 2.0, 0);
    try (SesameClient client =
        server.clientBuilder().defaultTimeout(Duration.ofMillis(500)).retry(endless).build()) {
      server.stop();
      long started = System.nanoTime();
      StatusRuntimeException byDefault =
          assertThrows(
              StatusRuntimeException.class,
              () -> client.accessRequests().listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      Duration defaultElapsed = SesameServer.elapsedSince(started);
      started = System.nanoTime();
      StatusRuntimeException ownDeadline =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .withDeadlineAfter(1500, TimeUnit.MILLISECONDS)
                      .listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      Duration ownElapsed = SesameServer.elapsedSince(started);
      // The last attempt fails at once (UNAVAILABLE) or waits out the little time left.
      assertTrue(ENDED_AT_THE_DEADLINE.contains(byDefault.getStatus().getCode()), byDefault.toString());
      assertTrue(ENDED_AT_THE_DEADLINE.contains(ownDeadline.getStatus().getCode()), ownDeadline.toString());
      assertBetween(Duration.ofMillis(300), defaultElapsed, Duration.ofSeconds(2));
      assertBetween(Duration.ofMillis(1200), ownElapsed, Duration.ofMillis(3500));
    }
  }

  @Test
  void aPerCallDeadlineExpiresAsDeadlineExceeded(SesameServer server) throws Exception {
    try (SesameClient client = server.clientBuilder().build()) {
      submit(client);
      StatusRuntimeException expired =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  client.accessRequests()
                      .withDeadlineAfter(1, TimeUnit.NANOSECONDS)
                      .listAccessRequests(ListAccessRequestsRequest.getDefaultInstance()));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, expired.getStatus().getCode());
    }
  }

  private static List<AccessRequest> storedFor(SesameClient client, String email) {
    return client.accessRequests()
        .listAccessRequests(ListAccessRequestsRequest.newBuilder().setApplicantEmail(email).build())
        .getAccessRequestsList();
  }

  private static SesameClient delayedClient(DelayProxy proxy, SesameServer server) {
    return SesameClient.builder(proxy.target(), server.adminKey())
        .defaultTimeout(Duration.ofSeconds(10))
        .attemptTimeout(Duration.ofMillis(400))
        .build();
  }

  // Guards the operator's finding: a submit whose attempt timed out while the server committed
  // it is retried and returns that request, never a second.
  @Test
  void aSubmitWhoseAttemptTimesOutIsRetriedAndReturnsTheCommittedRequest(SesameServer server)
      throws Exception {
    try (SesameClient direct = server.clientBuilder().build();
        Fixtures.ClientLog log = new Fixtures.ClientLog()) {
      // Answers held 800 ms from the first request on; attempts get 400 ms.
      try (DelayProxy proxy = new DelayProxy(server.target(), 800);
          SesameClient delayed = delayedClient(proxy, server)) {
        long started = System.nanoTime();
        AccessRequest submitted =
            delayed.accessRequests()
                .submitAccessRequest(submission().setApplicant(applicant("held@example.com")).build())
                .getAccessRequest();
        assertTrue(
            SesameServer.elapsedSince(started).compareTo(Duration.ofMillis(400)) >= 0,
            "the first attempt timed out");
        assertFalse(log.containing("failed with DEADLINE_EXCEEDED").isEmpty(), "a retry was logged");
        List<AccessRequest> stored = storedFor(direct, "held@example.com");
        assertEquals(List.of(submitted.getName()), stored.stream().map(AccessRequest::getName).toList());
        assertEquals(submitted.getRequestId(), stored.get(0).getRequestId());
      }

      // Without a request_id (not generated): one attempt, DEADLINE_EXCEEDED, and the server has it.
      int retriesBefore = log.containing("failed with DEADLINE_EXCEEDED").size();
      try (DelayProxy proxy = new DelayProxy(server.target(), 800);
          SesameClient unkeyed =
              SesameClient.builder(proxy.target(), server.adminKey())
                  .defaultTimeout(Duration.ofSeconds(10))
                  .attemptTimeout(Duration.ofMillis(400))
                  .generateRequestIds(false)
                  .build()) {
        long started = System.nanoTime();
        StatusRuntimeException error =
            assertThrows(
                StatusRuntimeException.class,
                () ->
                    unkeyed.accessRequests()
                        .submitAccessRequest(
                            submission().setApplicant(applicant("unkeyed@example.com")).build()));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getStatus().getCode());
        assertTrue(
            SesameServer.elapsedSince(started).compareTo(Duration.ofSeconds(5)) < 0,
            "one attempt, not the whole deadline");
        assertEquals(retriesBefore, log.containing("failed with DEADLINE_EXCEEDED").size());
        Thread.sleep(500);
        assertEquals(1, storedFor(direct, "unkeyed@example.com").size());
      }
    }
  }

  @Test
  void deadlineExceededOfAnotherCallIsNotRetried(SesameServer server) throws Exception {
    try (SesameClient direct = server.clientBuilder().build();
        Fixtures.ClientLog log = new Fixtures.ClientLog();
        DelayProxy proxy = new DelayProxy(server.target(), 800);
        SesameClient delayed = delayedClient(proxy, server)) {
      AccessRequest known = submit(direct);
      StatusRuntimeException error =
          assertThrows(
              StatusRuntimeException.class,
              () ->
                  delayed.accessRequests()
                      .getAccessRequest(GetAccessRequestRequest.newBuilder().setName(known.getName()).build()));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getStatus().getCode());
      assertEquals(List.of(), log.containing("failed with DEADLINE_EXCEEDED"));
    }
  }

  private static Applicant applicant(String email) {
    return Applicant.newBuilder()
        .setEmail(email)
        .setFullName("Ada Lovelace")
        .setOrganization("Analytical Engines")
        .build();
  }

  @Test
  void backoffGrowsIsCappedAndJittered() {
    RetryPolicy policy = RetryPolicy.DEFAULT;
    Set<Duration> seen = new HashSet<>();
    for (int i = 0; i < 50; i++) {
      Duration first = policy.backoff(1);
      assertBetween(Duration.ofMillis(160), first, Duration.ofMillis(240));
      seen.add(first);
      assertBetween(Duration.ofMillis(640), policy.backoff(3), Duration.ofMillis(960));
      assertBetween(Duration.ofSeconds(4), policy.backoff(20), Duration.ofSeconds(6));
    }
    assertTrue(seen.size() > 1, "the waits are jittered");
    RetryPolicy exact = new RetryPolicy(3, Duration.ofMillis(100), Duration.ofSeconds(1), 2.0, 0);
    assertEquals(Duration.ofMillis(400), exact.backoff(3));
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(0, Duration.ZERO, Duration.ZERO, 1, 0));
    assertThrows(IllegalArgumentException.class, () -> new RetryPolicy(2, Duration.ZERO, Duration.ZERO, 1, 1.5));
  }

  @Test
  void targets() {
    assertEquals(new SesameClient.ParsedTarget("127.0.0.1:50051", false), SesameClient.parseTarget("127.0.0.1:50051"));
    assertEquals(new SesameClient.ParsedTarget("127.0.0.1:50051", false), SesameClient.parseTarget("http://127.0.0.1:50051"));
    assertEquals(new SesameClient.ParsedTarget("sesame.example.com:443", true), SesameClient.parseTarget("https://sesame.example.com"));
    assertEquals(new SesameClient.ParsedTarget("[::1]:8443", true), SesameClient.parseTarget("https://[::1]:8443/"));
    assertEquals(new SesameClient.ParsedTarget("dns:///sesame:50051", false), SesameClient.parseTarget("dns:///sesame:50051"));
    try (SesameClient tls = SesameClient.builder("https://sesame.example.com", "k").build()) {
      assertTrue(tls.tls());
    }
    try (SesameClient explicit = SesameClient.builder("127.0.0.1:1", "k").tls(true).build()) {
      assertTrue(explicit.tls());
    }
    try (SesameClient plain = SesameClient.builder("127.0.0.1:1", "k").build()) {
      assertFalse(plain.tls());
    }
  }

  private static void assertBetween(Duration low, Duration actual, Duration high) {
    assertTrue(
        actual.compareTo(low) >= 0 && actual.compareTo(high) <= 0,
        actual + " is not between " + low + " and " + high);
  }
}
