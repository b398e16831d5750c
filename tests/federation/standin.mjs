// A FranceConnect stand-in for the tests (the suite never talks to the real service): panva's
// oidc-provider configured like FranceConnect v2 — pairwise sub (64 hex + "v1"), ES256 ID tokens,
// userinfo as an ES256-signed JWT (for the clients registered so), the pivot identity's claims
// and scopes, acr eidas1, client_secret_post, iss in the authorization response, RP-initiated
// logout — with a minimal page of its own where the test picks the account (or cancels).
//
// Usage: node standin.mjs CONFIG.json
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT,
//    "clients": [{"client_id", "client_secret", "redirect_uris", "post_logout_redirect_uris",
//                 "userinfo_signed": true}],
//    "accounts": {"<login>": {"given_name", "family_name", "birthdate", "gender", "birthplace",
//                             "birthcountry", "email", "preferred_username"}},
//    "amr": ["fc", "pwd"], "amr_by_account": {"<login>": ["pwd", "mfa"]}}
// Prints one JSON line {"ready": true} on stdout once it listens.

import { createHash, createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const PIVOT = ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry'];
const CLAIMS = {
  acr: null, amr: null, auth_time: null, iss: null,
  openid: ['sub'],
  profile: ['given_name', 'family_name', 'birthdate', 'gender', 'preferred_username'],
  birth: ['birthplace', 'birthcountry'],
  identite_pivot: PIVOT,
  ...Object.fromEntries([...PIVOT, 'email', 'preferred_username'].map((claim) => [claim, [claim]])),
};

const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
jwk.kid = `fc-standin-${createHash('sha256').update(jwk.x).digest('base64url').slice(0, 12)}`;
jwk.alg = 'ES256';
jwk.use = 'sig';
const pairwiseKey = randomBytes(32);

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'ES256',
    ...(c.userinfo_signed === false ? {} : { userinfo_signed_response_alg: 'ES256' }),
    subject_type: 'pairwise',
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  claims: CLAIMS,
  scopes: Object.keys(CLAIMS).filter((name) => CLAIMS[name] !== null),
  subjectTypes: ['pairwise'],
  responseTypes: ['code'],
  acrValues: ['eidas1'],
  pkce: { required: () => false },
  features: {
    devInteractions: { enabled: false },
    jwtUserinfo: { enabled: true },
    claimsParameter: { enabled: true }, // as FranceConnect: amr is asked with {"id_token":{"amr":{"essential":true}}}
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><title>Déconnexion</title>${form}`
          + '<button form="op.logoutForm" type="submit" name="logout" value="yes">Se déconnecter</button>';
      },
    },
  },
  pairwiseIdentifier: async (ctx, accountId, client) => (
    createHmac('sha256', pairwiseKey).update(`${client.sectorIdentifier}${accountId}`).digest('hex') + 'v1'),
  findAccount: async (ctx, id) => {
    const claims = config.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Erreur</title><p>${out.error}: ${out.error_description ?? ''}</p>`;
  },
});
provider.proxy = false;

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw Object.assign(new Error('unknown interaction'), { status: 400 });
  if (req.method === 'GET') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>FranceConnect (stand-in)</title><form method="post" action="/interaction/${uid}/login">`
      + `<select name="login">${Object.keys(config.accounts).map((l) => `<option>${l}</option>`).join('')}</select>`
      + '<button type="submit">Continuer</button></form>'
      + `<form method="post" action="/interaction/${uid}/abort"><button type="submit">Annuler</button></form>`);
    return;
  }
  const form = await readForm(req);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'user aborted' },
      { mergeWithLastSubmission: false });
    return;
  }
  const accountId = form.get('login');
  if (!config.accounts[accountId]) throw Object.assign(new Error('unknown account'), { status: 400 });
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope ?? 'openid'));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId, acr: 'eidas1', amr: config.amr_by_account?.[accountId] ?? config.amr ?? ['fc', 'pwd'] },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|abort))?$/.exec(req.url.split('?')[0]);
  if (!match) {
    callback(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((error) => {
    if (!res.headersSent) res.writeHead(error.status ?? 500, { 'Content-Type': 'text/plain' });
    res.end(String(error.message));
  });
});
server.listen(config.port, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ ready: true })}\n`));
const stop = () => { server.close(); server.closeAllConnections(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
