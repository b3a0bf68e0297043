import { test, expect, Page } from '@playwright/test';
import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { PNG } from 'pngjs';
import jsQR from 'jsqr';
import { ADMIN, createStaff, expectNoConsoleErrors, hydrated, signIn, watchConsole } from './helpers';

const OPERATOR = {
  email: 'lena@example.com',
  name: 'Lena Operator',
  role: 'operator',
  initial: 'lena initial phrase 2026',
  own: 'lena own phrase 2026',
};

test.describe.configure({ mode: 'serial' });

/** Fills and submits the new-link form for an in-person hand-over (the provider's URL made at
 * once; KYC Desk's own customer link is 9-customer-link.spec.ts); returns the link shown on
 * the result card. */
async function newLink(page: Page, option: string, name: string, phone: string, email?: string) {
  await page.goto('/links');
  await hydrated(page);
  await page.getByTestId('link-option').selectOption(option);
  await page.getByTestId('handover-provider-url').check();
  await page.getByTestId('link-form').getByLabel(/full name/i).fill(name);
  await page.getByTestId('link-form').getByLabel(/mobile/i).fill(phone);
  if (email) await page.getByTestId('link-form').getByLabel(/email/i).fill(email);
  await page.getByTestId('link-consent').check();
  await page.getByTestId('link-submit').click();
  const card = page.getByTestId('link-result');
  await expect(card).toBeVisible();
  const link = await page.getByTestId('link-url').inputValue();
  expect(link).toMatch(/\/sandbox\/journey\/[A-Za-z0-9]+$/);
  return link;
}

/** The customer's side: open the link, decide, come back to KYC Desk's thank-you page. */
async function customerDecides(page: Page, link: string, decision: 'Approve' | 'Deny') {
  await page.goto(link);
  await page.getByRole('button', { name: decision }).click();
  await expect(page.getByTestId('kyc-return')).toContainText('Thank you');
}

/** On a session's page: chooses `outcome` and writes `note` in the record-outcome form, submits. */
async function recordOutcome(page: Page, outcome: 'completed' | 'failed', note: string) {
  const form = page.getByTestId('record-outcome');
  await form.getByTestId('record-outcome-choice').selectOption(outcome);
  await form.getByTestId('record-outcome-note').fill(note);
  await form.getByTestId('record-outcome-submit').click();
}

async function sessionStatus(page: Page, name: string) {
  await page.goto('/sessions');
  const row = page.getByTestId('session-row').filter({ hasText: name });
  return (await row.first().innerText()).toLowerCase();
}

