// The views the tray and notifications open the popover on: given in the URL's
// hash at start, or by the `leakwatch-navigate` event when it is already open.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { cleanup, render, screen, waitFor, within } from '@testing-library/svelte';
import App from './App.svelte';
import { FakeBackend } from './lib/fake-backend';
import { demoStatus } from './fixtures/status';
import type { Status } from './bindings/Status';

let scrolled: Element[] = [];

beforeEach(() => {
  scrolled = [];
  // jsdom lays nothing out and has no scrollIntoView: record who asked.
  Element.prototype.scrollIntoView = vi.fn(function (this: Element) {
    scrolled.push(this);
  });
});
afterEach(cleanup);

function status(): Status {
  const s = demoStatus();
  s.targets[1] = { ...s.targets[1], name: 'web ui/1', target: 'web ui/1' };
  return s;
}

async function open(hash: string) {
  const backend = new FakeBackend({ status: status() });
  render(App, { props: { backend, hash } });
  // The footer shows once the first status is in (settings hides the rows).
  await screen.findByText(/Leakwatch: CPU/);
  return backend;
}

function row(name: string): HTMLElement {
  const el = [...document.querySelectorAll<HTMLElement>('[data-testid="target-row"]')].find(
    (r) => r.dataset.target === name,
  );
  if (!el) throw new Error(`no row ${name}`);
  return el;
}

const expanded = (name: string) =>
  within(row(name)).getAllByRole('button')[0].getAttribute('aria-expanded') === 'true';

// Each case: the route, and what the popover must then show.
const cases: Array<[string, string, (b: FakeBackend) => Promise<void>]> = [
  ['#/target/web%20ui%2F1', 'target', async (b) => {
    await waitFor(() => expect(expanded('web ui/1')).toBe(true));
    expect(expanded('copilot')).toBe(false);
    await waitFor(() => expect(scrolled).toContain(row('web ui/1')));
    expect(document.activeElement).toBe(within(row('web ui/1')).getAllByRole('button')[0]);
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(b.callsTo('planRestart')).toEqual([]);
  }],
  ['#/restart/copilot', 'restart', async (b) => {
    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('Restart copilot?');
    expect(expanded('copilot')).toBe(true);
    expect(b.callsTo('planRestart')).toEqual([['copilot']]);
    expect(b.callsTo('restartTarget')).toEqual([]);
    await waitFor(() => expect(scrolled).toContain(row('copilot')));
  }],
  ['#/orphans', 'orphans', async () => {
    await waitFor(() => expect(scrolled).toContain(screen.getByTestId('orphans-section')));
    expect(screen.getAllByTestId('target-row').some((r) => r.querySelector('[aria-expanded="true"]'))).toBe(false);
  }],
  ['#/cleanup', 'cleanup', async (b) => {
    const dialog = await screen.findByRole('dialog');
    expect(dialog.textContent).toContain('Clean up 3 orphan trees?');
    expect((b.callsTo('planCleanup')[0][0] as unknown[]).length).toBe(3);
    expect(b.callsTo('cleanOrphans')).toEqual([]);
    await waitFor(() => expect(scrolled).toContain(screen.getByTestId('orphans-section')));
  }],
  ['#/settings', 'settings', async () => {
    await screen.findByTestId('settings-done');
    expect(screen.getByTestId('settings-button').getAttribute('aria-pressed')).toBe('true');
  }],
];

describe('routes at start', () => {
  for (const [hash, name, check] of cases) {
    it(`opens on ${name}`, async () => {
      const backend = await open(hash);
      await check(backend);
    });
  }

  it('shows the overview for junk and unknown targets', async () => {
    await open('#/restart/%E0%A4%A');
    await open('#/target/nobody');
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(document.querySelector('[aria-expanded="true"]')).toBeNull();
    expect(screen.queryByTestId('settings-done')).toBeNull();
  });
});

describe('routes by event', () => {
  const views = {
    target: { view: 'target', target: 'web ui/1', instance: null },
    restart: { view: 'restart', target: 'copilot' },
    orphans: { view: 'orphans' },
    cleanup: { view: 'cleanup' },
    settings: { view: 'settings' },
  } as const;

  for (const [, name, check] of cases) {
    it(`navigates to ${name} when already open`, async () => {
      const backend = await open('#/');
      expect(document.querySelector('[aria-expanded="true"]')).toBeNull();
      backend.emitNavigate(views[name as keyof typeof views]);
      await check(backend);
    });
  }

  it('leaves settings for a target, and acts again on the same route', async () => {
    const backend = await open('#/settings');
    await screen.findByTestId('settings-done');
    backend.emitNavigate({ view: 'target', target: 'copilot', instance: null });
    await waitFor(() => expect(expanded('copilot')).toBe(true));
    expect(screen.queryByTestId('settings-done')).toBeNull();
    scrolled = [];
    backend.emitNavigate({ view: 'target', target: 'copilot', instance: null });
    await waitFor(() => expect(scrolled).toContain(row('copilot')));
  });
});

// Issue 13: rows were matched by the route's label against their names, so a
// notification about one process of a target that matched several (`web[124]`)
// opened whichever row had that name. They are matched by target and instance.
describe('routes to one process of a target', () => {
  function workers(): Status {
    const s = demoStatus();
    const [first] = s.targets;
    s.targets = [
      { ...first, name: 'worker[123]', target: 'worker', instance: 123, process: { ...first.process!, pid: 123 } },
      { ...first, name: 'worker[124]', target: 'worker', instance: 124, process: { ...first.process!, pid: 124 } },
      { ...first, name: 'python3[9]', target: null, instance: 9, restartable: false, process: { ...first.process!, pid: 9, name: 'python3' } },
    ];
    return s;
  }

  async function openOn(hash: string) {
    const backend = new FakeBackend({ status: workers() });
    render(App, { props: { backend, hash } });
    await screen.findByText(/Leakwatch: CPU/);
    return backend;
  }

  it('opens the row of that pid, not its sibling', async () => {
    await openOn('#/target/worker/124');
    await waitFor(() => expect(expanded('worker[124]')).toBe(true));
    expect(expanded('worker[123]')).toBe(false);
  });

  it('opens a top holder by its pid', async () => {
    const backend = await openOn('#/');
    backend.emitNavigate({ view: 'target', target: null, instance: 9 });
    await waitFor(() => expect(expanded('python3[9]')).toBe(true));
    expect(expanded('worker[123]')).toBe(false);
    expect(within(row('python3[9]')).getByTestId('row-name').textContent).toMatch(/^python3,/);
  });

  it('asks once to restart a target that matched several processes', async () => {
    const backend = await openOn('#/restart/worker');
    const dialogs = await screen.findAllByRole('dialog');
    expect(dialogs).toHaveLength(1);
    expect(backend.callsTo('planRestart')).toEqual([['worker']]);
  });
});
