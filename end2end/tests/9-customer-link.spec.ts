import { test, expect, Browser, Page } from '@playwright/test';
import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import { expectNoConsoleErrors, freePort, hydrated, OwnServer, startOwnServer, watchConsole } from './helpers';

// KYC Desk's own customer link, end to end: an operator issues it; the customer opens it on a
// phone-sized screen, switches to Hindi, consents, passes a one-time code from the sandbox's
// outbox, starts, goes through the sandbox provider and comes back; the operator's session page
// shows each step without a reload. A provider URL that expired before the customer used it is
// made again; the link's two provider URLs (its budget here) are then used up; another customer
// withdraws; an expired link says so. The customer's page passes axe-core. A server of this
// spec's own, with one-time codes on for the Basic flow and two provider URLs per link.
const ADMIN = { email: 'desk.admin@example.com', password: 'desk admin phrase 5150', name: 'Dev Admin' };
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const PHONE = {
  viewport: { width: 360, height: 740 },
  isMobile: true,
  hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36',
};

let own: OwnServer | undefined;
let base = '';

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  own = await startOwnServer('customer', await freePort(), {
    KYC_DESK_SECOND_FACTOR_ROLES: 'none',
    KYC_DESK_CUSTOMER_CODE_FLOWS: 'basic',
    KYC_DESK_LINK_MINTS: '2',
  });
  base = own.base;
});

test.afterAll(async () => {
  own?.process.kill();
});

