package dev.sesame.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * {@code clients/testing/delay_proxy.py} in front of a server: on its first connection the
 * server's answers are held {@code holdMs} from the client's first request on (see the script's
 * header). Closing it stops the process.
 */
final class DelayProxy implements AutoCloseable {
  private final Process process;
  private final Path dir;
  private final String target;

  DelayProxy(String serverTarget, int holdMs) throws IOException, InterruptedException {
    Path script = Path.of(System.getProperty("user.dir"), "..", "testing", "delay_proxy.py").normalize();
    dir = Files.createTempDirectory("sesame-java-proxy-");
    Path portFile = dir.resolve("port");
    process =
        new ProcessBuilder("python3", script.toString(), portFile.toString(), serverTarget, String.valueOf(holdMs))
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (!Files.exists(portFile)) {
      if (!process.isAlive() || System.nanoTime() > deadline) {
        close();
        throw new IOException("the delay proxy wrote no port");
      }
      Thread.sleep(20);
    }
    target = "127.0.0.1:" + Files.readString(portFile, StandardCharsets.US_ASCII).trim();
  }

  /** {@code 127.0.0.1:port} of the proxy. */
  String target() {
    return target;
  }

  @Override
  public void close() throws IOException, InterruptedException {
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly();
    }
    try (var files = Files.list(dir)) {
      for (Path file : files.toList()) {
        Files.deleteIfExists(file);
      }
    }
    Files.deleteIfExists(dir);
  }
}
