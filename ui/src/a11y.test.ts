// axe-core over the popover's views in jsdom: the structural WCAG 2 A/AA rules
// (names, roles, nesting, labels). Contrast needs a real layout: the e2e runs
// axe-core in the real webview for that, in light and dark.
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, fireEvent, render, screen, within } from '@testing-library/svelte';
import axe from 'axe-core';
import App from './App.svelte';
import { FakeBackend } from './lib/fake-backend';
import { demoStatus } from './fixtures/status';

afterEach(cleanup);

async function serious(): Promise<string[]> {
  const result = await axe.run(document.body, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    rules: { 'color-contrast': { enabled: false } },
    resultTypes: ['violations'],
  });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
}

describe('accessibility (axe-core)', () => {
  it('has no serious or critical violation on the main view, a detail view, both dialogs and Settings', { timeout: 60_000 }, async () => {
    const status = demoStatus();
    const backend = new FakeBackend({
      status,
      restartPlan: { text: 'Restart copilot:\n  SIGTERM 4821 copilot', processes: [], no_health_check: false },
    });
    render(App, { props: { backend } });
    await screen.findAllByTestId('target-row');
    expect(await serious()).toEqual([]);

    const first = screen.getAllByTestId('target-row')[0];
    await fireEvent.click(within(first).getByTestId('target-summary'));
    expect(await serious()).toEqual([]);

    const restart = document.querySelector<HTMLElement>('[data-testid="row-restart-button"]');
    if (restart) {
      await fireEvent.click(restart);
      await screen.findByRole('dialog');
      expect(await serious()).toEqual([]);
      await fireEvent.click(screen.getByTestId('cancel-button'));
    }

    if (status.orphans.length) {
      await fireEvent.click(screen.getAllByTestId('orphan-select')[0]);
      await fireEvent.click(screen.getByTestId('cleanup-button'));
      await screen.findByRole('dialog');
      expect(await serious()).toEqual([]);
      await fireEvent.click(screen.getByTestId('cancel-button'));
    }

    await fireEvent.click(screen.getByTestId('settings-button'));
    await screen.findByTestId('popover-content');
    expect(await serious()).toEqual([]);
  });
});
