// A docuhooks receiver in Node, built on node:http, `jose` (HMAC JWTs) and `standardwebhooks`.
//
//   DOCUHOOKS_HMAC_SECRETS=<secret>[,<secret>...] DOCUHOOKS_WEBHOOK_IDS=<webhook id> \
//   PORT=8004 node server.mjs
//
// Point the webhooks at http://127.0.0.1:8004/hooks. Each authentication method has its own
// variable, and a request is checked only against the secrets of its own method:
//
//   DOCUHOOKS_HMAC_SECRETS    HMAC secrets (both during a rotation, or several webhooks')
//   DOCUHOOKS_WHSEC_SECRETS   Standard Webhooks secrets (whsec_...)
//   DOCUHOOKS_ACCESS_TOKENS   legacy access tokens (sent in clear as a bearer token)
//   DOCUHOOKS_WEBHOOK_IDS     the webhook ids an HMAC token must be addressed to (its `aud`)
//   DOCUHOOKS_ISSUER          the site's base URL, if the HMAC token's `iss` must be checked
//   PORT, HOST                default 8004 and 127.0.0.1; PORT=0 picks a free port
//
// Every request prints one JSON line on stdout: what was verified, or why it was refused.
// A refused call is answered 401 (400 when malformed) with {"error": {"code", "message"}},
// which the platform keeps in its delivery log.

import { createHash, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { pathToFileURL } from "node:url";

import { errors as joseErrors, jwtVerify } from "jose";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const MAX_BODY_BYTES = 64 * 1024 * 1024; // post-processing calls carry documents
const LEEWAY_SECONDS = 60; // clock drift tolerated on `exp` and `nbf`, as the Python SDK does

class Refused extends Error {
  constructor(code, message, status = 401) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function list(name) {
  return (process.env[name] ?? "")
    .split(",")
    .map((value) => value.trim())
    .filter((value) => value !== "");
}

export function configFromEnvironment() {
  const config = {
    hmacSecrets: list("DOCUHOOKS_HMAC_SECRETS").map((s) => new TextEncoder().encode(s)),
    standardWebhooks: list("DOCUHOOKS_WHSEC_SECRETS").map((s) => new Webhook(s)),
    accessTokens: list("DOCUHOOKS_ACCESS_TOKENS").map(digest),
    audience: list("DOCUHOOKS_WEBHOOK_IDS"),
    issuer: process.env.DOCUHOOKS_ISSUER || undefined,
  };
  if (!config.hmacSecrets.length && !config.standardWebhooks.length && !config.accessTokens.length) {
    throw new Error(
      "set DOCUHOOKS_HMAC_SECRETS, DOCUHOOKS_WHSEC_SECRETS or DOCUHOOKS_ACCESS_TOKENS",
    );
  }
  return config;
}

function digest(text) {
  // Compared as SHA-256 digests, so the comparison takes the same time whatever the length.
  return createHash("sha256").update(text, "utf8").digest();
}

// HMAC: a JWT (HS256) in the form field `token` (POST) or the query parameter `token` (GET).
async function verifyHmac(token, config) {
  if (!config.hmacSecrets.length) {
    throw new Refused("BadSignature", "an HMAC token came, but no HMAC secret is configured");
  }
  const options = {
    algorithms: ["HS256"], // whatever the token's header says; never "none"
    requiredClaims: ["exp"], // a token without one would be valid for ever
    clockTolerance: LEEWAY_SECONDS,
    audience: config.audience.length ? config.audience : undefined,
    issuer: config.issuer,
  };
  for (const secret of config.hmacSecrets) {
    try {
      const { payload } = await jwtVerify(token, secret, options);
      return payload; // the event object's fields, plus iss, aud, iat, nbf, exp, jti
    } catch (error) {
      if (error instanceof joseErrors.JWSSignatureVerificationFailed) continue; // next secret
      if (error instanceof joseErrors.JWTExpired) throw new Refused("TokenExpired", error.message);
      if (error instanceof joseErrors.JWTClaimValidationFailed) {
        const code = { aud: "WrongAudience", iss: "WrongIssuer", nbf: "TokenNotYetValid" };
        throw new Refused(code[error.claim] ?? "MalformedRequest", error.message);
      }
      throw new Refused("MalformedRequest", `not a valid HS256 JWT: ${error.message}`, 400);
    }
  }
  throw new Refused(
    "BadSignature",
    `the token's signature matches none of the ${config.hmacSecrets.length} configured HMAC secrets`,
  );
}

// Standard Webhooks: the JSON body, signed in the webhook-id/-timestamp/-signature headers.
function verifyStandardWebhooks(body, headers, config) {
  if (!config.standardWebhooks.length) {
    throw new Refused("BadSignature", "a Standard Webhooks call came, but no whsec_ secret is configured");
  }
  let lastError;
  for (const webhook of config.standardWebhooks) {
    try {
      // Checks the signature over "id.timestamp.body" and that the timestamp is within 5 minutes.
      return webhook.verify(body.toString("utf8"), headers);
    } catch (error) {
      if (!(error instanceof WebhookVerificationError)) throw error;
      lastError = error;
    }
  }
  throw new Refused("BadSignature", `Standard Webhooks: ${lastError.message}`);
}

// Access token (legacy): `Authorization: Bearer <token>`; the event as JSON (POST) or as query
// parameters (GET). Nothing is signed and nothing expires: prefer HMAC.
function verifyAccessToken(token, config) {
  const offered = digest(token);
  if (!config.accessTokens.some((known) => timingSafeEqual(known, offered))) {
    throw new Refused(
      "BadSignature",
      `the access token matches none of the ${config.accessTokens.length} configured access tokens`,
    );
  }
}

function eventFromQuery(query) {
  // A GET access-token call flattens the event: the user's fields and the scalar data fields.
  const fields = Object.fromEntries(query);
  const { eventId, eventType, siteId, userId, userLoginName, userName, userEmail, test, ...data } =
    fields;
  return {
    eventId,
    eventType,
    siteId,
    test: test === "true",
    createdBy: { id: userId, loginName: userLoginName, name: userName, email: userEmail },
    data,
  };
}

function parseJson(body) {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch {
    throw new Refused("MalformedRequest", "the body is not JSON", 400);
  }
}

export async function verify(method, url, headers, body, config) {
  const query = new URL(url, "http://receiver").searchParams;
  if (headers["webhook-signature"] !== undefined) {
    return { authMethod: "StandardWebhooks", event: verifyStandardWebhooks(body, headers, config) };
  }
  const contentType = (headers["content-type"] ?? "").split(";")[0].trim();
  const form = method === "POST" && contentType === "application/x-www-form-urlencoded";
  const token = method === "GET" ? query.get("token") : form ? new URLSearchParams(body.toString("utf8")).get("token") : null;
  if (token) {
    return { authMethod: "HMAC", event: await verifyHmac(token, config) };
  }
  const authorization = headers.authorization ?? "";
  if (authorization.startsWith("Bearer ")) {
    verifyAccessToken(authorization.slice("Bearer ".length), config);
    const event = method === "GET" ? eventFromQuery(query) : parseJson(body);
    return { authMethod: "AccessToken", event };
  }
  throw new Refused(
    "MissingToken",
    "no token parameter, webhook-signature header or Authorization header",
  );
}

function textAnswer(name, value) {
  return { name, type: "text", value };
}

// What to answer, by event type. Deliveries are at least once: de-duplicate on eventId.
export function answer(event) {
  const user = event.createdBy ?? {};
  switch (event.eventType) {
    case "NewWorkItemVersionComplete":
      // A notification: store the fact, fetch the documents later from their `url`.
      return { status: 204 };
    case "InterviewLoadEvent":
      // Prefill the interview with answer JSON.
      return {
        status: 200,
        json: { answers: [textAnswer("Client Name", user.name), textAnswer("Client Email", user.email)] },
      };
    case "CustomInterviewEvent":
      if (event.data?.interviewEventName !== "Look up client") return { status: 204 };
      return { status: 200, json: { answers: [textAnswer("Client Address", "1 High Street")] } };
    case "PostProcessingEvent":
      // Inline post-processing: return each document (stamped, signed, converted...) as is.
      return {
        status: 200,
        json: {
          documents: (event.data?.documents ?? [])
            .filter((document) => document.content != null)
            .map((document) => ({
              id: document.id,
              name: document.name,
              fileName: document.fileName,
              contentType: document.contentType,
              content: document.content,
              action: "replace",
            })),
        },
      };
    default:
      return { status: 204 }; // an event type this receiver does not know yet
  }
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Refused("MalformedRequest", `the body is larger than ${MAX_BODY_BYTES} bytes`, 413));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks)));
    request.on("error", reject);
  });
}

