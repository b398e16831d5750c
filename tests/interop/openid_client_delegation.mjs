// Interoperability check: Node's openid-client (v6, by panva) as a city app receiving a login made by a counter
// agent for a citizen, under a mandate (RFC 8693's `act` claim).
//
// Input: a JSON object on stdin:
//   {issuer, redirect_uri, cookies: {name: value} (the agent's browser, an assisted session already started),
//    accepting: {client_id, client_secret}, refusing: {client_id, client_secret}}
// For the accepting app: authorization code + PKCE -> the agent's consent (with its banner) -> token -> ID token
// validated by openid-client (signature, iss, aud, nonce) -> its `act`, `sub`, `amr`. For the refusing app: the
// agent gets a page, the app gets no redirect at all.
// Prints ONE JSON line on stdout and exits 0; on a failure the same line with "ok": false, and exits 1.
//
// Run by tests/interop/test_openid_client.py (`npm ci` in this directory first).

import * as client from "openid-client";

const summary = {};
let step = "input";

class FlowError extends Error {}

function check(condition, message) {
  if (!condition) throw new FlowError(message);
}

async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

// The agent's browser: the cookies it was given, kept up to date; redirects are not followed.
class Browser {
  constructor(origin, cookies) {
    this.origin = origin;
    this.cookies = new Map(Object.entries(cookies));
  }

  keep(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      let value = pair.slice(eq + 1).trim();
      if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
      const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
      if (expired || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(method, url, form) {
    const target = new URL(url, this.origin);
    check(target.origin === new URL(this.origin).origin, `the browser was sent off the provider: ${target}`);
    const headers = { Accept: "text/html" };
    if (this.cookies.size) headers.Cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const init = { method, headers, redirect: "manual" };
    if (form) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      init.body = new URLSearchParams(form).toString();
    }
    const response = await fetch(target.href, init);
    this.keep(response);
    return { status: response.status, location: response.headers.get("location"), body: await response.text() };
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

function consentForm(html) {
  const form = html.match(/<form\b[^>]*action="(\/authorize\/continue\/[^"]+)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!form) return undefined;
  const csrf = form[2].match(/name="csrf_token" value="([^"]*)"/);
  return { action: unescapeHtml(form[1]), csrf: csrf ? unescapeHtml(csrf[1]) : undefined };
}

async function configure(input, app) {
  return client.discovery(new URL(input.issuer), app.client_id, undefined, client.ClientSecretBasic(app.client_secret),
                          { execute: [client.allowInsecureRequests] });
}

async function start(config, input) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: input.redirect_uri, scope: "openid profile", state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: "S256",
  });
  return { url, codeVerifier, state, nonce };
}

async function run(input) {
  const browser = new Browser(input.issuer, input.cookies);

  step = "accepting.authorize";
  const accepting = await configure(input, input.accepting);
  const request = await start(accepting, input);
  const consentPage = await browser.request("GET", request.url.href);
  check(consentPage.status === 200, `GET /authorize: status ${consentPage.status} (Location: ${consentPage.location})`);
  const banner = unescapeHtml(consentPage.body).match(/Vous agissez pour ([^<]+?) sous mandat/);
  check(banner, "consent page: no 'Vous agissez pour … sous mandat' banner");
  summary.banner_names = banner[1];
  const form = consentForm(consentPage.body);
  check(form?.csrf, "consent page: no consent form with a csrf_token");

  step = "accepting.consent";
  const decided = await browser.request("POST", form.action, { csrf_token: form.csrf, decision: "allow" });
  check(decided.status === 303 && decided.location, `POST ${form.action}: status ${decided.status}`);
  const callback = new URL(decided.location, input.issuer);
  check(`${callback.origin}${callback.pathname}` === input.redirect_uri, `consent: redirected to ${callback.href}`);

  step = "accepting.token";
  const tokens = await client.authorizationCodeGrant(accepting, callback, {
    pkceCodeVerifier: request.codeVerifier, expectedState: request.state, expectedNonce: request.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims(); // validated by openid-client: signature, iss, aud, exp, nonce
  check(claims, "token: no ID token claims");
  summary.id_token_validated = true;
  summary.sub = claims.sub;
  summary.act = claims.act ?? null;
  summary.amr = claims.amr ?? null;

  step = "refusing.authorize";
  const refusing = await configure(input, input.refusing);
  const refused = await browser.request("GET", (await start(refusing, input)).url.href);
  summary.refused_status = refused.status;
  summary.refused_location = refused.location;
  summary.refused_message = unescapeHtml(refused.body).includes(
    "Cette application n'accepte pas les connexions faites au guichet pour une autre personne.");
}

try {
  await run(await readInput());
  summary.ok = true;
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(0);
} catch (error) {
  process.stdout.write(`${JSON.stringify({ ...summary, ok: false, failed_step: step,
                                           error: String(error?.message ?? error) })}\n`);
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
