// A real OpenID Connect provider on loopback for KYC Desk's tests: the certified
// `oidc-provider` package, configured here with one confidential client and a sign-in page of
// its own (any email signs in; a checkbox says whether a second factor was "used", which sets
// the ID token's `amr`). Not for production: no persistence, development signing keys.
//
// Usage: node end2end/oidc/provider.mjs --secret S --redirect URI [--redirect URI…]
//        [--post-logout URI…] [--port N]
// Prints one line `issuer http://127.0.0.1:PORT` once it listens (everything else goes to
// standard error); stops on SIGTERM or when
// its standard input closes (so a test that dies takes it along).

import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const option = (name) => args.flatMap((arg, i) => (arg === name ? [args[i + 1]] : []));
const secret = option('--secret')[0] || 'kyc-desk-test-secret';
const redirectUris = option('--redirect');
const postLogoutUris = option('--post-logout');
const port = Number(option('--port')[0] || 0);
if (redirectUris.length === 0) {
  console.error('provider.mjs: give at least one --redirect URI');
  process.exit(2);
}

const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const page = (title, body) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>${escape(title)}</title></head><body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'kyc-desk',
        client_secret: secret,
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        require_auth_time: true,
      },
    ],
    // The scopes' claims go into the ID token itself (KYC Desk reads the email there).
    conformIdTokenClaims: false,
    claims: { openid: ['sub', 'amr'], email: ['email', 'email_verified'], profile: ['name'] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: true } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // The account is whoever typed the email; `unverified…` addresses come unverified.
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: id,
            email_verified: !id.startsWith('unverified'),
            name: id.split('@')[0],
          };
        },
      };
    },
    // Consent is taken as given for the one client, so the tests meet only the sign-in page.
    async loadExistingGrant(ctx) {
      const grantId =
        ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const grant = await ctx.oidc.provider.Grant.find(grantId);
        if (grant) return grant;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'amr']);
      await grant.save();
      return grant;
    },
  });
  provider.proxy = false;

  const handler = provider.callback();
  server.on('request', async (req, res) => {
    const match = req.url.match(/^\/interaction\/([^/?]+)/);
    if (!match) return handler(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET') {
        res.setHeader('Content-Type', 'text/html; charset=utf-8');
        res.end(
          page(
            'Sign in to the test identity provider',
            `<form method="post" action="/interaction/${escape(details.uid)}">
<label>Email <input name="login" type="email" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<label><input type="checkbox" name="mfa" value="1"> I also used my second factor</label>
<button type="submit">Sign in</button>
</form>`,
          ),
        );
        return;
      }
      const form = await readForm(req);
      const login = (form.get('login') || '').trim().toLowerCase();
      if (!login) {
        res.statusCode = 400;
        res.end(page('Email required', '<p>Type an email.</p>'));
        return;
      }
      const amr = form.get('mfa') ? ['pwd', 'otp', 'mfa'] : ['pwd'];
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: login, amr } },
        { mergeWithLastSubmission: false },
      );
    } catch (error) {
      res.statusCode = 400;
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(page('Sign-in failed', `<p>${escape(error.message)}</p>`));
    }
  });
  process.stdout.write(`issuer ${issuer}\n`);
});

// Standard output carries the one `issuer` line; a test may stop reading after it, so every
// other message (the package's own notices among them) goes to standard error.
console.log = console.info = console.warn = console.error;

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
