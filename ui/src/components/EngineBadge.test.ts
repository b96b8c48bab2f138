import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, render, screen } from '@testing-library/svelte';
import App from '../App.svelte';
import { FakeBackend } from '../lib/fake-backend';
import { leakingStatus } from '../fixtures/status';
import type { Status } from '../bindings/Status';

afterEach(cleanup);

async function header(status: Status) {
  render(App, { props: { backend: new FakeBackend({ status }) } });
  await screen.findAllByTestId('target-row');
}

describe('engine badge', () => {
  it('says "daemon" when the popover shows the daemon\'s engine', async () => {
    const since = Date.now() - 3_600_000;
    await header({
      ...leakingStatus(),
      engine: { pid: 4242, face: 'daemon', since, socket: '/tmp/engine.sock' },
    });
    const badge = screen.getByTestId('engine-badge');
    expect(badge.textContent).toBe('daemon');
    expect(badge.title).toContain('leakwatch daemon (pid 4242');
    expect(badge.closest('header')).not.toBeNull();
  });

  it('is absent while the app runs its own engine', async () => {
    await header({
      ...leakingStatus(),
      engine: { pid: 880, face: 'app', since: Date.now(), socket: null },
    });
    expect(screen.queryByTestId('engine-badge')).toBeNull();
    cleanup();
    await header(leakingStatus());
    expect(screen.queryByTestId('engine-badge')).toBeNull();
  });
});
