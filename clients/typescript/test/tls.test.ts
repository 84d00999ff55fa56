// TLS: an https baseUrl with a private CA. The server speaks plaintext HTTP/2,
// so a TLS-terminating proxy (ALPN h2) sits in front of it.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect as netConnect, type AddressInfo } from "node:net";
import { join } from "node:path";
import { createServer as createTlsServer, type Server } from "node:tls";
import { after, before } from "node:test";
import { ConnectError, createSesameClient } from "@sesame/client";
import { packageRoot, SesameServer, serverTest } from "./server.js";

const fixtures = join(packageRoot, "test", "fixtures");
const cert = readFileSync(join(fixtures, "localhost.crt"));
const key = readFileSync(join(fixtures, "localhost.key"));

let server: SesameServer | undefined;
let proxy: Server;
let proxyUrl = "";

before(async () => {
  server = await SesameServer.start();
  proxy = createTlsServer({ cert, key, ALPNProtocols: ["h2"] }, (socket) => {
    const upstream = netConnect(server!.port, "127.0.0.1");
    socket.pipe(upstream).pipe(socket);
    socket.on("error", () => upstream.destroy());
    upstream.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyUrl = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => proxy?.close(resolve));
  await server?.close();
});

serverTest("https with a private CA given in tls.ca", () => server, async () => {
  const sesame = createSesameClient({ baseUrl: proxyUrl, apiKey: server!.adminKey, tls: { ca: cert } });
  try {
    const listed = await sesame.accessRequests.listAccessRequests({});
    assert.deepEqual(listed.accessRequests, []);
  } finally {
    sesame.close();
  }
});

serverTest("https without the CA is refused (certificate not trusted)", () => server, async () => {
  const sesame = createSesameClient({ baseUrl: proxyUrl, apiKey: server!.adminKey, retry: false });
  try {
    await assert.rejects(sesame.accessRequests.listAccessRequests({}), (err: unknown) => {
      assert.ok(err instanceof ConnectError);
      assert.match(String(err.cause ?? err.message), /certificate/i);
      return true;
    });
  } finally {
    sesame.close();
  }
});
