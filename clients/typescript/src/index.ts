// @sesame/client: the TypeScript client of Sesame.
export * from "./client.js";
export * from "./errors.js";
export * from "./gen/sesame/v1/access_request_pb.js";
export * from "./gen/sesame/v1/event_pb.js";
export * from "./gen/sesame/v1/email_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
export type { CallOptions, Client, Interceptor, Transport } from "@connectrpc/connect";
