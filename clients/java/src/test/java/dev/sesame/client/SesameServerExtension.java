package dev.sesame.client;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * Gives a test a started {@link SesameServer} (a fresh one per test, in its own temporary folder),
 * stops it after the test, prints its log when the test failed, and removes the folder.
 */
final class SesameServerExtension implements ParameterResolver, AfterEachCallback {
  private static final ExtensionContext.Namespace NAMESPACE =
      ExtensionContext.Namespace.create(SesameServerExtension.class);

  @Override
  public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
    return parameter.getParameter().getType() == SesameServer.class;
  }

  @Override
  public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
    SesameServer.binary(); // fails first, and clearly, when the binary is missing
    SesameServer server;
    try {
      server = new SesameServer(Files.createTempDirectory("sesame-java-"));
    } catch (java.io.IOException error) {
      throw new java.io.UncheckedIOException("cannot make a temporary folder", error);
    }
    context.getStore(NAMESPACE).put("server", server);
    try {
      server.start();
    } catch (Exception error) {
      throw new IllegalStateException("cannot start sesame: " + error.getMessage(), error);
    }
    return server;
  }

  @Override
  public void afterEach(ExtensionContext context) throws Exception {
    SesameServer server = context.getStore(NAMESPACE).remove("server", SesameServer.class);
    if (server == null) {
      return;
    }
    server.stop();
    if (context.getExecutionException().isPresent()) {
      System.err.println(
          "\n===== sesame server log of " + context.getDisplayName() + " =====\n"
              + server.logs()
              + "\n===== end of sesame log =====");
    }
    try (Stream<Path> files = Files.walk(server.workdir)) {
      files.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
    }
  }
}
