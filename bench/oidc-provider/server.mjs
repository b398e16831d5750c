// Reference OpenID Connect provider for bench/oidc.py: panva's oidc-provider configured like
// Citizen Vault (code flow only, PKCE S256 required, pairwise subjects, ES256 ID tokens, scopes
// openid/profile/email with the same claims, client_secret_post), with minimal login and consent
// pages of our own (devInteractions is off) and argon2id password checks at the same cost as ours.
//
// Usage: node server.mjs CONFIG.json
//   {"issuer": "http://127.0.0.1:PORT", "port": PORT, "workers": 2, "storage": "postgres"|"memory",
//    "database_url": "postgresql://...", "client": {"client_id", "client_secret", "redirect_uri"},
//    "accounts": [{"email", "password"}...], "argon2": {"timeCost", "memoryCost", "parallelism"}}
// storage "postgres" (any number of workers: a Node cluster sharing one PostgreSQL table) or
// "memory" (oidc-provider's own in-memory adapter: one process only, it cannot be shared).
// Prints one JSON line {"ready": true, ...} on stdout when every worker listens.

import cluster from 'node:cluster';
import { createHmac, generateKeyPairSync, randomBytes, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import argon2 from 'argon2';
import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';
import pg from 'pg';

const PROFILE = {
  given_name: 'Anne',
  family_name: 'Bench',
  birthdate: '1980-01-01',
  gender: 'female',
  preferred_username: '',
};

// ---- storage ------------------------------------------------------------------------------------

const SCHEMA = `
CREATE TABLE IF NOT EXISTS oidc_payloads (
  model text NOT NULL,
  id text NOT NULL,
  payload jsonb NOT NULL,
  grant_id text,
  user_code text,
  uid text,
  expires_at timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX IF NOT EXISTS oidc_payloads_grant_id ON oidc_payloads (model, grant_id);
CREATE INDEX IF NOT EXISTS oidc_payloads_uid ON oidc_payloads (model, uid);
CREATE INDEX IF NOT EXISTS oidc_payloads_user_code ON oidc_payloads (model, user_code);
`;

// The shape of oidc-provider's adapter interface (see its memory adapter), on one PostgreSQL table.
class PostgresAdapter {
  constructor(pool, model) {
    this.pool = pool;
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    await this.pool.query(
      `INSERT INTO oidc_payloads (model, id, payload, grant_id, user_code, uid, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(secs => $7::int) END)
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id,
         user_code = EXCLUDED.user_code, uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at`,
      [this.model, id, payload, payload.grantId ?? null, payload.userCode ?? null, payload.uid ?? null,
        typeof expiresIn === 'number' ? expiresIn : null],
    );
  }

  async #findWhere(column, value) {
    const { rows } = await this.pool.query(
      `SELECT payload, extract(epoch FROM consumed_at)::bigint AS consumed FROM oidc_payloads
       WHERE model = $1 AND ${column} = $2 AND (expires_at IS NULL OR expires_at > now())`,
      [this.model, value],
    );
    if (!rows.length) return undefined;
    const { payload, consumed } = rows[0];
    return consumed === null ? payload : { ...payload, consumed: Number(consumed) };
  }

  find(id) { return this.#findWhere('id', id); }

  findByUid(uid) { return this.#findWhere('uid', uid); }

  findByUserCode(userCode) { return this.#findWhere('user_code', userCode); }

  async consume(id) {
    await this.pool.query('UPDATE oidc_payloads SET consumed_at = now() WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async destroy(id) {
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async revokeByGrantId(grantId) {
    await this.pool.query('DELETE FROM oidc_payloads WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }
}

function nodeDatabaseUrl(url) {
  return url.replace(/^postgresql\+psycopg:/, 'postgresql:');
}

// ---- pages --------------------------------------------------------------------------------------

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  const html = `<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>${escape(title)}</title></head>`
    + `<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Security-Policy': "default-src 'self'; frame-ancestors 'none'",
  });
  res.end(html);
}

function loginPage(res, uid, clientName, failure, status = 200) {
  page(res, status, 'Se connecter', `<p>Connectez-vous pour continuer vers <strong>${escape(clientName)}</strong>.</p>`
    + (failure ? `<div role="alert"><p>${escape(failure)}</p></div>` : '')
    + `<form method="post" action="/interaction/${escape(uid)}/login" novalidate>`
    + '<label for="email">Adresse e-mail</label><input id="email" name="email" type="email" autocomplete="username">'
    + '<label for="password">Mot de passe</label><input id="password" name="password" type="password" autocomplete="current-password">'
    + '<button type="submit">Se connecter</button></form>');
}

const CLAIM_LABELS = {
  given_name: 'Vos prénoms', family_name: 'Votre nom de naissance', preferred_username: "Votre nom d'usage",
  birthdate: 'Votre date de naissance', gender: 'Votre sexe', email: 'Votre adresse e-mail',
};

function consentPage(res, uid, clientName, scope) {
  const claims = scope.split(' ').flatMap((s) => CLAIMS[s] ?? []).filter((c) => c !== 'sub');
  page(res, 200, "Autoriser l'accès à vos informations", `<p><strong>${escape(clientName)}</strong> souhaite recevoir :</p><ul>`
    + claims.map((c) => `<li>${escape(CLAIM_LABELS[c] ?? c)}</li>`).join('')
    + `</ul><form method="post" action="/interaction/${escape(uid)}/confirm">`
    + '<button type="submit" name="decision" value="allow">Autoriser</button>'
    + '<button type="submit" name="decision" value="deny">Refuser</button></form>');
}

async function readForm(req, limit = 16 * 1024) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// ---- the provider -------------------------------------------------------------------------------

// As in Citizen Vault: the ID token carries acr, amr, auth_time and sid; the scopes give the same claims.
const CLAIMS = {
  acr: null,
  amr: null,
  auth_time: null,
  sid: null,
  iss: null,
  openid: ['sub'],
  profile: ['given_name', 'family_name', 'birthdate', 'gender', 'preferred_username'],
  email: ['email'],
};

async function worker(config, secrets) {
  const accounts = new Map(secrets.accounts.map((a) => [a.email.toLowerCase(), a]));
  const byId = new Map(secrets.accounts.map((a) => [a.id, a]));
  let adapter;
  let pool;
  if (config.storage === 'postgres') {
    pool = new pg.Pool({ connectionString: nodeDatabaseUrl(config.database_url), max: 10 });
    adapter = (model) => new PostgresAdapter(pool, model);
  } else {
    // oidc-provider's default adapter, with room for the whole run (its default LRU keeps only 1000 entries).
    const store = new LRU({ maxSize: 1_000_000 });
    adapter = (model) => new MemoryAdapter(model, store);
  }

  const provider = new Provider(config.issuer, {
    adapter,
    clients: [{
      client_id: config.client.client_id,
      client_secret: config.client.client_secret,
      client_name: 'Bench',
      redirect_uris: [config.client.redirect_uri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_post',
      id_token_signed_response_alg: 'ES256',
      subject_type: 'pairwise',
      scope: 'openid profile email',
    }],
    jwks: { keys: [secrets.jwk] },
    cookies: { keys: secrets.cookieKeys },
    claims: CLAIMS,
    scopes: ['openid', 'profile', 'email'],
    subjectTypes: ['pairwise'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      // As Citizen Vault's /introspect (RFC 7662): an app introspects its own tokens, authenticated as at /token.
      introspection: { enabled: true },
    },
    clientBasedCORS: () => false,
    pairwiseIdentifier: async (ctx, accountId, client) => (
      createHmac('sha256', secrets.pairwiseKey).update(`${client.sectorIdentifier}\0${accountId}`).digest('hex') + 'v1'),
    acrValues: ['eidas1'],
    findAccount: async (ctx, id) => {
      const account = byId.get(id);
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() { return { sub: id, ...PROFILE, email: account.email }; },
      };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // The same lifetimes as Citizen Vault's.
    ttl: {
      AuthorizationCode: 60,
      AccessToken: 600,
      IdToken: 600,
      Interaction: 600,
      Session: 12 * 3600,
      Grant: 365 * 24 * 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>Erreur</title><p>${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`;
    },
  });

  const dummyHash = await argon2.hash(randomBytes(18).toString('base64url'), { type: argon2.argon2id, ...config.argon2 });
  const callback = provider.callback();

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) {
      page(res, 400, 'Demande expirée', '<p>Cette demande de connexion a expiré.</p>');
      return;
    }
    const { prompt, params } = details;
    const clientName = 'Bench';
    if (req.method === 'GET' && !action) {
      if (prompt.name === 'login') loginPage(res, uid, clientName);
      else consentPage(res, uid, clientName, String(params.scope ?? ''));
      return;
    }
    if (req.method !== 'POST') {
      page(res, 405, 'Méthode non permise', '');
      return;
    }
    const form = await readForm(req);
    if (action === 'login' && prompt.name === 'login') {
      const account = accounts.get(String(form.get('email') ?? '').trim().toLowerCase());
      // Unknown email and wrong password cost the same work (a dummy hash), as in Citizen Vault.
      const ok = await argon2.verify(account ? account.hash : dummyHash, String(form.get('password') ?? ''));
      if (!ok || !account) {
        loginPage(res, uid, clientName, 'Adresse e-mail ou mot de passe incorrect.', 401);
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: account.id, acr: 'eidas1', amr: ['pwd'] } },
        { mergeWithLastSubmission: false });
      return;
    }
    if (action === 'confirm' && prompt.name === 'consent') {
      if (form.get('decision') !== 'allow') {
        await provider.interactionFinished(req, res, { error: 'access_denied' }, { mergeWithLastSubmission: false });
        return;
      }
      const { details: missing } = prompt;
      let { grantId } = details;
      const grant = grantId ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scopes.join(' '));
        }
      }
      // Saved even when nothing was missing (prompt=consent): the citizen's decision is recorded,
      // as Citizen Vault records (updates) its consent row.
      grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    page(res, 400, 'Demande incorrecte', '');
  }

  const server = http.createServer((req, res) => {
    const match = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
    if (!match) {
      callback(req, res);
      return;
    }
    interaction(req, res, match[1], match[2]).catch((error) => {
      const status = error.status ?? error.statusCode ?? 500;
      if (status >= 500) console.error(error);
      if (!res.headersSent) page(res, status, 'Erreur', `<p>${escape(error.error ?? error.message)}</p>`);
      else res.end();
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, '127.0.0.1', resolve);
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    if (pool) pool.end().catch(() => {});
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return server;
}

// ---- startup ------------------------------------------------------------------------------------

async function timedVerifies(hash, password, rounds = 5) {
  const times = [];
  for (let i = 0; i < rounds; i += 1) {
    const started = process.hrtime.bigint();
    await argon2.verify(hash, password);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

async function primary(config) {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  jwk.kid = `es256-${createHash('sha256').update(jwk.x + jwk.y).digest('base64url').slice(0, 16)}`;
  jwk.alg = 'ES256';
  jwk.use = 'sig';
  const accounts = [];
  for (const [index, { email, password }] of config.accounts.entries()) {
    const hash = await argon2.hash(password, { type: argon2.argon2id, ...config.argon2 });
    accounts.push({ id: `account-${index + 1}`, email, hash });
  }
  const argon2VerifyMs = accounts.length
    ? await timedVerifies(accounts[0].hash, config.accounts[0].password) : null;
  const secrets = {
    jwk,
    cookieKeys: [randomBytes(32).toString('base64url')],
    pairwiseKey: randomBytes(32).toString('base64url'),
    accounts,
  };
  if (config.storage === 'postgres') {
    const client = new pg.Client({ connectionString: nodeDatabaseUrl(config.database_url) });
    await client.connect();
    await client.query(SCHEMA);
    await client.end();
  } else if (config.workers !== 1) {
    throw new Error('storage "memory" cannot be shared between processes: use workers 1');
  }
  const ready = (extra) => console.log(JSON.stringify({
    ready: true, pid: process.pid, workers: config.workers, storage: config.storage, node: process.version,
    oidc_provider: JSON.parse(readFileSync(new URL('./node_modules/oidc-provider/package.json', import.meta.url))).version,
    argon2_package: JSON.parse(readFileSync(new URL('./node_modules/argon2/package.json', import.meta.url))).version,
    argon2: config.argon2, argon2_verify_ms: argon2VerifyMs, ...extra,
  }));
  if (config.workers === 1) {
    await worker(config, secrets);
    ready({});
    return;
  }
  cluster.setupPrimary({ silent: false });
  const env = { BENCH_OIDC_SECRETS: JSON.stringify(secrets) };
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < config.workers; i += 1) {
    const child = cluster.fork(env);
    child.on('message', (message) => {
      if (message === 'listening') {
        listening += 1;
        if (listening === config.workers) ready({});
      }
    });
  }
  cluster.on('exit', (child, code, signal) => {
    if (!stopping) {
      console.error(`worker ${child.process.pid} exited (${signal ?? code}); stopping`);
      stopping = true;
      for (const other of Object.values(cluster.workers)) other.kill();
      process.exitCode = 1;
    }
  });
  const stop = () => {
    stopping = true;
    for (const child of Object.values(cluster.workers)) child.kill('SIGTERM');
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (cluster.isPrimary) {
  primary(config).catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  worker(config, JSON.parse(process.env.BENCH_OIDC_SECRETS)).then(() => process.send('listening'), (error) => {
    console.error(error);
    process.exit(1);
  });
}
