// Vite builds the console into dist/ (index.html + hashed assets), which the
// server embeds; vitest runs the unit tests of the UI logic with the same
// resolution rules.
import { fileURLToPath } from "node:url";
import preact from "@preact/preset-vite";
import { defineConfig } from "vitest/config";

// The generated client and the error-detail decoder live in clients/typescript;
// their bare imports (@bufbuild/protobuf, @connectrpc/connect) are deduplicated
// so they resolve to this package's node_modules, not to a second copy.
const clientSrc = fileURLToPath(new URL("../clients/typescript/src", import.meta.url));

// `npm run dev` proxies gRPC-Web calls to a running `sesame serve`.
const sesameUrl = process.env.SESAME_URL ?? "http://127.0.0.1:50051";

export default defineConfig({
  plugins: [preact()],
  resolve: {
    alias: { "@client": clientSrc },
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-web", "preact"],
  },
  server: {
    proxy: { "^/sesame\\.v1\\.": { target: sesameUrl } },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    sourcemap: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
