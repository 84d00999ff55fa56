// Native gRPC calls from the test, as a backend service (the submitter) or
// another admin would make them: the generated code of the TypeScript client
// over @connectrpc/connect-node.

import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AccessRequestService, UserType } from "../gen/sesame/v1/access_request_pb.js";
import { EmailService } from "../gen/sesame/v1/email_pb.js";

export interface Applicant {
  email: string;
  fullName: string;
  organization: string;
}

export interface Clients {
  requests: Client<typeof AccessRequestService>;
  emails: Client<typeof EmailService>;
}

/** gRPC clients per API key, all closed together (and again after a server restart). */
export class Api {
  #sessions: Http2SessionManager[] = [];

  constructor(private readonly baseUrl: () => string) {}

  as(apiKey: string): Clients {
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${apiKey}`);
      return next(req);
    };
    const sessionManager = new Http2SessionManager(this.baseUrl());
    this.#sessions.push(sessionManager);
    const transport = createGrpcTransport({ baseUrl: this.baseUrl(), sessionManager, interceptors: [auth] });
    return {
      requests: createClient(AccessRequestService, transport),
      emails: createClient(EmailService, transport),
    };
  }

  close(): void {
    for (const s of this.#sessions) s.abort();
    this.#sessions = [];
  }
}

let counter = 0;

/** A realistic applicant with a unique address (tests share nothing but a name style). */
export function applicant(first: string, last: string, organization = "Analytical Engines", email?: string): Applicant {
  counter += 1;
  email ??= `${first}.${last}.${Date.now().toString(36)}${counter}@example.com`.toLowerCase();
  return { email, fullName: `${first} ${last}`, organization };
}

/** SubmitAccessRequest as a backend service sends it. */
export async function submit(
  clients: Clients,
  who: Applicant,
  resource = "vpn-paris",
  justification = "Maintenance of the difference engine",
  userType: UserType = UserType.PARTNER,
) {
  const res = await clients.requests.submitAccessRequest({
    applicant: who,
    userType,
    resource,
    justification,
    consent: { version: "2026-01", purposes: ["access_management"] },
  });
  if (!res.accessRequest) throw new Error("SubmitAccessRequest returned no request");
  return res.accessRequest;
}
