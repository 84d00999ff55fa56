// AIP-193 error details of Sesame: google.rpc.ErrorInfo and google.rpc.BadRequest.
//
// Sesame puts a google.rpc.Status in the `grpc-status-details-bin` trailer;
// @connectrpc/connect decodes it and keeps each detail as a google.protobuf.Any
// that ConnectError.findDetails() unpacks given the detail's message
// descriptor. @bufbuild/protobuf ships the well-known types but not
// google/rpc/error_details.proto, so this module describes the two messages
// Sesame sends. It declares a FileDescriptorProto for the subset of
// google/rpc/error_details.proto needed here (same package, message names,
// field names and numbers as the googleapis definition, so the wire format is
// identical) and turns it into typed message descriptors the same way
// generated code does (codegenv2 messageDesc). Fields absent from this subset
// are kept as unknown fields and ignored.

import { create, createFileRegistry, type Message, type MessageInitShape } from "@bufbuild/protobuf";
import { messageDesc, type GenMessage } from "@bufbuild/protobuf/codegenv2";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  type DescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";

/** The error domain of every Sesame ErrorInfo. */
export const SESAME_ERROR_DOMAIN = "sesame.dev";

/**
 * google.rpc.ErrorInfo: why an error happened, as a machine-readable reason.
 */
export type ErrorInfo = Message<"google.rpc.ErrorInfo"> & {
  /** UPPER_SNAKE reason, e.g. `REQUEST_NOT_FOUND`. */
  reason: string;
  /** The error domain: `sesame.dev` for Sesame. */
  domain: string;
  /** Extra context, e.g. `cursor` for a resumable watch error, `state`. */
  metadata: { [key: string]: string };
};

/** google.rpc.BadRequest.FieldViolation: one invalid field. */
export type BadRequest_FieldViolation = Message<"google.rpc.BadRequest.FieldViolation"> & {
  /** Path to the field, e.g. `applicant.email`. */
  field: string;
  /** Why the value is invalid, for a developer. */
  description: string;
  /** UPPER_SNAKE reason of the violation, when the server sets one. */
  reason: string;
};

/** google.rpc.BadRequest: every invalid field of a request. */
export type BadRequest = Message<"google.rpc.BadRequest"> & {
  fieldViolations: BadRequest_FieldViolation[];
};

function scalar(name: string, jsonName: string, number: number, type: FieldDescriptorProto_Type) {
  return { name, jsonName, number, type, label: FieldDescriptorProto_Label.OPTIONAL };
}

const stringType = FieldDescriptorProto_Type.STRING;

const errorInfoProto: MessageInitShape<typeof DescriptorProtoSchema> = {
  name: "ErrorInfo",
  field: [
    scalar("reason", "reason", 1, stringType),
    scalar("domain", "domain", 2, stringType),
    {
      name: "metadata",
      jsonName: "metadata",
      number: 3,
      label: FieldDescriptorProto_Label.REPEATED,
      type: FieldDescriptorProto_Type.MESSAGE,
      typeName: ".google.rpc.ErrorInfo.MetadataEntry",
    },
  ],
  nestedType: [
    {
      name: "MetadataEntry",
      field: [scalar("key", "key", 1, stringType), scalar("value", "value", 2, stringType)],
      options: { mapEntry: true },
    },
  ],
};

const badRequestProto: MessageInitShape<typeof DescriptorProtoSchema> = {
  name: "BadRequest",
  field: [
    {
      name: "field_violations",
      jsonName: "fieldViolations",
      number: 1,
      label: FieldDescriptorProto_Label.REPEATED,
      type: FieldDescriptorProto_Type.MESSAGE,
      typeName: ".google.rpc.BadRequest.FieldViolation",
    },
  ],
  nestedType: [
    {
      name: "FieldViolation",
      field: [
        scalar("field", "field", 1, stringType),
        scalar("description", "description", 2, stringType),
        scalar("reason", "reason", 3, stringType),
      ],
    },
  ],
};

const errorDetailsFileName = "google/rpc/error_details.proto";

/** Descriptor of the subset of google/rpc/error_details.proto used by Sesame. */
export const file_google_rpc_error_details = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: errorDetailsFileName,
    package: "google.rpc",
    syntax: "proto3",
    messageType: [errorInfoProto, badRequestProto],
  }),
  () => undefined,
).getFile(errorDetailsFileName)!;

/** Message descriptor of google.rpc.ErrorInfo, for ConnectError.findDetails(). */
export const ErrorInfoSchema: GenMessage<ErrorInfo> = messageDesc(file_google_rpc_error_details, 0);

/** Message descriptor of google.rpc.BadRequest, for ConnectError.findDetails(). */
export const BadRequestSchema: GenMessage<BadRequest> = messageDesc(file_google_rpc_error_details, 1);

/** Message descriptor of google.rpc.BadRequest.FieldViolation. */
export const BadRequest_FieldViolationSchema: GenMessage<BadRequest_FieldViolation> = messageDesc(
  file_google_rpc_error_details,
  1,
  0,
);

/**
 * The google.rpc.ErrorInfo of an error, or undefined when the error is not a
 * ConnectError or carries none (e.g. a transport failure).
 */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  if (!(err instanceof ConnectError)) {
    return undefined;
  }
  return err.findDetails(ErrorInfoSchema)[0];
}

/**
 * The ErrorInfo `reason` of an error (`REQUEST_NOT_FOUND`, `INVALID_ARGUMENT`,
 * ...), or undefined when it carries none.
 */
export function errorReason(err: unknown): string | undefined {
  return errorInfo(err)?.reason;
}

/**
 * The field violations of an INVALID_ARGUMENT error (google.rpc.BadRequest);
 * empty when the error carries none.
 */
export function fieldViolations(err: unknown): BadRequest_FieldViolation[] {
  if (!(err instanceof ConnectError)) {
    return [];
  }
  return err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
}

/** The gRPC status code of an error (Code.Unknown for a non-Connect error). */
export function errorCode(err: unknown): Code {
  return ConnectError.from(err).code;
}
