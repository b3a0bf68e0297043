import { test, expect } from '@playwright/test';
import { OwnServer, expectNoConsoleErrors, freePort, hydrated, startOwnServer, totp, watchConsole } from './helpers';

// The shared test server lets every role in without a second factor (its specs sign the same
// people in many times a minute). This spec starts a server of its own on a fresh database with
// the default policy — admins and auditors must have a second factor — and a short step-up
// window, so that the step-up prompt can be met without waiting five minutes. It is opened as
// http://localhost:PORT, its public URL: browsers offer passkeys for a domain name only.
const ADMIN = { email: 'policy.admin@example.com', password: 'policy admin phrase 31', name: 'Pia Policy' };
const OPERATOR = {
  email: 'passkey.op@example.com',
  name: 'Paz Passkey',
  initial: 'initial passphrase 4242',
  own: 'passkey operator phrase 77',
};
const STEP_UP_SECONDS = 10;

let own: OwnServer | undefined;
let base = '';

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  own = await startOwnServer('policy', await freePort(), {
    KYC_DESK_STEP_UP_WINDOW: `${STEP_UP_SECONDS}s`,
    // The default policy: admins and auditors must have a second factor.
    KYC_DESK_SECOND_FACTOR_ROLES: undefined,
  });
  base = own.base;
});

test.afterAll(async () => {
  own?.process.kill();
});

test('an admin must set up an authenticator before anything else, and confirms with a code before a rotation', async ({ page }) => {
  test.setTimeout(90_000);
  const errors: string[] = [];
  watchConsole(page, errors);
  const setup = own!.log().match(/https?:\/\/\S+?(\/setup\/[A-Za-z0-9_-]+)/)![1];

  // The first admin, right after setup: sent to enrolment; the console stays closed.
  await page.goto(base + setup);
  await hydrated(page);
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Display name').fill(ADMIN.name);
  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByLabel('Repeat password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create admin and sign in' }).click();
  await expect(page).toHaveURL(/\/account\/authenticator$/);
  await expect(page.getByTestId('must-enrol')).toBeVisible();
  await expect(page.getByTestId('main-nav').locator('a')).toHaveCount(0);
  for (const path of ['/users', '/credentials', '/']) {
    await page.goto(base + path);
    await expect(page).toHaveURL(/\/account\/authenticator$/);
  }
  await hydrated(page);

  // Enrolment from the page; the recovery codes are shown once.
  await page.getByTestId('authenticator-start').click();
  const key = (await page.getByTestId('authenticator-key').textContent())!.trim();
  const form = page.getByTestId('authenticator-confirm-form');
  await form.getByLabel('Code').fill(totp(key));
  await form.getByRole('button', { name: 'Confirm' }).click();
  const codes = page.getByTestId('recovery-codes').locator('li');
  await expect(codes).toHaveCount(10);
  await expect(codes.first()).toHaveText(/^[a-z2-7]{5}-[a-z2-7]{5}$/);
  await page.getByTestId('enrol-continue').click();
  await expect(page.getByTestId('main-nav')).toBeVisible();
  await expect(page).toHaveURL(new RegExp(`^${base}/$`));

  // The set-up page now shows the codes left, and no removal (the role must have a factor).
  await page.goto(base + '/account/authenticator');
  await hydrated(page);
  await expect(page.getByTestId('recovery-codes-left')).toContainText('10 of 10');
  await expect(page.getByTestId('authenticator-required')).toBeVisible();
  await expect(page.locator('body')).not.toContainText(key);

  // Past the step-up window, a rotation asks for a fresh code first.
  await page.waitForTimeout((STEP_UP_SECONDS + 1) * 1000);
  await page.goto(base + '/credentials');
  await hydrated(page);
  const eko = page.getByTestId('credential-eko_digilocker-uat');
  await eko.locator('details').evaluate((d) => { (d as HTMLDetailsElement).open = true; });
  const editor = eko.getByTestId('editor-eko_digilocker-uat');
  await editor.getByLabel('Access key').fill('a-rotated-access-key-7');
  await editor.getByRole('button', { name: 'Save' }).click();
  const stepUp = editor.getByTestId('step-up');
  await expect(stepUp).toContainText('fresh code from your authenticator app');
  await stepUp.getByLabel('Code from your authenticator app').fill(totp(key, 1));
  await stepUp.getByRole('button', { name: 'Confirm' }).click();
  await expect(stepUp.getByTestId('step-up-done')).toBeVisible();
  await editor.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByTestId('credential-saved')).toContainText('rotated (version 2)');

  // An operator for the passkey test (operators need no second factor by default).
  await page.goto(base + '/users');
  await hydrated(page);
  const create = page.getByTestId('create-user-form');
  await create.getByLabel('Email').fill(OPERATOR.email);
  await create.getByLabel('Display name').fill(OPERATOR.name);
  await create.getByLabel('Role').selectOption('operator');
  await create.getByLabel('Initial password').fill(OPERATOR.initial);
  await create.getByRole('button', { name: 'Create user' }).click();
  await expect(page.getByTestId('users-notice')).toContainText(OPERATOR.email);
  await expectNoConsoleErrors(errors);
});

