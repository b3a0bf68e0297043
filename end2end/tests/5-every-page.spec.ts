import { test, expect, Page } from '@playwright/test';
import { ADMIN, expectNoConsoleErrors, watchConsole } from './helpers';

// Runs last: the earlier specs made the admin, the operator Lena (with links) and the auditor
// Audrey. Every page is loaded by its URL (a full server render, then hydration) as well as by
// in-app navigation, as each role, several times; any console error fails the test — a
// hydration panic after a full load is a bug a user meets.

const ROUNDS = 4;

type Role = { name: string; email: string; password: string; pages: string[]; refused: string[] };

const ROLES: Role[] = [
  {
    name: 'admin',
    email: ADMIN.email,
    password: ADMIN.password,
    pages: ['/', '/links', '/sessions', '/sessions/:first', '/users', '/credentials', '/texts', '/audit', '/audit?action=link.', '/account/password', '/account/authenticator', '/account/confirm?next=%2Fsessions'],
    refused: [],
  },
  {
    name: 'operator',
    email: 'lena@example.com',
    password: 'lena own phrase 2026',
    pages: ['/', '/links', '/sessions', '/sessions?status=started', '/sessions/:first', '/account/password', '/account/authenticator', '/account/confirm?next=%2Fsessions'],
    refused: ['/users', '/credentials', '/texts', '/audit'],
  },
  {
    name: 'auditor',
    email: 'audrey@example.com',
    password: 'auditor own phrase 32',
    pages: ['/', '/sessions', '/sessions/:first', '/audit', '/audit?action=link.', '/account/password', '/account/authenticator', '/account/confirm?next=%2Fsessions'],
    refused: ['/links', '/users', '/credentials', '/texts'],
  },
];

/** Waits for hydration, naming the page when it never comes (a panic stops it). */
async function hydratedAt(page: Page, path: string, errors: string[]) {
  try {
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 15_000 });
  } catch {
    throw new Error(`${path} did not hydrate; browser errors:\n${errors.join('\n')}`);
  }
}

/** Signs in through the form and waits for the console. */
async function signInAs(page: Page, role: Role, errors: string[]) {
  await page.goto('/login');
  await hydratedAt(page, '/login', errors);
  await page.getByLabel('Email').fill(role.email);
  await page.getByLabel('Password').fill(role.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('main-nav')).toBeVisible();
}

for (const role of ROLES) {
  test(`every page loads by URL and by navigation without a browser error, as ${role.name}`, async ({ browser }) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors: string[] = [];
    watchConsole(page, errors);
    await signInAs(page, role, errors);

    await page.goto('/sessions');
    await hydratedAt(page, '/sessions', errors);
    const first = await page.getByTestId('session-row').first().locator('a').first().getAttribute('href');
    expect(first, 'the earlier specs created sessions').toMatch(/^\/sessions\/[A-Za-z0-9_-]+$/);
    const pages = role.pages.map((p) => (p === '/sessions/:first' ? first! : p));

    for (let round = 1; round <= ROUNDS; round++) {
      for (const path of pages) {
        const response = await page.goto(path);
        expect(response?.status(), `GET ${path}`).toBe(200);
        await hydratedAt(page, path, errors);
        await expect(page.getByTestId('main-nav'), path).toBeVisible();
        await expect(page.getByTestId('forbidden'), path).toHaveCount(0);
        expect(errors, `after loading ${path} (round ${round})`).toEqual(
          errors.filter((e) => /status of 4\d\d/.test(e)),
        );
      }
      for (const path of role.refused) {
        const response = await page.goto(path);
        expect(response?.status(), `GET ${path}`).toBe(403);
        await hydratedAt(page, path, errors);
        await expect(page.getByTestId('forbidden'), path).toBeVisible();
      }
    }

    // In-app navigation through every area the menu offers, from a fully loaded dashboard.
    await page.goto('/');
    await hydratedAt(page, '/', errors);
    const links = page.getByTestId('main-nav').locator('a');
    const targets = await links.evaluateAll((as) => as.map((a) => a.getAttribute('href') ?? ''));
    expect(targets.length).toBeGreaterThan(1);
    for (let round = 1; round <= ROUNDS; round++) {
      for (const href of targets) {
        await page.getByTestId(`nav${href}`).click();
        await expect(page).toHaveURL(new RegExp(`${href.replace(/[/?.]/g, '\\$&')}$`));
        await expect(page.locator('main.content')).not.toContainText('Loading', { timeout: 10_000 });
      }
    }
    await page.goto(first!);
    await hydratedAt(page, first!, errors);
    await page.getByRole('link', { name: '← All sessions' }).click();
    await expect(page).toHaveURL(/\/sessions$/);
    await expect(page.getByTestId('sessions-table')).toBeVisible();

    await expectNoConsoleErrors(errors);
    await context.close();
  });
}
