import { test, expect } from '@playwright/test';
import { expectNoConsoleErrors, hydrated, setupLink, signIn, watchConsole } from './helpers';

const ADMIN = { email: 'admin@example.com', password: 'admin passphrase 2026', name: 'Asha Admin' };
const OPERATOR = {
  email: 'op@example.com',
  initial: 'initial passphrase 11',
  own: 'operator own phrase 22',
  name: 'Omar Operator',
};

// The tests build on each other: setup first, then sign-in, then user management.
test.describe.configure({ mode: 'serial' });

test('the printed setup link creates the first admin, once', async ({ page }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  const link = setupLink();
  await page.goto(link);
  await hydrated(page);
  await page.getByLabel('Email').fill(ADMIN.email);
  await page.getByLabel('Display name').fill(ADMIN.name);
  await page.getByLabel('Password', { exact: true }).fill('too short');
  await page.getByLabel('Repeat password').fill('too short');
  await page.getByRole('button', { name: 'Create admin and sign in' }).click();
  await expect(page.locator('#setup-password-error')).toContainText('at least 12');

  await page.getByLabel('Password', { exact: true }).fill(ADMIN.password);
  await page.getByLabel('Repeat password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Create admin and sign in' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('current-user')).toHaveText(ADMIN.name);
  await expect(page.getByTestId('current-role')).toHaveText('Admin');

  await page.goto(link);
  await expect(page.getByTestId('setup-done')).toBeVisible();
  await expectNoConsoleErrors(errors);
});

test('sign-in refuses a wrong password and admits the right one', async ({ page }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  await signIn(page, ADMIN.email, 'not the password at all');
  await expect(page.getByTestId('form-error')).toHaveText('Wrong email or password.');
  await signIn(page, 'nobody@example.com', 'not the password at all');
  await expect(page.getByTestId('form-error')).toHaveText('Wrong email or password.');

  await signIn(page, ADMIN.email, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  const nav = page.getByTestId('main-nav');
  for (const item of ['New link', 'Sessions', 'Users', 'Credentials', 'Audit log']) {
    await expect(nav).toContainText(item);
  }
  await expectNoConsoleErrors(errors);
});

test('an operator created by the admin must change the password, sees only their pages, and is signed out when disabled', async ({ browser }) => {
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  const errors: string[] = [];
  watchConsole(admin, errors);
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin).toHaveURL(/\/$/);
  await admin.getByTestId('nav/users').click();
  await expect(admin).toHaveURL(/\/users$/);
  await hydrated(admin);

  const form = admin.getByTestId('create-user-form');
  await form.getByLabel('Email').fill(OPERATOR.email);
  await form.getByLabel('Display name').fill(OPERATOR.name);
  await form.getByLabel('Role').selectOption('operator');
  await form.getByLabel('Initial password').fill('short');
  await form.getByRole('button', { name: 'Create user' }).click();
  await expect(form.locator('#new-password-error')).toContainText('at least 12');
  await form.getByLabel('Initial password').fill(OPERATOR.initial);
  await form.getByRole('button', { name: 'Create user' }).click();
  await expect(admin.getByTestId('users-notice')).toContainText(OPERATOR.email);
  const row = admin.getByTestId(`user-row-${OPERATOR.email}`);
  await expect(row).toContainText('Must change password');

  // The operator signs in in a second browser and is sent to change the password.
  const operatorContext = await browser.newContext();
  const operator = await operatorContext.newPage();
  watchConsole(operator, errors);
  await signIn(operator, OPERATOR.email, OPERATOR.initial);
  await expect(operator).toHaveURL(/\/account\/password$/);
  await expect(operator.getByTestId('must-change')).toBeVisible();
  await hydrated(operator);
  await operator.getByLabel('Current password').fill(OPERATOR.initial);
  await operator.getByLabel('New password', { exact: true }).fill(OPERATOR.own);
  await operator.getByLabel('Repeat new password').fill(OPERATOR.own);
  await operator.getByRole('button', { name: 'Change password' }).click();
  await expect(operator).toHaveURL(/\/$/);
  const nav = operator.getByTestId('main-nav');
  await expect(nav).toContainText('New link');
  await expect(nav).toContainText('Sessions');
  await expect(nav).not.toContainText('Users');
  await expect(nav).not.toContainText('Audit log');

  const response = await operator.goto('/users');
  expect(response?.status()).toBe(403);
  await expect(operator.getByTestId('forbidden')).toBeVisible();
  await expect(operator.locator('body')).not.toContainText(ADMIN.email);

  // Disabling the operator ends their open session at once.
  await operator.goto('/sessions');
  await expect(operator).toHaveURL(/\/sessions$/);
  await admin.reload();
  await hydrated(admin);
  await row.getByRole('button', { name: 'Disable' }).click();
  await expect(row).toContainText('Disabled');
  await operator.goto('/sessions');
  await expect(operator).toHaveURL(/\/login\?next=%2Fsessions$/);
  await signIn(operator, OPERATOR.email, OPERATOR.own);
  await expect(operator.getByTestId('form-error')).toContainText('disabled');

  // Sign-out ends the admin's session: pages go back to the sign-in page.
  await admin.getByTestId('sign-out').click();
  await expect(admin).toHaveURL(/\/login$/);
  await admin.goto('/users');
  await expect(admin).toHaveURL(/\/login\?next=%2Fusers$/);
  await expectNoConsoleErrors(errors);
  await adminContext.close();
  await operatorContext.close();
});
