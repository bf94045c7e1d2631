// Compiled (never run) by scripts/openapi-check.sh, after it generated
// generated/plinth.ts from a running server's /openapi.json with openapi-typescript: the
// generated types compile, and a client written against them can build requests and read
// answers (documents, patches, lists, problems) with the names used here.
import type { components, operations, paths } from "./generated/plinth";

type Schemas = components["schemas"];

const problem: Schemas["Problem"] = {
  type: "urn:plinth:problem:validation_failed",
  title: "Bad Request",
  status: 400,
  detail: "password: must be at least 8 characters",
  code: "validation_failed",
  fields: { password: "must be at least 8 characters" },
};

const login: operations["auth_login"]["requestBody"]["content"]["application/json"] = {
  email: "alice@example.com",
  password: "alice-password-1",
};

type Session = operations["auth_login"]["responses"][200]["content"]["application/json"];
const bearer = (s: Session): string => `${s.token_type} ${s.access_token}`;

type ListQuery = NonNullable<
  paths["/v1/t/{tenant}/collections/{collection}/docs"]["get"]["parameters"]["query"]
>;
const list: ListQuery = { filter: "doc.score > 3", order: "-score", limit: 20 };

type Patch = operations["patch_doc"]["requestBody"]["content"];
const merge: Patch["application/merge-patch+json"] = { title: "new title", done: null };
const ops: Patch["application/json-patch+json"] = [
  { op: "increment", path: "/score", value: 1 },
  { op: "move", from: "/draft", path: "/final" },
];

const title = (doc: Schemas["DocDto"]): unknown => doc.data["title"];

type ErrorBody = operations["get_doc"]["responses"]["default"]["content"]["application/problem+json"];
const code = (e: ErrorBody): string => e.code;

export const examples = { problem, login, bearer, list, merge, ops, title, code };
