import { test, expect } from '@playwright/test';
import { readFileSync } from 'fs';
import { ADMIN, createStaff, expectNoConsoleErrors, hydrated, signIn, watchConsole } from './helpers';

// Runs after 3-links.spec.ts, in which the operator lena@example.com created links.
const AUDITOR = {
  email: 'audrey@example.com',
  name: 'Audrey Auditor',
  role: 'auditor',
  initial: 'auditor initial phrase 31',
  own: 'auditor own phrase 32',
};
const OPERATOR = { email: 'lena@example.com', password: 'lena own phrase 2026' };

test('an auditor filters, opens a row, exports CSV and verifies the chain; an operator gets 403', async ({ browser }) => {
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  await signIn(admin, ADMIN.email, ADMIN.password);
  await expect(admin.getByTestId('main-nav')).toBeVisible();
  const auditorContext = await browser.newContext({ acceptDownloads: true });
  const auditor = await auditorContext.newPage();
  const errors: string[] = [];
  watchConsole(auditor, errors);
  await createStaff(admin, auditor, AUDITOR);

  await auditor.getByTestId('nav/audit').click();
  await expect(auditor).toHaveURL(/\/audit$/);
  await hydrated(auditor);
  const filters = auditor.getByTestId('audit-filters');
  await filters.getByLabel('Actor').fill(OPERATOR.email);
  await filters.getByLabel('Action').fill('link.create');
  await filters.getByTestId('audit-apply').click();
  await expect(auditor).toHaveURL(/actor=lena%40example\.com/);
  await expect(auditor).toHaveURL(/action=link\.create/);
  const rows = auditor.getByTestId('audit-row');
  await expect(rows.first()).toBeVisible();
  const count = await rows.count();
  expect(count).toBeGreaterThanOrEqual(2);
  for (let i = 0; i < count; i++) {
    await expect(rows.nth(i)).toHaveAttribute('data-action', 'link.create');
    await expect(rows.nth(i)).toContainText(OPERATOR.email);
  }

  // A row opens its detail, with the MACs that chain it.
  await rows.first().locator('summary').click();
  const detail = rows.first().getByTestId('audit-detail');
  await expect(detail).toBeVisible();
  await expect(detail).toContainText('Request id');
  await expect(detail).toContainText('kyc_session');
  await expect(detail.locator('code.mac').first()).toHaveText(/^[0-9a-f]{64}$/);

  // CSV export of the filtered rows, with the chain head on its last line.
  const downloadPromise = auditor.waitForEvent('download');
  await auditor.getByTestId('audit-export').click();
  const download = await downloadPromise;
  expect(download.suggestedFilename()).toMatch(/^kyc-desk-audit-.*\.csv$/);
  const csv = readFileSync(await download.path(), 'utf8');
  const lines = csv.split('\r\n').filter((l) => l.length > 0);
  expect(lines[0]).toContain('"seq","time_utc"');
  expect(lines.length).toBe(count + 2);
  for (const line of lines.slice(1, -1)) expect(line).toContain('"link.create"');
  expect(lines[lines.length - 1]).toMatch(/"# chain head","seq=\d+","mac=[0-9a-f]{64}"/);

  // Verification passes.
  await auditor.getByTestId('audit-verify').click();
  await expect(auditor.getByTestId('audit-verify-result')).toContainText('rows verified; the chain is intact');

  // An operator may not open the audit log.
  const operatorContext = await browser.newContext();
  const operator = await operatorContext.newPage();
  await signIn(operator, OPERATOR.email, OPERATOR.password);
  await expect(operator.getByTestId('main-nav')).toBeVisible();
  const response = await operator.goto('/audit');
  expect(response?.status()).toBe(403);
  await expect(operator.getByTestId('forbidden')).toBeVisible();
  await expect(operator.getByTestId('main-nav')).not.toContainText('Audit log');

  await expectNoConsoleErrors(errors);
  await adminContext.close();
  await auditorContext.close();
  await operatorContext.close();
});
