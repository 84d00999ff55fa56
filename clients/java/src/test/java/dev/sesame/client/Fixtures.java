package dev.sesame.client;

import java.util.ArrayList;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import sesame.v1.AccessRequestOuterClass.AccessRequest;
import sesame.v1.AccessRequestOuterClass.Applicant;
import sesame.v1.AccessRequestOuterClass.Consent;
import sesame.v1.AccessRequestOuterClass.SubmitAccessRequestRequest;
import sesame.v1.AccessRequestOuterClass.UserType;

/** Requests and helpers shared by the tests. */
final class Fixtures {
  private Fixtures() {}

  static SubmitAccessRequestRequest.Builder submission() {
    return SubmitAccessRequestRequest.newBuilder()
        .setApplicant(
            Applicant.newBuilder()
                .setEmail("ada@example.com")
                .setFullName("Ada Lovelace")
                .setOrganization("Analytical Engines"))
        .setUserType(UserType.USER_TYPE_PARTNER)
        .setResource("vpn-paris")
        .setJustification("Maintenance of the difference engine")
        .setConsent(Consent.newBuilder().setVersion("2026-01").addPurposes("access_management"));
  }

  static AccessRequest submit(SesameClient client) {
    return client.accessRequests().submitAccessRequest(submission().build()).getAccessRequest();
  }

  /** Collects the client's log records (retries, reconnections) while open. */
  static final class ClientLog extends Handler implements AutoCloseable {
    private final Logger logger = Logger.getLogger("dev.sesame.client");
    private final List<String> messages = new ArrayList<>();
    private final Level previousLevel = logger.getLevel();

    ClientLog() {
      setLevel(Level.ALL);
      logger.setLevel(Level.FINE); // retries and reconnections are logged at FINE
      logger.addHandler(this);
    }

    @Override
    public synchronized void publish(LogRecord record) {
      messages.add(record.getMessage());
    }

    synchronized List<String> containing(String part) {
      return messages.stream().filter(message -> message.contains(part)).toList();
    }

    List<String> retries() {
      return containing("failed with UNAVAILABLE");
    }

    @Override
    public void flush() {}

    @Override
    public void close() {
      logger.removeHandler(this);
      logger.setLevel(previousLevel);
    }
  }
}
