// Interoperability check: Node's openid-client (v6, by panva) as a relying party against a running Citizen Vault.
//
// Input: a JSON object, as the first argument or on stdin:
//   {issuer, client_id, client_secret, redirect_uri, post_logout_redirect_uri, email, password}
// Runs discovery -> authorization code + PKCE (S256) -> token -> ID token validation -> userinfo -> refresh ->
// revocation -> end session, playing the citizen's browser with plain fetch and a small cookie jar.
// Prints ONE JSON line on stdout (every step true, plus the sub) and exits 0; on a failure it prints the same
// line with "ok": false, the failed step and the error, writes the HTTP exchanges to stderr, and exits 1.
//
// Run by tests/interop/test_openid_client.py (`npm ci` in this directory first).

import * as client from "openid-client";

const SCOPE = "openid profile birth email";
const USERINFO_CLAIMS = ["given_name", "family_name", "birthdate", "gender", "birthplace", "birthcountry", "email"];

const summary = {};
const trace = []; // every HTTP exchange, dumped on stderr when something fails
let step = "input";

class FlowError extends Error {}

function check(condition, message) {
  if (!condition) throw new FlowError(message);
}

async function readInput() {
  if (process.argv[2]) return JSON.parse(process.argv[2]);
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

// ---- HTTP tracing ---------------------------------------------------------------------------------------------

function headersOf(headers) {
  const out = {};
  for (const [name, value] of new Headers(headers ?? {}).entries()) {
    out[name] = /^(authorization|cookie)$/i.test(name) ? `${value.slice(0, 12)}…` : value;
  }
  return out;
}

async function tracedFetch(url, options = {}) {
  const entry = { who: options.who ?? "openid-client", request: `${options.method ?? "GET"} ${url}`,
                  requestHeaders: headersOf(options.headers) };
  if (typeof options.body === "string" || options.body instanceof URLSearchParams) {
    entry.requestBody = String(options.body).replace(/(password|client_secret)=[^&]*/g, "$1=…");
  }
  trace.push(entry);
  const { who, ...init } = options;
  const response = await fetch(url, init);
  entry.status = response.status;
  entry.responseHeaders = headersOf(response.headers);
  const setCookies = response.headers.getSetCookie();
  if (setCookies.length) entry.setCookie = setCookies.map((c) => c.replace(/=[^;]*/, "=…"));
  try {
    const text = await response.clone().text();
    entry.responseBody = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  } catch {
    // a body that cannot be read twice is not worth failing for
  }
  return response;
}

// ---- the citizen's browser ---------------------------------------------------------------------------------------

class Browser {
  constructor(origin) {
    this.origin = origin;
    this.cookies = new Map();
  }

  keep(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      let value = pair.slice(eq + 1).trim();
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
      const expired = attributes.some((attribute) => {
        const [key, ...rest] = attribute.split("=");
        const val = rest.join("=").trim();
        if (key.trim().toLowerCase() === "max-age") return Number(val) <= 0;
        if (key.trim().toLowerCase() === "expires") return Date.parse(val) <= Date.now();
        return false;
      });
      if (expired || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(method, url, form) {
    const target = new URL(url, this.origin);
    check(target.origin === new URL(this.origin).origin, `the browser was sent off the provider: ${target}`);
    const headers = { Accept: "text/html" };
    if (this.cookies.size) headers.Cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const init = { method, headers, redirect: "manual", who: "browser" };
    if (form) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      init.body = new URLSearchParams(form).toString();
    }
    const response = await tracedFetch(target.href, init);
    this.keep(response);
    return { status: response.status, location: response.headers.get("location"), body: await response.text(),
             url: target };
  }

  get(url) {
    return this.request("GET", url);
  }

  post(url, form) {
    return this.request("POST", url, form);
  }
}

function unescapeHtml(value) {
  return value.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos);/gi, (_, entity) => {
    const lower = entity.toLowerCase();
    if (lower.startsWith("#x")) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith("#")) return String.fromCodePoint(parseInt(lower.slice(1), 10));
    return { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }[lower];
  });
}

function attribute(tag, name) {
  const match = tag.match(new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, "i"));
  return match ? unescapeHtml(match[1] ?? match[2]) : undefined;
}

// The hidden inputs of the first form (in document order) whose action matches, by name.
function formFields(html, actionMatches) {
  for (const form of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const action = attribute(form[1], "action") ?? "";
    if (!actionMatches(action)) continue;
    const fields = {};
    for (const input of form[2].matchAll(/<input\b[^>]*>/gi)) {
      const name = attribute(input[0], "name");
      if (name !== undefined && (attribute(input[0], "type") ?? "text").toLowerCase() === "hidden") {
        fields[name] = attribute(input[0], "value") ?? "";
      }
    }
    const buttons = [...form[2].matchAll(/<button\b[^>]*>/gi)].map((b) => ({
      name: attribute(b[0], "name"), value: attribute(b[0], "value") }));
    const checkboxes = [...form[2].matchAll(/<input\b[^>]*>/gi)]
      .filter((i) => (attribute(i[0], "type") ?? "").toLowerCase() === "checkbox")
      .map((i) => ({ name: attribute(i[0], "name"), value: attribute(i[0], "value"), checked: /\schecked\b/i.test(i[0]) }));
    return { action, fields, buttons, checkboxes };
  }
  return undefined;
}

