import { expect, Page } from '@playwright/test';
import { ChildProcess, spawn } from 'child_process';
import { createHmac } from 'crypto';
import { mkdtempSync, readFileSync } from 'fs';
import { createServer } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';

/** Waits until the WASM has hydrated the page: clicks before that do nothing. */
export async function hydrated(page: Page) {
  await page.waitForSelector('body[data-hydrated="true"]');
}

/** Fails the test on any browser-side error (CSP violations, panics, failed hydration). */
export function watchConsole(page: Page, errors: string[]) {
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
}

/** The one-time setup link the server printed to its log. */
export function setupLink(): string {
  const logFile = process.env.KYC_DESK_LOG;
  if (!logFile) throw new Error('KYC_DESK_LOG is not set (run the tests through ../test.sh)');
  const log = readFileSync(logFile, 'utf8');
  const match = log.match(/https?:\/\/\S+?\/setup\/[A-Za-z0-9_-]+/);
  if (!match) throw new Error(`no setup link in the server log ${logFile}`);
  return match[0];
}

export async function signIn(page: Page, email: string, password: string) {
  await page.goto('/login');
  await hydrated(page);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function expectNoConsoleErrors(errors: string[]) {
  // 4xx answers that a test provokes on purpose (validation, 401, 403) show up as resource errors.
  const real = errors.filter((e) => !/status of 4\d\d/.test(e));
  expect(real, real.join('\n')).toEqual([]);
}

export const ADMIN = { email: 'admin@example.com', password: 'admin passphrase 2026' };

/** An admin creates a user on the users page; the user then replaces the initial password. */
export async function createStaff(
  admin: Page,
  user: Page,
  person: { email: string; name: string; role: string; initial: string; own: string },
) {
  await admin.goto('/users');
  await hydrated(admin);
  const form = admin.getByTestId('create-user-form');
  await form.getByLabel('Email').fill(person.email);
  await form.getByLabel('Display name').fill(person.name);
  await form.getByLabel('Role').selectOption(person.role);
  await form.getByLabel('Initial password').fill(person.initial);
  await form.getByRole('button', { name: 'Create user' }).click();
  await expect(admin.getByTestId('users-notice')).toContainText(person.email);
  await signIn(user, person.email, person.initial);
  await expect(user.getByTestId('must-change')).toBeVisible();
  // The sign-in reloads the page; a click before the new page hydrates would post the form
  // natively (no Origin but `null` under our no-referrer policy), which the server refuses.
  await hydrated(user);
  await user.getByLabel('Current password').fill(person.initial);
  await user.getByLabel('New password', { exact: true }).fill(person.own);
  await user.getByLabel('Repeat new password').fill(person.own);
  await user.getByRole('button', { name: 'Change password' }).click();
  await expect(user.getByTestId('main-nav')).toBeVisible();
}

/** Decodes an RFC 4648 base32 key (no padding), as authenticator apps read it. */
function base32Decode(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const char of text.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(char);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The code an authenticator app with `key` shows `offsetSteps` 30-second steps from now (RFC 6238). */
export function totp(key: string, offsetSteps = 0): string {
  const counter = Math.floor(Date.now() / 1000 / 30) + offsetSteps;
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', base32Decode(key)).update(message).digest();
  const offset = mac[mac.length - 1] & 15;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return code.toString().padStart(6, '0');
}

/** A free TCP port on this machine (for a server a spec starts itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Starts the test OpenID provider (`end2end/oidc/provider.mjs`, the `oidc-provider` package)
 * with KYC Desk at `base` registered as its client; resolves with its issuer URL.
 */
export async function startIdentityProvider(
  base: string,
  secret: string,
): Promise<{ issuer: string; process: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      join(process.env.KYC_DESK_ROOT ?? join(__dirname, '..', '..'), 'end2end', 'oidc', 'provider.mjs'),
      '--secret', secret,
      '--redirect', `${base}/login/sso/callback`,
      '--post-logout', `${base}/login`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const issuer = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk.toString();
      const match = out.match(/^issuer (\S+)/m);
      if (match) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`the identity provider stopped (${code}): ${out}`)));
  });
  return { issuer, process: child };
}

/** A KYC Desk server a spec started for itself (on a fresh SQLite database). */
export interface OwnServer {
  /** Its public URL, `http://localhost:PORT` (passkeys need a domain name). */
  base: string;
  process: ChildProcess;
  /** Its SQLite database file (a spec may move a record's clock, say). */
  database: string;
  /** Everything it logged so far. */
  log(): string;
}

/**
 * Starts `kyc-desk serve` (the binary ../test.sh built) on `port` with a fresh database and
 * master key, the sandbox on, and `env` on top (a variable set to `undefined` is removed);
 * resolves once it answers `/readyz` and has printed its setup link.
 */
export async function startOwnServer(name: string, port: number, env: NodeJS.ProcessEnv): Promise<OwnServer> {
  const bin = process.env.KYC_DESK_BIN;
  const root = process.env.KYC_DESK_ROOT;
  if (!bin || !root) throw new Error('KYC_DESK_BIN / KYC_DESK_ROOT are not set (run the tests through ../test.sh)');
  const dir = mkdtempSync(join(tmpdir(), `kyc-desk-${name}-`));
  const base = `http://localhost:${port}`;
  const merged: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: `sqlite://${dir}/${name}.db`,
    KYC_DESK_MASTER_KEY_FILE: `${dir}/master.key`,
    KYC_DESK_DEV_GENERATE_MASTER_KEY: 'true',
    KYC_DESK_ADDR: `127.0.0.1:${port}`,
    KYC_DESK_PUBLIC_URL: base,
    KYC_DESK_SITE_ROOT: 'target/site',
    KYC_DESK_SANDBOX: 'true',
    RUST_LOG: 'info',
    ...env,
  };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  let log = '';
  const server = spawn(bin, ['serve'], { cwd: root, env: merged, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout!.on('data', (chunk) => (log += chunk.toString()));
  server.stderr!.on('data', (chunk) => (log += chunk.toString()));
  for (let i = 0; i < 120; i++) {
    if (/\/setup\/[A-Za-z0-9_-]+/.test(log)) {
      try {
        if ((await fetch(`${base}/readyz`)).ok) {
          return { base, process: server, database: `${dir}/${name}.db`, log: () => log };
        }
      } catch {
        // not listening yet
      }
    }
    if (server.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  server.kill();
  throw new Error(`the ${name} server did not start:\n${log}`);
}
