import { test, expect } from '@playwright/test';
import { expectNoConsoleErrors, hydrated, signIn, watchConsole } from './helpers';

// Runs after 1-auth.spec.ts, which created this admin through the setup link.
const ADMIN = { email: 'admin@example.com', password: 'admin passphrase 2026' };
const CANARY_DEV = 'canary-e2e-developer-key-4711';
const CANARY_ACCESS = 'canary-e2e-access-key-0815';
const CANARY_MC = 'canary-e2e-mc-api-key-9001';
const CANARY_MC_ROTATED = 'canary-e2e-mc-api-key-rotated-2';

test.describe.configure({ mode: 'serial' });

test('admin saves Eko and Message Central credentials after confirming it is them, sees only masked values, and rotates', async ({ page, baseURL }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  await signIn(page, ADMIN.email, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  await page.goto('/credentials');
  await hydrated(page);

  // The run command seeded sandbox credentials, labelled as such.
  const seeded = page.getByTestId('credential-eko_digilocker-uat');
  await expect(seeded).toContainText('Sandbox');
  await expect(page.getByTestId('credential-message_central_ekyc-trial').getByTestId('trial-count')).toContainText('0 of 5 trial links used');

  // Eko production, pointed at the sandbox (plain http is allowed for this machine only).
  const eko = page.getByTestId('credential-eko_digilocker-production');
  await eko.locator('summary').click();
  const ekoForm = eko.getByTestId('editor-eko_digilocker-production');
  await ekoForm.getByLabel('Base URL').fill('http://example.com/eko');
  await ekoForm.getByLabel('Initiator ID').fill('9962981729');
  await ekoForm.getByLabel('User code').fill('20810200');
  await ekoForm.getByLabel('Developer key').fill(CANARY_DEV);
  await ekoForm.getByLabel('Access key').fill(CANARY_ACCESS);
  await ekoForm.getByRole('button', { name: 'Save' }).click();
  // Saving a credential is a sensitive action: the admin (no authenticator app here) confirms
  // it is them with the password first. A wrong one is refused in the prompt.
  const stepUp = ekoForm.getByTestId('step-up');
  await expect(stepUp).toContainText('Confirm it is you');
  await stepUp.getByLabel('Your password').fill('not my password at all');
  await stepUp.getByRole('button', { name: 'Confirm' }).click();
  await expect(stepUp.getByTestId('step-up-error')).toContainText('not right');
  await stepUp.getByLabel('Your password').fill(ADMIN.password);
  await stepUp.getByRole('button', { name: 'Confirm' }).click();
  await expect(stepUp.getByTestId('step-up-done')).toContainText('Confirmed for 5 minutes');
  await ekoForm.getByRole('button', { name: 'Save' }).click();
  await expect(ekoForm.locator('.field-error')).toContainText('Use https://');

  // With the sandbox's documented UAT keys the connection test passes; canaries are saved first
  // to prove they never come back.
  await ekoForm.getByLabel('Base URL').fill(`${baseURL}/sandbox/eko`);
  await ekoForm.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByTestId('credential-saved')).toContainText('production: created (version 1)');
  await expect(eko.getByTestId('masked-access_key')).toContainText('•••• 0815');
  await expect(eko.getByTestId('masked-developer_key')).toContainText('•••• 4711');
  await expect(page.locator('body')).not.toContainText(CANARY_ACCESS);
  await expect(page.locator('body')).not.toContainText(CANARY_DEV);

  // The connection test tells right keys from wrong ones: the sandbox checks the signature.
  await eko.getByRole('button', { name: 'Test connection' }).click();
  await expect(eko.getByTestId('test-result')).toContainText('Eko refused the request signature');
  await seeded.getByRole('button', { name: 'Test connection' }).click();
  await expect(seeded.getByTestId('test-result')).toContainText('Eko accepted the signature');

  // Message Central production: the pasted Bearer prefix is stripped and reported.
  const mc = page.getByTestId('credential-message_central_ekyc-production');
  await mc.locator('summary').click();
  const mcForm = mc.getByTestId('editor-message_central_ekyc-production');
  await mcForm.getByLabel('Company name').fill('Acme Bank');
  await mcForm.getByLabel('Basic flow ID').fill('FLOW 1');
  await mcForm.getByLabel('API key').fill(`Bearer ${CANARY_MC}`);
  await mcForm.getByRole('button', { name: 'Save' }).click();
  await expect(mcForm.locator('.field-error')).toContainText('no spaces');
  await mcForm.getByLabel('Basic flow ID').fill('FLOW-1');
  await mcForm.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByTestId('credential-saved')).toContainText("'Bearer ' prefix");
  await expect(mc.getByTestId('masked-api_key')).toContainText('•••• 9001');

  // Rotation, within the confirmed minutes: version 2.
  // Open the editor (it may still be open from the first save).
  await mc.locator('details').evaluate((d) => { (d as HTMLDetailsElement).open = true; });
  const rotate = mc.getByTestId('editor-message_central_ekyc-production');
  await rotate.getByLabel('API key').fill(CANARY_MC_ROTATED);
  await rotate.getByRole('button', { name: 'Save' }).click();
  await expect(page.getByTestId('credential-saved')).toContainText('rotated (version 2)');
  await expect(mc.getByTestId('credential-meta')).toContainText('Version 2');
  await expect(mc.getByTestId('masked-api_key')).toContainText('ed-2');

  // Nothing secret reached the page, and a reload shows the same masked state.
  await page.reload();
  await hydrated(page);
  const html = await page.content();
  for (const canary of [CANARY_DEV, CANARY_ACCESS, CANARY_MC, CANARY_MC_ROTATED]) {
    expect(html).not.toContain(canary);
  }
  await expectNoConsoleErrors(errors);
});

