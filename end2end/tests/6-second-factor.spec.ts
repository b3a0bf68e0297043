import { test, expect } from '@playwright/test';
import { ADMIN, createStaff, expectNoConsoleErrors, hydrated, signIn, totp, watchConsole } from './helpers';

// Runs after 1-auth.spec.ts, which created the admin through the setup link.
const PERSON = {
  email: 'totp.user@example.com',
  name: 'Tara Totp',
  role: 'operator',
  initial: 'initial passphrase 6001',
  own: 'my own passphrase 6001',
};

test.describe.configure({ mode: 'serial' });

test('a user sets up an authenticator app from the page and then signs in with a code', async ({ browser }) => {
  const admin = await browser.newPage();
  const user = await browser.newPage();
  const errors: string[] = [];
  watchConsole(user, errors);
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin.getByTestId('main-nav')).toBeVisible();
  await createStaff(admin, user, PERSON);

  // Enrolment: QR code and key shown, confirmed with a first code.
  await user.goto('/account/authenticator');
  await hydrated(user);
  await user.getByTestId('authenticator-start').click();
  await expect(user.getByTestId('authenticator-qr').locator('svg')).toBeVisible();
  const key = (await user.getByTestId('authenticator-key').textContent())!.trim();
  expect(key).toMatch(/^[A-Z2-7]{32}$/);
  const form = user.getByTestId('authenticator-confirm-form');
  await form.getByLabel('Code').fill(totp(key) === '000000' ? '111111' : '000000');
  await form.getByRole('button', { name: 'Confirm' }).click();
  await expect(form.locator('.field-error')).toContainText('not right');
  await form.getByLabel('Code').fill(totp(key));
  await form.getByRole('button', { name: 'Confirm' }).click();
  await expect(user.getByTestId('authenticator-confirmed')).toBeVisible();

  // After enrolment the key is not shown again.
  await user.goto('/account/authenticator');
  await hydrated(user);
  await expect(user.getByTestId('authenticator-enrolled')).toBeVisible();
  await expect(user.locator('body')).not.toContainText(key);

  // Signing in again: password, then the second step, then the console (a full page load).
  await user.getByTestId('sign-out').click();
  await expect(user).toHaveURL(/\/login/);
  await signIn(user, PERSON.email, PERSON.own);
  await expect(user).toHaveURL(/\/login\/code/);
  await hydrated(user);
  // Nothing else opens half signed in.
  await user.goto('/sessions');
  await expect(user).toHaveURL(/\/login\/code/);
  await hydrated(user);
  const step = user.getByTestId('second-step-form');
  // The next step's code: the confirming code was used already and is refused.
  await step.getByLabel('Code').fill(totp(key, 1));
  await step.getByRole('button', { name: 'Continue' }).click();
  await expect(user.getByTestId('main-nav')).toBeVisible();
  await expect(user.getByTestId('current-user')).toContainText(PERSON.name);
  await expectNoConsoleErrors(errors);
});
