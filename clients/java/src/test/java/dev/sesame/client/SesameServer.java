package dev.sesame.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One {@code sesame serve} process of the real binary, restartable on the same database and port.
 *
 * <p>The binary is the {@code sesame.bin} system property (test.sh passes {@code $SESAME_BIN}), else
 * {@code $SESAME_BIN}, else {@code ../../target/debug/sesame} from clients/java. A missing binary
 * fails the test; nothing is skipped. Each server runs in its own temporary folder (the SQLite
 * database and its key file live there) with {@code SESAME_MAIL_TRANSPORT=log}; it is stopped with
 * SIGTERM.
 */
final class SesameServer {
  static final Pattern KEY = Pattern.compile("sesame_[A-Za-z0-9_-]+");
  private static final Pattern LISTENING = Pattern.compile("sesame listening.*addr=127\\.0\\.0\\.1:(\\d+)");

  final Path binary;
  final Path workdir;
  final String databaseUrl;
  private int port;
  private String adminKey;
  private Process process;
  private int starts;

  SesameServer(Path workdir) {
    this.binary = binary();
    this.workdir = workdir;
    this.databaseUrl = "sqlite://" + workdir.resolve("sesame.db");
  }

  static Path clientDir() {
    return Path.of(System.getProperty("sesame.client.dir", ".")).toAbsolutePath().normalize();
  }

  static Path binary() {
    String configured = System.getProperty("sesame.bin");
    if (configured == null || configured.isEmpty()) {
      configured = System.getenv("SESAME_BIN");
    }
    Path path =
        configured == null || configured.isEmpty()
            ? clientDir().resolve("../../target/debug/sesame")
            : Path.of(configured);
    path = path.toAbsolutePath().normalize();
    if (!Files.isRegularFile(path) || !Files.isExecutable(path)) {
      throw new IllegalStateException(
          "sesame server binary not found at "
              + path
              + ". Build it with `cargo build --bin sesame` at the repository root, or point"
              + " SESAME_BIN (or -Dsesame.bin) at it. These tests need the real server and are"
              + " never skipped.");
    }
    return path;
  }

  String target() {
    return "127.0.0.1:" + port;
  }

  String url() {
    return "http://" + target();
  }

  String adminKey() {
    return adminKey;
  }

  boolean running() {
    return process != null;
  }

  SesameClient.Builder clientBuilder() {
    return SesameClient.builder(target(), adminKey);
  }

  /**
   * A backend's client, with a new submitter key: the admin may not approve a request it submitted
   * itself.
   */
  SesameClient.Builder submitterBuilder() throws IOException, InterruptedException {
    return SesameClient.builder(target(), createKey("backend", "submitter"));
  }

  private static void cleanEnv(Map<String, String> env) {
    env.keySet().removeIf(name -> name.startsWith("SESAME_"));
    env.remove("RUST_LOG"); // would win over the log filter: "sesame listening" must be logged
    env.put("SESAME_MAIL_TRANSPORT", "log");
    env.put("NO_COLOR", "1");
  }

  /** Starts on the previous port, or a free one the first time. */
  synchronized void start() throws IOException, InterruptedException {
    if (process != null) {
      throw new IllegalStateException("sesame is already running");
    }
    starts += 1;
    Path stdout = workdir.resolve("server-" + starts + ".stdout");
    Path stderr = workdir.resolve("server-" + starts + ".stderr");
    ProcessBuilder builder =
        new ProcessBuilder(
                binary.toString(),
                "--log-filter",
                "info",
                "serve",
                "--listen",
                "127.0.0.1:" + port,
                "--database-url",
                databaseUrl)
            .directory(workdir.toFile())
            .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
            .redirectOutput(stdout.toFile())
            .redirectError(stderr.toFile());
    cleanEnv(builder.environment());
    process = builder.start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (true) {
      Matcher listening = LISTENING.matcher(read(stderr));
      if (listening.find()) {
        port = Integer.parseInt(listening.group(1));
        break;
      }
      if (!process.isAlive()) {
        int status = process.exitValue();
        process = null;
        throw new IllegalStateException(
            "sesame exited with status " + status + " before listening:\n" + read(stderr));
      }
      if (System.nanoTime() > deadline) {
        stop();
        throw new IllegalStateException("sesame did not log 'sesame listening' within 30 s");
      }
      Thread.sleep(20);
    }
    if (adminKey == null) {
      Matcher key = KEY.matcher(read(stdout));
      if (!key.find()) {
        throw new IllegalStateException("sesame printed no admin API key on its first start");
      }
      adminKey = key.group();
    }
  }

  /** SIGTERM, then waits (SIGKILL if it does not stop within 20 s). */
  synchronized void stop() throws InterruptedException {
    if (process == null) {
      return;
    }
    Process stopping = process;
    process = null;
    stopping.destroy(); // SIGTERM
    if (!stopping.waitFor(20, TimeUnit.SECONDS)) {
      stopping.destroyForcibly().waitFor();
      throw new IllegalStateException("sesame did not stop within 20 s of SIGTERM");
    }
  }

  void restart() throws IOException, InterruptedException {
    stop();
    start();
  }

  /** Creates another API key with {@code sesame keys create}. */
  String createKey(String name, String role) throws IOException, InterruptedException {
    ProcessBuilder builder =
        new ProcessBuilder(
                binary.toString(),
                "--database-url",
                databaseUrl,
                "keys",
                "create",
                "--name",
                name,
                "--role",
                role)
            .directory(workdir.toFile())
            .redirectError(workdir.resolve("keys-create.stderr").toFile());
    cleanEnv(builder.environment());
    Process keys = builder.start();
    // The key alone is on stdout; the log (which names sesame_server) goes to stderr.
    String output = new String(keys.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    int status = keys.waitFor();
    Matcher key = KEY.matcher(output);
    if (status != 0 || !key.find()) {
      throw new IllegalStateException(
          "keys create failed (" + status + "): " + output + read(workdir.resolve("keys-create.stderr")));
    }
    return key.group();
  }

  /** Every start's stdout and stderr, for a failing test's report. */
  String logs() {
    List<String> parts = new ArrayList<>();
    for (int n = 1; n <= starts; n++) {
      for (String stream : List.of("stdout", "stderr")) {
        Path path = workdir.resolve("server-" + n + "." + stream);
        parts.add("--- start " + n + " " + stream + " (" + path + ") ---\n" + read(path));
      }
    }
    return String.join("\n", parts);
  }

  private static String read(Path path) {
    try {
      return Files.readString(path, StandardCharsets.UTF_8);
    } catch (IOException missing) {
      return "";
    }
  }

  static Duration elapsedSince(long startNanos) {
    return Duration.ofNanos(System.nanoTime() - startNanos);
  }
}