test('an operator issues links, copies, sends by email, and follows them to their end', async ({ browser }) => {
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin.getByTestId('main-nav')).toBeVisible();
  const context = await browser.newContext({ permissions: ['clipboard-read', 'clipboard-write'] });
  const page = await context.newPage();
  const errors: string[] = [];
  watchConsole(page, errors);
  await createStaff(admin, page, OPERATOR);
  await adminContext.close();

  // Validation first: nothing filled in.
  await page.goto('/links');
  await hydrated(page);
  await page.getByTestId('link-submit').click();
  await expect(page.getByTestId('link-form').locator('.field-error').first()).toBeVisible();

  // A Message Central (sandbox) link.
  const link = await newLink(page, 'message_central:trial:basic', 'Asha Rao', '98765 43210', 'asha.rao@example.com');

  // The QR code decodes to the link.
  const qr = page.getByTestId('link-qr');
  await expect.poll(() => qr.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);
  const png = PNG.sync.read(await qr.screenshot());
  const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  expect(decoded?.data).toBe(link);
  await expect(page.getByTestId('countdown')).toHaveText(/\d+:\d\d/);

  // Copy puts exactly the link on the clipboard, with a visible confirmation.
  await page.getByTestId('copy-link').click();
  await expect(page.getByTestId('link-result')).toContainText('Copied');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(link);

  // Send by email: the SMTP server receives it, and the link in the mail opens the journey.
  await page.getByTestId('send-email').click();
  await expect(page.getByTestId('send-result')).toContainText(/sent/i);
  const maildir = process.env.KYC_DESK_MAILDIR;
  if (!maildir) throw new Error('KYC_DESK_MAILDIR is not set (run the tests through ../test.sh)');
  let mail = '';
  await expect
    .poll(() => {
      const dir = join(maildir, 'new');
      const files = readdirSync(dir);
      mail = files.map((f) => readFileSync(join(dir, f), 'utf8')).join('\n');
      return mail.includes('asha.rao@example.com');
    })
    .toBe(true);
  // The admin's template (2-credentials.spec.ts) is what the customer receives.
  expect(mail).toContain('Subject: Verify your identity, Asha Rao');
  const plain = mail.replace(/=\r?\n/g, '').replace(/=3D/g, '=');
  const mailed = plain.match(/https?:\/\/\S+\/sandbox\/journey\/[A-Za-z0-9]+/)?.[0];
  expect(mailed).toBe(link);
  const customer = await context.newPage();
  await customerDecides(customer, mailed!, 'Approve');

  // Message Central reports no result to KYC Desk: the return is the customer's claim, so
  // the session is returned and awaits confirmation, shown as a claim on its page.
  expect(await sessionStatus(page, 'Asha Rao')).toContain('returned, awaiting confirmation');
  await page.getByTestId('session-row').filter({ hasText: 'Asha Rao' }).getByRole('link', { name: 'Asha Rao' }).click();
  await hydrated(page);
  await expect(page.getByTestId('return-claim')).toContainText("Customer's browser reported: approved — not confirmed");
  const timeline = page.getByTestId('timeline');
  await expect(timeline).toContainText('Sent by email to a***@example.com');

  // The operator checks Message Central's console and records the outcome: the note is required.
  await recordOutcome(page, 'completed', '');
  await expect(page.getByTestId('record-outcome').locator('.field-error')).toContainText(/console/i);
  await recordOutcome(page, 'completed', 'Console shows the journey verified.');
  await expect(page.getByTestId('session-notice')).toContainText('recorded');
  await expect(page.getByTestId('recorded-outcome')).toContainText(OPERATOR.email);
  await expect(page.getByTestId('status-badge').first()).toHaveText('Completed');
  await expect(timeline).toContainText('completed');
  expect(await sessionStatus(page, 'Asha Rao')).toContain('completed');

  // An Eko DigiLocker link: consent, then the poller fetches the masked document.
  const eko = await newLink(page, 'eko:uat:digilocker', 'Meera Iyer', '9123456780');
  await customerDecides(customer, eko, 'Approve');
  await expect
    .poll(async () => sessionStatus(page, 'Meera Iyer'), { timeout: 30_000, intervals: [1000] })
    .toContain('completed');
  await page.getByTestId('session-row').filter({ hasText: 'Meera Iyer' }).getByRole('link', { name: 'Meera Iyer' }).click();
  await expect(page.getByTestId('session-result')).toContainText('XXXX-XXXX-');

  // A denied journey is also only a claim; it ends failed once the operator records it.
  const denied = await newLink(page, 'message_central:trial:premium', 'Ravi Kumar', '+91 91234 56789');
  await customerDecides(customer, denied, 'Deny');
  expect(await sessionStatus(page, 'Ravi Kumar')).toContain('returned, awaiting confirmation');
  await page.getByTestId('session-row').filter({ hasText: 'Ravi Kumar' }).getByRole('link', { name: 'Ravi Kumar' }).click();
  await hydrated(page);
  await expect(page.getByTestId('return-claim')).toContainText('denied — not confirmed');
  await recordOutcome(page, 'failed', 'Console shows the customer declined.');
  await expect(page.getByTestId('session-notice')).toContainText('recorded');
  expect(await sessionStatus(page, 'Ravi Kumar')).toContain('failed');

  // Filters and search find sessions; they live in the URL.
  await page.goto('/sessions?status=failed');
  await expect(page.getByTestId('session-row')).toHaveCount(1);
  await expect(page.getByTestId('session-row')).toContainText('Ravi Kumar');
  await page.goto('/sessions');
  await hydrated(page);
  await page.getByLabel(/search/i).fill('meera');
  await page.getByLabel(/search/i).press('Enter');
  await expect(page).toHaveURL(/q=meera/);
  await expect(page.getByTestId('session-row')).toHaveCount(1);
  await expect(page.getByTestId('session-row')).toContainText('Meera Iyer');
  await page.goto('/sessions?q=9123456780');
  await expect(page.getByTestId('session-row')).toHaveCount(1);

  await expectNoConsoleErrors(errors);
  await context.close();
});