function send(response, status, json) {
  if (json === undefined) {
    response.writeHead(status).end();
    return;
  }
  const body = JSON.stringify(json);
  response.writeHead(status, { "Content-Type": "application/json" }).end(body);
}

export function createReceiver(config) {
  return createServer(async (request, response) => {
    const path = new URL(request.url, "http://receiver").pathname;
    if (path !== "/hooks" || !["GET", "POST"].includes(request.method)) {
      send(response, 404, { error: { code: "NotFound", message: "webhooks go to /hooks" } });
      return;
    }
    try {
      const body = await readBody(request);
      const { authMethod, event } = await verify(request.method, request.url, request.headers, body, config);
      console.log(JSON.stringify({ verified: true, authMethod, eventType: event.eventType, eventId: event.eventId }));
      const reply = answer(event);
      send(response, reply.status, reply.json);
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      console.log(JSON.stringify({ verified: false, code: error.code, message: error.message }));
      send(response, error.status, { error: { code: error.code, message: error.message } });
    }
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let config;
  try {
    config = configFromEnvironment();
  } catch (error) {
    console.error(error.message);
    process.exit(2);
  }
  const host = process.env.HOST || "127.0.0.1";
  const server = createReceiver(config);
  server.listen(Number(process.env.PORT ?? "8004"), host, () => {
    const { port } = server.address();
    console.log(JSON.stringify({ listening: `http://${host}:${port}/hooks` }));
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