test('admin edits the link email: field-level checks, then the saved template is shown again', async ({ page }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  await signIn(page, ADMIN.email, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  // The texts are reached from the credentials page, whose company name fills {company}.
  await page.goto('/credentials');
  await hydrated(page);
  await page.locator('section.panel').getByRole('link', { name: 'Customer texts' }).click();
  await expect(page).toHaveURL(/\/texts$/);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Customer texts');
  const editor = page.getByTestId('email-template-form');
  await expect(editor.getByLabel('Subject')).toHaveValue(/identity verification/);
  await editor.getByLabel('Subject').fill('Verify your identity, {name}');
  await editor.getByLabel('Message').fill('Hello {name},\n\nplease verify here before {expires}.');
  await editor.getByRole('button', { name: 'Save template' }).click();
  // A new sign-in: the template (a sensitive action) asks to confirm it is them again.
  await editor.getByTestId('step-up').getByLabel('Your password').fill(ADMIN.password);
  await editor.getByTestId('step-up').getByRole('button', { name: 'Confirm' }).click();
  await expect(editor.getByTestId('step-up-done')).toBeVisible();
  await editor.getByRole('button', { name: 'Save template' }).click();
  await expect(editor.locator('.field-error')).toContainText('must contain {link}');
  await editor.getByLabel('Message').fill('Hello {name},\n\nplease verify here: {link}\n\nValid until {expires}.');
  await editor.getByRole('button', { name: 'Save template' }).click();
  await expect(page.getByTestId('template-saved')).toBeVisible();
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('email-template-form').getByLabel('Subject')).toHaveValue('Verify your identity, {name}');
  await expect(page.getByTestId('email-template-form').getByLabel('Message')).toHaveValue(/please verify here: \{link\}/);
  expectNoConsoleErrors(errors);
});