test('an operator adds a passkey, signs in with it (after the password, then alone), confirms a step-up with it and removes it', async ({ browser }) => {
  test.setTimeout(90_000);
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors: string[] = [];
  watchConsole(page, errors);
  // Chromium's virtual authenticator (DevTools protocol) stands in for a phone or a laptop's
  // fingerprint reader: it makes and uses real WebAuthn credentials.
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  // First sign-in: replace the initial password.
  await page.goto(base + '/login');
  await hydrated(page);
  await page.getByLabel('Email').fill(OPERATOR.email);
  await page.getByLabel('Password').fill(OPERATOR.initial);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('must-change')).toBeVisible();
  await hydrated(page);
  await page.getByLabel('Current password').fill(OPERATOR.initial);
  await page.getByLabel('New password', { exact: true }).fill(OPERATOR.own);
  await page.getByLabel('Repeat new password').fill(OPERATOR.own);
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByTestId('main-nav')).toBeVisible();

  // A named passkey, the account's first second factor: recovery codes come with it.
  await page.goto(base + '/account/authenticator');
  await hydrated(page);
  await expect(page.getByTestId('no-passkeys')).toBeVisible();
  const add = page.getByTestId('add-passkey-form');
  // The browser asks for a name itself; spaces pass it and the server says what is wrong.
  await add.getByLabel('Name of the new passkey').fill('   ');
  await add.getByRole('button', { name: 'Add a passkey' }).click();
  await expect(add.locator('.field-error')).toContainText('Give the passkey a name');
  await add.getByLabel('Name of the new passkey').fill('Virtual laptop');
  await add.getByRole('button', { name: 'Add a passkey' }).click();
  await expect(page.getByTestId('passkey-added')).toBeVisible();
  await expect(page.getByTestId('recovery-codes').locator('li')).toHaveCount(10);
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('passkey')).toContainText('Virtual laptop');
  // A passkey-only user keeps their recovery codes on the same page, and can make new ones.
  await expect(page.getByTestId('recovery-codes-left')).toContainText('10 of 10');
  await expect(page.getByTestId('recovery-codes-form').getByRole('button', { name: 'Make new recovery codes' })).toBeVisible();

  // Signing in again: the password, then the passkey. (A click before hydration would post the
  // sign-out form natively.)
  await hydrated(page);
  await page.getByTestId('sign-out').click();
  await expect(page).toHaveURL(/\/login/);
  await hydrated(page);
  await page.getByLabel('Email').fill(OPERATOR.email);
  await page.getByLabel('Password').fill(OPERATOR.own);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/login\/code/);
  await hydrated(page);
  await page.getByTestId('second-step-passkey').click();
  await expect(page.getByTestId('main-nav')).toBeVisible();
  await expect(page.getByTestId('current-user')).toContainText(OPERATOR.name);

  // And on its own: the passkey names the account, no email or password typed.
  await hydrated(page);
  await page.getByTestId('sign-out').click();
  await expect(page).toHaveURL(/\/login/);
  await hydrated(page);
  await page.getByTestId('passkey-login').click();
  await expect(page.getByTestId('main-nav')).toBeVisible();
  await expect(page.getByTestId('current-user')).toContainText(OPERATOR.name);

  // The confirmation page before a sensitive download takes the passkey too.
  await page.goto(base + '/account/confirm?next=%2Fsessions');
  await hydrated(page);
  await page.getByTestId('confirm-passkey').click();
  await expect(page).toHaveURL(/\/sessions$/);

  // Past the step-up window, removing the passkey asks for it once more.
  await page.waitForTimeout((STEP_UP_SECONDS + 1) * 1000);
  await page.goto(base + '/account/authenticator');
  await hydrated(page);
  await page.getByRole('button', { name: 'Remove Virtual laptop' }).click();
  const stepUp = page.getByTestId('step-up');
  await expect(stepUp).toContainText('needs your passkey');
  await stepUp.getByTestId('step-up-passkey').click();
  await expect(stepUp.getByTestId('step-up-done')).toBeVisible();
  await page.getByRole('button', { name: 'Remove Virtual laptop' }).click();
  await expect(page.getByTestId('no-passkeys')).toBeVisible();
  await expectNoConsoleErrors(errors);
  await context.close();
});