/** Runs one SQL statement on the spec's server database (moving a record's clock). */
function sql(statement: string) {
  execFileSync('python3', ['-c', 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.execute(sys.argv[2]); c.commit()', own!.database, statement]);
}

/** The first admin, signed in. */
async function firstAdmin(page: Page) {
  const setup = own!.log().match(/https?:\/\/\S+?(\/setup\/[A-Za-z0-9_-]+)/)![1];
  await page.goto(base + setup);
  await hydrated(page);
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Display name').fill(ADMIN.name);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByLabel('Repeat password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create admin and sign in' }).click();
  await expect(page.getByTestId('main-nav')).toBeVisible();
}

/** Issues a customer link (KYC Desk's, the form's default); returns its address. */
async function issueLink(page: Page, option: string, name: string) {
  await page.goto(base + '/links');
  await hydrated(page);
  await page.getByTestId('link-option').selectOption(option);
  await page.getByTestId('link-form').getByLabel(/full name/i).fill(name);
  await page.getByTestId('link-form').getByLabel(/mobile/i).fill('98765 43210');
  await expect(page.getByTestId('handover-customer-link')).toBeChecked();
  await expect(page.getByTestId('link-lifetime')).toHaveValue('72');
  await page.getByTestId('link-consent').check();
  await page.getByTestId('link-submit').click();
  await expect(page.getByTestId('link-result')).toBeVisible();
  const link = await page.getByTestId('link-url').inputValue();
  expect(link).toMatch(/\/v\/[A-Za-z0-9_-]{22}$/);
  return link;
}

/** axe-core's serious and critical findings on `url`, in a context that lets its script in. */
async function accessibilityProblems(browser: Browser, url: string) {
  const context = await browser.newContext({ ...PHONE, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(url);
  await page.addScriptTag({ content: AXE });
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const result = await (window as any).axe.run(document);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return result.violations.map((v: any) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  await context.close();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return found.filter((v: any) => v.impact === 'serious' || v.impact === 'critical');
}

/** The newest one-time code in the sandbox's outbox. */
async function newestCode(admin: Page) {
  await admin.goto(base + '/sandbox/messages');
  const text = await admin.locator('body').innerText();
  const codes = [...text.matchAll(/(\d{6}) is your code to verify/g)].map((m) => m[1]);
  expect(codes.length).toBeGreaterThan(0);
  // The outbox lists the newest first.
  return codes[0];
}

test('a customer opens the link on a phone, consents in Hindi, passes a code, starts and comes back while staff watch', async ({ browser }) => {
  test.setTimeout(180_000);
  const errors: string[] = [];
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  watchConsole(admin, errors);
  await firstAdmin(admin);
  const link = await issueLink(admin, 'message_central:trial:basic', 'Asha Rao');
  await admin.getByTestId('session-link').click();
  await hydrated(admin);
  const badge = admin.getByTestId('status-badge').first();
  await expect(badge).toHaveText('Issued');
  const outbox = await adminContext.newPage();

  // The customer's page on a phone: plain HTML (no WebAssembly), small, accessible.
  const phoneContext = await browser.newContext(PHONE);
  const phone = await phoneContext.newPage();
  watchConsole(phone, errors);
  const wasm: string[] = [];
  phone.on('request', (r) => {
    if (/\.(js|wasm)(\?|$)/.test(r.url())) wasm.push(r.url());
  });
  const answer = await phone.goto(link);
  expect(answer!.status()).toBe(200);
  expect((await answer!.body()).length).toBeLessThan(30 * 1024);
  await expect(phone.getByTestId('customer-intro')).toContainText('ending 3210');
  await expect(phone.getByTestId('privacy-notice')).toContainText('Privacy notice (version 1)');
  await expect(phone.locator('body')).not.toContainText('Asha');
  expect(await accessibilityProblems(browser, link)).toEqual([]);

  // Staff see it opened, without reloading.
  await expect(badge).toHaveText('Opened by the customer', { timeout: 20_000 });

  // Hindi; the choice is kept.
  await phone.getByTestId('lang-hi').click();
  await expect(phone.locator('html')).toHaveAttribute('lang', 'hi');
  await expect(phone.locator('h1')).toContainText('अपनी पहचान सत्यापित करें');
  expect(await accessibilityProblems(browser, link + '?lang=hi')).toEqual([]);
  await phone.goto(link);
  await expect(phone.locator('html')).toHaveAttribute('lang', 'hi');

  // Consent and a one-time code to the mobile (the sandbox's outbox).
  await phone.getByTestId('consent-box').check();
  await phone.getByTestId('send-code').click();
  await expect(phone.getByTestId('customer-info')).toContainText('कोड भेजा');
  await expect(phone.getByTestId('consent-box')).toBeChecked();
  const code = await newestCode(outbox);
  await phone.getByTestId('code-input').fill(code);
  await phone.getByTestId('start').click();

  // On to the provider's page (made now).
  await expect(phone).toHaveURL(/\/sandbox\/journey\//);
  const firstUrl = phone.url();
  await expect(badge).toHaveText('Started', { timeout: 20_000 });

  // The customer leaves it; by the time they come back that URL has expired: a new one.
  const linkCode = link.split('/v/')[1];
  sql(`UPDATE kyc_sessions SET provider_url_expires_at = 1 WHERE customer_code = '${linkCode}'`);
  await phone.goto(link);
  await expect(phone.getByTestId('consented')).toBeVisible();
  await phone.getByTestId('start').click();
  await expect(phone).toHaveURL(/\/sandbox\/journey\//);
  expect(phone.url()).not.toBe(firstUrl);
  await expect(admin.getByTestId('timeline')).toContainText('the previous one expired', { timeout: 20_000 });
  await expect(admin.getByTestId('customer-link-facts')).toContainText('provider URLs made 2 of 2');

  // Through the provider and back to KYC Desk.
  await phone.getByRole('button', { name: 'Approve' }).click();
  await expect(phone.getByTestId('kyc-return')).toContainText('Thank you');
  await expect(badge).toHaveText('Returned, awaiting confirmation', { timeout: 20_000 });
  await expect(admin.getByTestId('customer-consent')).toContainText('privacy notice version 1, Hindi');
  await expect(admin.getByTestId('timeline')).toContainText('consented');

  // Both provider URLs are used: pressing Start again gives a clear page.
  await phone.goto(link + '?lang=en');
  await expect(phone.getByTestId('consented')).toBeVisible();
  await phone.getByTestId('start').click();
  await expect(phone.locator('h1')).toHaveText('This link cannot start the verification again');
  await expect(phone.getByTestId('customer-message')).toContainText('Ask KYC Desk Sandbox for a new link');
  await expect(admin.getByTestId('timeline')).toContainText('provider URLs of this link were used', { timeout: 20_000 });

  // Another customer withdraws; the sessions list shows it.
  const second = await issueLink(admin, 'message_central:trial:basic', 'Ravi Kumar');
  await phone.goto(second + '?lang=en');
  await phone.getByTestId('withdraw-link').click();
  await expect(phone.locator('h1')).toHaveText('Withdraw your consent?');
  await phone.getByTestId('withdraw-confirm').click();
  await expect(phone.locator('h1')).toHaveText('Your consent was withdrawn');
  await admin.goto(base + '/sessions');
  await hydrated(admin);
  await expect(admin.getByTestId('session-row').filter({ hasText: 'Ravi Kumar' })).toContainText('Withdrawn by the customer');

  // A link past its time says so, in the customer's language.
  const third = await issueLink(admin, 'message_central:trial:basic', 'Kiran Das');
  sql(`UPDATE kyc_sessions SET link_expires_at = 1, expires_at = 1 WHERE customer_code = '${third.split('/v/')[1]}'`);
  const expired = await phone.goto(third + '?lang=hi');
  expect(expired!.status()).toBe(410);
  await expect(phone.locator('h1')).toHaveText('इस लिंक की समय-सीमा समाप्त हो गई है');
  await expect(phone.getByTestId('customer-message')).toContainText('KYC Desk Sandbox से नया लिंक माँगें');

  // On a waiting link's page staff turn reminders off and on again, make a new link (which
  // replaces this one: the page moves to it) and cancel that one; each move shows at once.
  await issueLink(admin, 'message_central:trial:basic', 'Nisha Verma');
  await admin.getByTestId('session-link').click();
  await hydrated(admin);
  const toggle = admin.getByTestId('reminders-toggle');
  await expect(toggle).toHaveText('Turn reminders off');
  await toggle.click();
  await expect(toggle).toHaveText('Turn reminders on');
  await expect(admin.getByTestId('customer-link-facts')).toContainText('reminders off');
  await toggle.click();
  await expect(toggle).toHaveText('Turn reminders off');
  await expect(admin.getByTestId('customer-link-facts')).not.toContainText('reminders off');
  const replaced = admin.url();
  await admin.getByTestId('regenerate-link').click();
  await admin.getByTestId('regenerate-confirm').click();
  await expect(admin).not.toHaveURL(replaced);
  await expect(admin.getByTestId('supersedes-link')).toHaveText(replaced.split('/sessions/')[1]);
  await expect(admin.getByTestId('status-badge').first()).toHaveText('Issued');
  await admin.getByTestId('cancel-link').click();
  await admin.getByTestId('cancel-confirm').click();
  await expect(admin.getByTestId('session-notice')).toContainText('cancelled');
  await expect(admin.getByTestId('status-badge').first()).toHaveText('Cancelled');
  await expect(admin.getByTestId('cancel-step')).toHaveCount(0);

  expect(wasm, 'the customer page loads no script or WebAssembly').toEqual([]);
  await expectNoConsoleErrors(errors);
  await phoneContext.close();
  await adminContext.close();
});
