// A client generated from openapi/openapi.json (openapi-typescript types + openapi-fetch), used
// against a live server: every call and every answer is typed by the committed document.
// Usage: node build/src/flow.js BASE_URL ADMIN_TOKEN
import createClient from "openapi-fetch";
import type { components, paths } from "../generated/schema.js";

type Problem = components["schemas"]["Problem"];
const FORM = "application/x-www-form-urlencoded";

const [baseUrl, adminToken] = process.argv.slice(2);
if (!baseUrl || !adminToken) throw new Error("usage: flow.js BASE_URL ADMIN_TOKEN");

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`check failed: ${what}`);
}

const admin = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${adminToken}` },
});

async function main(): Promise<void> {
  const domain = await admin.POST("/v1/domains", { body: { name: "fraud" } });
  check(domain.response.status === 201 && domain.data?.name === "fraud", "domain created");

  const created = await admin.POST("/v1/agents", {
    body: { name: "ts-bot", domain: "fraud", owner: "o@example.com", autonomy_level: 1 },
  });
  check(created.response.status === 201 && created.data !== undefined, "agent created");
  const agentId: string = created.data.id;

  // A problem, read as the typed error: the update without If-Match is refused.
  const unconditional = await admin.PATCH("/v1/agents/{agent_id}", {
    params: { path: { agent_id: agentId }, header: { "If-Match": "" } },
    body: { description: "no precondition" },
  });
  const problem: Problem | undefined = unconditional.error;
  check(unconditional.response.status === 428, "428 without If-Match");
  check(problem?.code === "precondition_required", "typed problem code");

  const etag = created.response.headers.get("etag");
  check(etag !== null, "ETag on create");
  const updated = await admin.PATCH("/v1/agents/{agent_id}", {
    params: { path: { agent_id: agentId }, header: { "If-Match": etag } },
    body: { description: "watches payments", labels: { team: "risk" } },
  });
  check(updated.response.status === 200, `update with If-Match: ${updated.response.status}`);
  check(updated.data?.description === "watches payments", "updated description");

  const version = await admin.POST("/v1/agents/{agent_id}/versions", {
    params: { path: { agent_id: agentId } },
    body: {
      version: "1.0.0",
      model_name: "gpt-test",
      model_version: "2026-01",
      artifact_digest: "sha256:" + "cd".repeat(32),
    },
  });
  check(version.data !== undefined, "version registered");
  const versionPath = { agent_id: agentId, version_id: version.data.id };
  const approved = await admin.POST("/v1/agents/{agent_id}/versions/{version_id}/approve", {
    params: { path: versionPath },
  });
  check(approved.response.status === 200, "version approved");
  const activated = await admin.POST("/v1/agents/{agent_id}/versions/{version_id}/activate", {
    params: { path: versionPath },
  });
  check(activated.response.status === 200, "version activated");

  const credential = await admin.POST("/v1/agents/{agent_id}/credentials", {
    params: { path: { agent_id: agentId } },
    body: { scopes: ["decisions:create"] },
  });
  check(credential.data !== undefined, "credential created");
  const secret = credential.data.client_secret;
  check(typeof secret === "string", "client secret shown once");

  const oauth = createClient<paths>({ baseUrl });
  const basic = Buffer.from(`${credential.data.client_id}:${secret}`).toString("base64");
  const form = (body: Record<string, string | undefined>): string =>
    new URLSearchParams(
      Object.entries(body).filter((e): e is [string, string] => e[1] !== undefined),
    ).toString();
  const issued = await oauth.POST("/oauth/token", {
    headers: { Authorization: `Basic ${basic}`, "Content-Type": FORM },
    body: { grant_type: "client_credentials", scope: "decisions:create" },
    bodySerializer: form,
  });
  check(issued.response.status === 200 && issued.data !== undefined, "token issued");
  check(issued.data.token_type === "Bearer", "bearer token");

  const refused = await oauth.POST("/oauth/token", {
    headers: {
      Authorization: `Basic ${Buffer.from(`${credential.data.client_id}:x`).toString("base64")}`,
      "Content-Type": FORM,
    },
    body: { grant_type: "client_credentials" },
    bodySerializer: form,
  });
  check(refused.response.status === 401, "wrong secret refused");
  const oauthError = refused.error;
  check(
    oauthError !== undefined && "error" in oauthError && oauthError.error === "invalid_client",
    "typed OAuth error",
  );

  const agent = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${issued.data.access_token}` },
  });
  const decision = await agent.POST("/v1/decisions", {
    body: { action: "fraud.review", resource: { type: "case", id: "k-1" } },
  });
  check(decision.response.status === 200 && decision.data !== undefined, "decision answered");
  check(["allow", "deny", "require_approval"].includes(decision.data.effect), "effect");
  console.log(JSON.stringify({ ok: true, effect: decision.data.effect }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
