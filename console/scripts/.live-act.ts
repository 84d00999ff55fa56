import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AccessRequestService, UserType } from "@client/gen/sesame/v1/access_request_pb";
const [cmd, arg] = process.argv.slice(2);
const who = cmd === "submit" ? "submitter" : "bob";
const key = readFileSync(`/tmp/sesame-live/${who}.key`, "utf8").trim();
const transport = createGrpcTransport({
  baseUrl: "http://127.0.0.1:50077",
  interceptors: [(next) => async (req) => { req.header.set("authorization", `Bearer ${key}`); return next(req); }],
});
const client = createClient(AccessRequestService, transport);
if (cmd === "submit") {
  const res = await client.submitAccessRequest({
    applicant: { email: arg, fullName: arg.split("@")[0], organization: "Example Corp" },
    userType: UserType.CONTRACTOR, locale: "fr", resource: "git",
    justification: "Live test", consent: { version: "2024-01", purposes: ["access_management"] },
  });
  console.log(res.accessRequest?.name);
} else {
  const res = await client.approveAccessRequest({ name: arg, note: "approved by bob elsewhere" });
  console.log(res.accessRequest?.state);
}