function expectRedirect(response, what) {
  check(response.status === 303 && response.location,
        `${what}: expected a 303 redirect, got ${response.status} (Location: ${response.location}) ${response.body.slice(0, 300)}`);
  return response.location;
}

// ---- the flow -----------------------------------------------------------------------------------------------------

async function run(input) {
  for (const key of ["issuer", "client_id", "client_secret", "redirect_uri", "post_logout_redirect_uri", "email",
                     "password"]) {
    check(typeof input[key] === "string" && input[key], `input: missing ${key}`);
  }

  step = "discovery";
  const config = await client.discovery(new URL(input.issuer), input.client_id, undefined,
                                        client.ClientSecretBasic(input.client_secret),
                                        { execute: [client.allowInsecureRequests], [client.customFetch]: tracedFetch });
  const metadata = config.serverMetadata();
  check(metadata.issuer === input.issuer, `discovery: issuer ${metadata.issuer} != ${input.issuer}`);
  for (const endpoint of ["authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                          "revocation_endpoint", "end_session_endpoint"]) {
    check(metadata[endpoint], `discovery: no ${endpoint} in the metadata`);
  }
  check(metadata.code_challenge_methods_supported?.includes("S256"), "discovery: S256 not in code_challenge_methods_supported");
  summary.discovery = true;

  step = "authorize";
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri,
    scope: SCOPE,
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    // RFC 9396: documents asked for, when the caller gives them (the citizen then picks which).
    ...(input.authorization_details ? { authorization_details: JSON.stringify(input.authorization_details) } : {}),
  });
  const browser = new Browser(input.issuer);
  const toLogin = expectRedirect(await browser.get(authorizationUrl.href), "GET /authorize (not logged in)");
  check(new URL(toLogin, input.issuer).pathname === "/login", `GET /authorize: redirected to ${toLogin}, not /login`);
  summary.authorize = true;

  step = "login";
  const loginPage = await browser.get(toLogin);
  check(loginPage.status === 200, `GET ${toLogin}: status ${loginPage.status}`);
  const loginForm = formFields(loginPage.body, (action) => action === "/login");
  check(loginForm?.fields.csrf_token, "login page: no csrf_token in the form posting to /login");
  check(loginForm.fields.next?.startsWith("/authorize/continue/"), `login page: next is ${loginForm.fields.next}`);
  const toContinue = expectRedirect(await browser.post("/login", {
    email: input.email, password: input.password, csrf_token: loginForm.fields.csrf_token, next: loginForm.fields.next,
  }), "POST /login");
  check(new URL(toContinue, input.issuer).pathname === loginForm.fields.next,
        `POST /login: redirected to ${toContinue}, expected ${loginForm.fields.next}`);
  summary.login = true;

  step = "consent";
  const consentPage = await browser.get(toContinue);
  check(consentPage.status === 200, `GET ${toContinue}: status ${consentPage.status}`);
  const consentForm = formFields(consentPage.body, (action) => action.startsWith("/authorize/continue/"));
  check(consentForm, "consent page: no form posting to /authorize/continue/…");
  check(consentForm.fields.csrf_token, "consent page: no csrf_token in the consent form");
  check(consentForm.buttons.some((b) => b.name === "decision" && b.value === "allow") &&
        consentForm.buttons.some((b) => b.name === "decision" && b.value === "deny"),
        "consent page: no allow/deny decision buttons");
  const offered = consentForm.checkboxes.filter((c) => c.name === "document");
  check(offered.every((c) => !c.checked), "consent page: a document is ticked in advance");
  summary.documents_offered = offered.map((c) => c.value);
  const decision = { csrf_token: consentForm.fields.csrf_token, decision: "allow" };
  if (input.choose_document) {
    check(offered.some((c) => c.value === input.choose_document), `consent page: ${input.choose_document} not offered`);
    decision.document = input.choose_document;
  }
  const callback = new URL(expectRedirect(await browser.post(consentForm.action, decision),
                                          `POST ${consentForm.action}`), input.issuer);
  check(`${callback.origin}${callback.pathname}` === input.redirect_uri,
        `consent: redirected to ${callback.origin}${callback.pathname}, not the redirect_uri ${input.redirect_uri}`);
  for (const name of ["code", "state", "iss"]) {
    check(callback.searchParams.get(name), `consent: no ${name} in the redirect to the app (${callback.search})`);
  }
  summary.consent = true;

  step = "token";
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  check(tokens.access_token, "token: no access_token");
  check(tokens.token_type?.toLowerCase() === "bearer", `token: token_type ${tokens.token_type}`);
  check(tokens.id_token, "token: no id_token");
  check(tokens.refresh_token, "token: no refresh_token");
  summary.token = true;
  if (input.authorization_details) {
    summary.authorization_details = tokens.authorization_details ?? null;
    const listed = await tracedFetch(new URL("/api/v1/documents", input.issuer), {
      headers: { authorization: `Bearer ${tokens.access_token}` } });
    summary.documents_listed = (await listed.json()).items?.map((d) => d.id) ?? null;
  }

  step = "id_token";
  const claims = tokens.claims();
  check(claims, "id_token: claims() returned nothing");
  check(typeof claims.sub === "string" && claims.sub, "id_token: no sub");
  check(claims.acr === "eidas1", `id_token: acr is ${JSON.stringify(claims.acr)}, expected "eidas1"`);
  check(Array.isArray(claims.amr) && claims.amr.length > 0, `id_token: amr is ${JSON.stringify(claims.amr)}`);
  check(Number.isInteger(claims.auth_time), `id_token: auth_time is ${JSON.stringify(claims.auth_time)}`);
  check(claims.nonce === nonce, "id_token: nonce does not match");
  summary.id_token = true;
  summary.sub = claims.sub;
  summary.acr = claims.acr;
  summary.amr = claims.amr;

  step = "userinfo";
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  for (const claim of USERINFO_CLAIMS) {
    check(typeof userinfo[claim] === "string" && userinfo[claim], `userinfo: no ${claim} in ${JSON.stringify(userinfo)}`);
  }
  summary.userinfo = true;
  summary.userinfo_claims = Object.fromEntries(USERINFO_CLAIMS.map((claim) => [claim, userinfo[claim]]));

  step = "refresh";
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  check(refreshed.access_token, "refresh: no access_token");
  check(refreshed.access_token !== tokens.access_token, "refresh: the same access_token came back");
  const refreshToken = refreshed.refresh_token ?? tokens.refresh_token;
  summary.refresh_token_rotated = Boolean(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token);
  const userinfoAfterRefresh = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  check(userinfoAfterRefresh.email === userinfo.email, "refresh: userinfo with the new access token differs");
  summary.refresh = true;

  step = "revocation";
  await client.tokenRevocation(config, refreshToken);
  let rejected;
  try {
    await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
  } catch (error) {
    rejected = error;
  }
  check(rejected, "revocation: userinfo still accepts the refreshed access token after the refresh token was revoked");
  const status = rejected.status ?? rejected.response?.status ?? rejected.cause?.status;
  check(status === 401, `revocation: userinfo refused the revoked token with ${describe(rejected)}, expected a 401`);
  summary.revocation = true;
  summary.revoked_userinfo_error = `${rejected.constructor.name} ${status}`;

  step = "end_session";
  const endSessionUrl = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token, post_logout_redirect_uri: input.post_logout_redirect_uri, state,
  });
  const back = new URL(expectRedirect(await browser.get(endSessionUrl.href), "GET end_session_endpoint"), input.issuer);
  check(`${back.origin}${back.pathname}` === input.post_logout_redirect_uri,
        `end session: redirected to ${back.href}, not to ${input.post_logout_redirect_uri}`);
  check(back.searchParams.get("state") === state, `end session: state ${back.searchParams.get("state")} != ${state}`);
  const account = await browser.get("/account");
  check(account.status >= 300 && account.status < 400 && new URL(account.location ?? "", input.issuer).pathname === "/login",
        `end session: GET /account answers ${account.status} (Location: ${account.location}), the citizen is still logged in`);
  summary.end_session = true;
}

function describe(error) {
  const out = { name: error?.constructor?.name ?? typeof error, message: error?.message ?? String(error) };
  for (const key of ["code", "error", "error_description", "status"]) {
    if (error?.[key] !== undefined) out[key] = error[key];
  }
  if (error?.cause !== undefined) {
    out.cause = error.cause instanceof Response ? `Response ${error.cause.status}`
      : error.cause instanceof Error ? describe(error.cause)
        : error.cause;
  }
  return out;
}

let input;
try {
  input = await readInput();
  await run(input);
  summary.ok = true;
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(0);
} catch (error) {
  const failure = describe(error);
  process.stdout.write(`${JSON.stringify({ ...summary, ok: false, failed_step: step, error: failure })}\n`);
  process.stderr.write(`openid-client flow failed at step "${step}": ${JSON.stringify(failure, null, 2)}\n`);
  if (!(error instanceof FlowError) && error?.stack) process.stderr.write(`${error.stack}\n`);
  process.stderr.write(`HTTP exchanges (${trace.length}):\n${JSON.stringify(trace, null, 2)}\n`);
  process.exit(1);
}
