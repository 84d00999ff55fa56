package dev.sesame.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * examples/Quickstart.java, the example the README shows, runs against the real server (as a
 * subprocess, with Java's source launcher) and the README shows it verbatim, so it cannot rot.
 */
@ExtendWith(SesameServerExtension.class)
class QuickstartTest {
  private static final Path QUICKSTART = SesameServer.clientDir().resolve("examples/Quickstart.java");

  @Test
  void theQuickstartSubmitsApprovesAndPrintsBothEvents(SesameServer server) throws Exception {
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    ProcessBuilder builder =
        new ProcessBuilder(java.toString(), "-cp", testClassPath(), QUICKSTART.toString())
            .redirectError(server.workdir.resolve("quickstart.stderr").toFile());
    builder.environment().put("SESAME_URL", server.url());
    builder.environment().put("SESAME_SUBMITTER_KEY", server.createKey("backend", "submitter"));
    builder.environment().put("SESAME_ADMIN_KEY", server.adminKey());
    Process quickstart = builder.start();
    String stdout = new String(quickstart.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(quickstart.waitFor(60, TimeUnit.SECONDS), "it must exit by itself");
    String stderr = Files.readString(server.workdir.resolve("quickstart.stderr"));
    assertEquals(0, quickstart.exitValue(), stderr);
    assertEquals("", stderr);
    List<String> lines = stdout.lines().toList();
    assertEquals(2, lines.size(), stdout);
    Matcher submitted =
        Pattern.compile("EVENT_TYPE_REQUEST_SUBMITTED (accessRequests/[0-9a-f-]{36})").matcher(lines.get(0));
    Matcher approved =
        Pattern.compile("EVENT_TYPE_REQUEST_APPROVED (accessRequests/[0-9a-f-]{36})").matcher(lines.get(1));
    assertTrue(submitted.matches() && approved.matches(), stdout);
    assertEquals(submitted.group(1), approved.group(1), "both events are about the same request");
  }

  @Test
  void theReadmeShowsTheQuickstartVerbatim() throws Exception {
    String readme = Files.readString(SesameServer.clientDir().resolve("README.md"), StandardCharsets.UTF_8);
    String code = Files.readString(QUICKSTART, StandardCharsets.UTF_8);
    assertTrue(
        readme.contains("```java\n" + code + "```\n"),
        "README.md must show examples/Quickstart.java verbatim in a java block");
  }

  /** The classes and dependencies the tests run with (Surefire's test class path). */
  private static String testClassPath() {
    String classPath = System.getProperty("surefire.test.class.path");
    if (classPath == null || classPath.isEmpty()) {
      classPath = System.getProperty("java.class.path");
    }
    return classPath;
  }
}