test('admin publishes the next version of the privacy notice: a part left blank is named under its box', async ({ page }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  await signIn(page, ADMIN.email, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  await page.goto('/texts');
  await hydrated(page);
  const editor = page.getByTestId('notice-editor');
  // The migration wrote version 1; no earlier spec saves the notice.
  await expect(editor.getByTestId('notice-version')).toContainText('Version 1');
  await expect(editor).toContainText('Saving publishes version 2');
  await expect(editor.getByTestId('notice-hi-purpose')).toHaveValue(/\{company\}/);
  await editor.getByTestId('notice-en-purpose').fill('{company} checks your identity before opening your account.');
  // Spaces only: the browser lets it through (it is not empty), the server names the part.
  await editor.getByTestId('notice-hi-retention').fill('   ');
  await editor.getByTestId('notice-save').click();
  await editor.getByTestId('step-up').getByLabel('Your password').fill(ADMIN.password);
  await editor.getByTestId('step-up').getByRole('button', { name: 'Confirm' }).click();
  await expect(editor.getByTestId('step-up-done')).toBeVisible();
  await editor.getByTestId('notice-save').click();
  await expect(editor.getByTestId('form-error')).toContainText('highlighted field');
  await expect(editor.getByTestId('notice-hi-retention')).toHaveAttribute('aria-invalid', 'true');
  await expect(editor.locator('#notice-hi-retention-error')).toContainText('Write this part');
  await editor.getByTestId('notice-hi-retention').fill('रिकॉर्ड पाँच वर्ष तक रखे जाते हैं।');
  await editor.getByTestId('notice-save').click();
  await expect(editor.getByTestId('notice-saved')).toContainText('Version 2 published');
  await expect(editor.getByTestId('notice-version')).toContainText(`Version 2 · saved by ${ADMIN.email}`);
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('notice-version')).toContainText('Version 2');
  await expect(page.getByTestId('notice-en-purpose')).toHaveValue('{company} checks your identity before opening your account.');
  await expectNoConsoleErrors(errors);
});

test('admin edits the reminder texts: a Hindi SMS without {link} is named under its box', async ({ page }) => {
  const errors: string[] = [];
  watchConsole(page, errors);
  await signIn(page, ADMIN.email, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  await page.goto('/texts');
  await hydrated(page);
  const editor = page.getByTestId('reminder-templates');
  await expect(editor.getByTestId('reminder-templates-saved-by')).toContainText('Saved by KYC Desk');
  await expect(editor.getByTestId('reminder-en-sms')).toHaveValue(/^Reminder: \{company\}/);
  await editor.getByTestId('reminder-en-sms').fill('{company}: your verification is waiting at {link}');
  await editor.getByTestId('reminder-hi-sms').fill('{company}: आपका सत्यापन बाकी है');
  await editor.getByTestId('reminder-templates-save').click();
  await editor.getByTestId('step-up').getByLabel('Your password').fill(ADMIN.password);
  await editor.getByTestId('step-up').getByRole('button', { name: 'Confirm' }).click();
  await expect(editor.getByTestId('step-up-done')).toBeVisible();
  await editor.getByTestId('reminder-templates-save').click();
  await expect(editor.getByTestId('form-error')).toContainText('highlighted field');
  await expect(editor.getByTestId('reminder-hi-sms')).toHaveAttribute('aria-invalid', 'true');
  await expect(editor.locator('#reminder-hi-sms-error')).toContainText('must contain {link}');
  await editor.getByTestId('reminder-hi-sms').fill('{company}: आपका सत्यापन बाकी है: {link}');
  await editor.getByTestId('reminder-templates-save').click();
  await expect(editor.getByTestId('reminder-templates-ok')).toContainText('Reminders saved');
  await expect(editor.getByTestId('reminder-templates-saved-by')).toContainText(`Saved by ${ADMIN.email}`);
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('reminder-en-sms')).toHaveValue('{company}: your verification is waiting at {link}');
  await expect(page.getByTestId('reminder-hi-sms')).toHaveValue('{company}: आपका सत्यापन बाकी है: {link}');
  await expectNoConsoleErrors(errors);
});
