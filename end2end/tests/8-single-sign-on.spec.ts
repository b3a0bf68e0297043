import { test, expect } from '@playwright/test';
import { ChildProcess } from 'child_process';
import {
  OwnServer, expectNoConsoleErrors, freePort, hydrated, startIdentityProvider, startOwnServer, watchConsole,
} from './helpers';

// Single sign-on through a real OpenID provider (the `oidc-provider` package, started here on
// loopback with KYC Desk registered as its client). A server of this spec's own, on a fresh
// database, so the shared server's sign-in page keeps its password-only form for the others.
const ADMIN = { email: 'sso.admin@example.com', password: 'sso admin phrase 4711', name: 'Sia Admin' };
const STAFF = { email: 'sso.operator@example.com', name: 'Olu Operator' };
const CLIENT_SECRET = 'browser-test-client-secret-93b1';

let own: OwnServer | undefined;
let provider: ChildProcess | undefined;
let issuer = '';
let base = '';

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  // The provider must know KYC Desk's address before either starts.
  const port = await freePort();
  ({ issuer, process: provider } = await startIdentityProvider(`http://localhost:${port}`, CLIENT_SECRET));
  own = await startOwnServer('sso', port, { KYC_DESK_SECOND_FACTOR_ROLES: 'none' });
  base = own.base;
});

test.afterAll(async () => {
  own?.process.kill();
  provider?.kill();
});

test('an admin sets up single sign-on; an SSO-only operator signs in through the identity provider and out again', async ({ browser }) => {
  test.setTimeout(120_000);
  const errors: string[] = [];
  const admin = await browser.newPage();
  watchConsole(admin, errors);
  const setup = own!.log().match(/https?:\/\/\S+?(\/setup\/[A-Za-z0-9_-]+)/)![1];
  await admin.goto(base + setup);
  await hydrated(admin);
  await admin.getByLabel('Email').fill(ADMIN.email);
  await admin.getByLabel('Display name').fill(ADMIN.name);
  await admin.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await admin.getByLabel('Repeat password').fill(ADMIN.password);
  await admin.getByRole('button', { name: 'Create admin and sign in' }).click();
  await expect(admin.getByTestId('main-nav')).toBeVisible();

  // The identity provider, set up on the credentials page (a step-up first).
  await admin.goto(base + '/credentials');
  await hydrated(admin);
  const card = admin.getByTestId('credential-single_sign_on-default');
  await card.locator('summary').click();
  const form = card.getByTestId('editor-single_sign_on-default');
  await form.getByLabel('Issuer URL').fill(issuer);
  await form.getByLabel('Client ID').fill('kyc-desk');
  await form.getByLabel('Client secret').fill(CLIENT_SECRET);
  await form.getByLabel('Name on the sign-in page').fill('Acme staff login');
  await form.getByRole('button', { name: 'Save' }).click();
  const stepUp = form.getByTestId('step-up');
  await stepUp.getByLabel('Your password').fill(ADMIN.password);
  await stepUp.getByRole('button', { name: 'Confirm' }).click();
  await expect(stepUp.getByTestId('step-up-done')).toBeVisible();
  await form.getByRole('button', { name: 'Save' }).click();
  await expect(admin.getByTestId('credential-saved')).toContainText('created (version 1)');
  await card.getByRole('button', { name: 'Test connection' }).click();
  await expect(card.getByTestId('test-result')).toContainText('Read the discovery document');
  await expect(admin.locator('body')).not.toContainText(CLIENT_SECRET);

  // An operator who signs in with single sign-on only: no password asked for.
  await admin.goto(base + '/users');
  await hydrated(admin);
  const create = admin.getByTestId('create-user-form');
  await create.getByLabel('Email').fill(STAFF.email);
  await create.getByLabel('Display name').fill(STAFF.name);
  await create.getByLabel('Role').selectOption('operator');
  await create.getByTestId('new-sso-only').check();
  await expect(create.getByLabel('Initial password')).toBeHidden();
  await create.getByRole('button', { name: 'Create user' }).click();
  await expect(admin.getByTestId('users-notice')).toContainText('single sign-on');
  await expect(admin.getByTestId(`user-row-${STAFF.email}`).getByTestId('sso-only')).toBeVisible();

  // The operator: the sign-in page offers the provider; its own sign-in page; back, signed in.
  const context = await browser.newContext();
  const page = await context.newPage();
  watchConsole(page, errors);
  await page.goto(base + '/sessions');
  await expect(page).toHaveURL(/\/login\?next=%2Fsessions$/);
  await hydrated(page);
  const button = page.getByTestId('sso-login');
  await expect(button).toHaveText('Sign in with Acme staff login');
  await button.click();
  await expect(page).toHaveURL(new RegExp(`^${issuer}/interaction/`));
  await page.getByLabel('Email').fill(STAFF.email);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(new RegExp(`^${base}/sessions$`));
  await hydrated(page);
  await expect(page.getByTestId('current-user')).toHaveText(STAFF.name);
  // No password to change for an SSO-only user.
  await expect(page.getByRole('link', { name: 'Change password' })).toHaveCount(0);
  await page.goto(base + '/');
  await hydrated(page);
  await page.getByTestId('nav/links').click();
  await expect(page).toHaveURL(new RegExp(`^${base}/links$`));

  // The admin's list shows the link made at the first sign-on.
  await admin.reload();
  await hydrated(admin);
  await expect(admin.getByTestId(`user-row-${STAFF.email}`).getByTestId('sso-linked')).toBeVisible();

  // Signing out offers signing out at the provider too.
  await page.getByTestId('sign-out').click();
  await expect(page).toHaveURL(new RegExp(`^${base}/login\\?signed_out=sso$`));
  await expect(page.getByTestId('signed-out-sso')).toBeVisible();
  const providerSignOut = page.getByTestId('provider-sign-out');
  await expect(providerSignOut).toHaveAttribute('href', new RegExp(`^${issuer}/session/end\\?`));

  // A callback this browser did not start is refused with a page in words.
  await page.goto(`${base}/login/sso/callback?code=forged&state=forged`);
  await expect(page.getByTestId('sso-error')).toContainText('not started in this browser');
  await page.getByRole('link', { name: 'Back to sign-in' }).click();
  await expect(page).toHaveURL(new RegExp(`^${base}/login$`));
  await hydrated(page);
  await expectNoConsoleErrors(errors);
  // The client secret reached neither a page nor the server's log.
  expect(own!.log()).not.toContain(CLIENT_SECRET);
  await context.close();
});
