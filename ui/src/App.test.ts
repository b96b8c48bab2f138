import { afterEach, describe, expect, it, vi } from 'vitest';
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/svelte';
import App from './App.svelte';
import { FakeBackend } from './lib/fake-backend';
import {
  configErrorStatus, downStatus, leakingStatus, orphanStatus, pausedStatus, realStatus,
} from './fixtures/status';
import type { Status } from './bindings/Status';

afterEach(cleanup);

async function show(status: Status, opts: Partial<ConstructorParameters<typeof FakeBackend>[0]> = {}) {
  const backend = new FakeBackend({ status, ...opts });
  const view = render(App, { props: { backend } });
  await screen.findAllByTestId('target-row');
  return { backend, view };
}

function row(name: string): HTMLElement {
  const el = document.querySelector<HTMLElement>(`[data-testid="target-row"][data-target="${name}"]`);
  if (!el) throw new Error(`no row ${name}`);
  return el;
}

describe('target rows', () => {
  it('shows a leaking target near its limit', async () => {
    await show(leakingStatus());
    const r = row('copilot');
    expect(r.dataset.state).toBe('critical');
    expect(within(r).getByTestId('target-fds').textContent).toBe('9412/10\u202f240');
    expect(within(r).getByTestId('target-slope').textContent).toBe('+312/h');
    expect(within(r).getByTestId('target-pid').textContent).toBe('4821');
    expect(r.textContent).toContain('limit in 2 h 40 min');
    expect(r.textContent).toContain('212 MiB');
    expect(r.textContent).toContain('92%');
    // The gauge is decoration inside the row's button; the row's name says it all.
    expect(within(r).queryByRole('meter')).toBeNull();
    expect(within(r).getByTestId('gauge').getAttribute('title')).toContain('event loops 9180');
    const name = within(r).getByRole('button', { name: /^copilot, critical/ }).textContent ?? '';
    expect(within(r).getByTestId('row-name').textContent).toBe(
      'copilot, critical, 9412 of 10\u202f240 descriptors, slope +312/h, limit in 2 h 40 min, ' +
        'event loops leaking: 1 kqueue + 2 unix sockets each, +310/h',
    );
    expect(name).toContain('9412/10\u202f240');
    const healthy = row('ollama');
    expect(within(healthy).getByTestId('target-slope').textContent).toBe('flat');
    expect(within(r).getByTestId('target-diagnosis').textContent).toBe(
      'event loops leaking: 1 kqueue + 2 unix sockets each, +310/h',
    );
    expect(within(healthy).queryByTestId('target-diagnosis')).toBeNull();
  });

  it('shows a down target with its reason', async () => {
    await show(downStatus());
    const r = row('mcp-gateway');
    expect(r.dataset.state).toBe('down');
    expect(r.textContent).toContain('nothing listens on port 8931');
    expect(within(r).queryByTestId('target-pid')).toBeNull();
  });

  it('expands with Enter and shows kinds, paths, tree and events', async () => {
    const { backend } = await show(leakingStatus());
    const button = within(row('copilot')).getAllByRole('button')[0];
    expect(button.getAttribute('aria-expanded')).toBe('false');
    await fireEvent.keyDown(button, { key: 'Enter' });
    expect(button.getAttribute('aria-expanded')).toBe('true');
    const r = row('copilot');
    const kinds = within(r).getByLabelText('descriptors by kind');
    expect(kinds.querySelector('td')?.textContent).toBe('kqueue');
    expect(r.textContent).toContain('state.db \u00d748, -wal \u00d746');
    await waitFor(() => expect(within(r).getByLabelText('process tree').textContent).toContain('copilot'));
    expect(backend.callsTo('getTree')).toEqual([[4821]]);
    const evs = within(r).getByLabelText('recent events').querySelectorAll('li');
    expect(evs).toHaveLength(2);
    expect(evs[0].textContent).toContain('12 s ago'); // newest first
    expect(evs[0].textContent).toContain('limit in 2 h 40 min');
    await fireEvent.keyDown(button, { key: ' ' });
    expect(button.getAttribute('aria-expanded')).toBe('false');
  });

  it('names the top growing kind with its count and slope', async () => {
    await show(leakingStatus());
    expect(within(row('copilot')).getByTestId('top-kind').textContent).toBe('kqueue 9180 ↑ +310/h');
    expect(within(row('ollama')).getByTestId('top-kind').textContent).toBe('file 48');
  });

  it('says "limit unknown" instead of a percentage of an assumed limit', async () => {
    const status = leakingStatus();
    status.targets[1] = { ...status.targets[1], limit_unknown: true, limit: null };
    status.targets[1].sample = { ...status.targets[1].sample!, limit: null };
    await show(status);
    const r = row('ollama');
    expect(within(r).getByTestId('limit-unknown').textContent).toBe('limit unknown');
    expect(r.textContent).not.toContain('%');
  });

  it('acts on the row\'s target, never on a parsed name, and offers only what works', async () => {
    const status = leakingStatus();
    status.targets[0] = { ...status.targets[0], name: 'copilot[4821]', instance: 4821 };
    status.targets[1] = {
      ...status.targets[1], restartable: false,
      restart_unavailable: 'no [watch.restart] for this target: set up a restart first',
    };
    const { backend } = await show(status);
    await fireEvent.click(within(row('copilot[4821]')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('restart-button'));
    await waitFor(() => expect(backend.callsTo('planRestart')).toEqual([['copilot']]));
    await fireEvent.click(within(row('ollama')).getAllByRole('button')[0]);
    const ollama = row('ollama');
    expect(within(ollama).queryByTestId('restart-button')).toBeNull();
    // It cannot restart: it offers to set a restart up, which opens Settings on it.
    const setup = within(ollama).getByTestId('setup-restart-button');
    expect(setup.getAttribute('title')).toContain('[watch.restart]');
    await fireEvent.click(setup);
    const guide = await screen.findByTestId('restart-setup');
    expect(guide.textContent).toContain('ollama has no restart yet');
    expect(guide.textContent).toContain('[watch.restart]');
  });

  it('Watch on an automatic row proposes a locator and saves the target', async () => {
    const status = leakingStatus();
    status.config.automatic = true;
    status.targets[0] = {
      ...status.targets[0], name: 'copilot[4821]', target: null, instance: 4821, restartable: false,
      restart_unavailable: 'not a watched target: Watch it to set up a restart',
    };
    const { backend } = await show(status);
    await fireEvent.click(within(row('copilot[4821]')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('watch-button'));
    const dialog = await screen.findByTestId('watch-dialog');
    expect(backend.callsTo('proposeWatch')).toEqual([[4821]]);
    expect((within(dialog).getByTestId('watch-name') as HTMLInputElement).value).toBe('copilot');
    expect(dialog.textContent).toContain('matches now: 4821');
    await fireEvent.input(within(dialog).getByTestId('watch-name'), { target: { value: 'agent' } });
    await fireEvent.click(within(dialog).getByTestId('watch-save'));
    await waitFor(() => expect(backend.callsTo('addTarget')).toEqual([
      ['agent', { key: 'argv', value: '^/usr/local/bin/copilot' }, null],
    ]));
  });

  it('Set limit writes fd_limit and shows a refusal next to the field', async () => {
    const status = leakingStatus();
    status.targets[1] = { ...status.targets[1], limit_unknown: true };
    const { backend } = await show(status);
    await fireEvent.click(within(row('ollama')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('set-limit-button'));
    await fireEvent.input(screen.getByTestId('limit-input'), { target: { value: 'lots' } });
    await fireEvent.click(screen.getByTestId('limit-save'));
    expect(screen.getByTestId('limit-error').textContent).toContain('whole number');
    await fireEvent.input(screen.getByTestId('limit-input'), { target: { value: '10240' } });
    await fireEvent.click(screen.getByTestId('limit-save'));
    await waitFor(() => expect(backend.callsTo('setFdLimit')).toEqual([['ollama', 10240]]));
  });

  it('scales the sparkline to the recorded span and says which', async () => {
    const status = leakingStatus();
    const at = status.targets[0].sample!.at;
    status.targets[0].history = [[at - 10 * 60_000, 9000], [at - 5 * 60_000, 9200], [at, 9412]];
    await show(status);
    const spark = within(row('copilot')).getByTestId('sparkline');
    expect(spark.dataset.span).toBe('600');
    // 9,412 of 10,240 over a drawn range of about 8,100 to 10,300: the limit is in view.
    expect(spark.getAttribute('aria-label')).toBe('descriptors over the last 10 min, limit 10240 marked');
    // 96 of 256, drawn from about 80 to 110: the limit is not.
    expect(within(row('ollama')).getByTestId('sparkline').getAttribute('aria-label')).toBe('descriptors over the last hour');
  });

  it('shows what keeps Leakwatch itself from working', async () => {
    const status = leakingStatus();
    status.problems = [{ what: 'history', message: 'running without history: read-only disk', fix: 'make it writable' }];
    await show(status);
    const banner = screen.getByTestId('problem');
    expect(banner.textContent).toContain('running without history');
    expect(banner.textContent).toContain('make it writable');
  });

  it('restarts only after confirming the plan', async () => {
    const text = 'Restart copilot (launchd gui/501/dev.copilot):\n  SIGTERM 4821 copilot\n  grace 3 s, then SIGKILL';
    const { backend } = await show(leakingStatus(), { restartPlan: { text, processes: [], no_health_check: false } });
    await fireEvent.click(within(row('copilot')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('restart-button'));
    const dialog = await screen.findByRole('dialog');
    expect(within(dialog).getByTestId('plan-text').textContent).toBe(text);
    expect(backend.callsTo('planRestart')).toEqual([['copilot']]);
    expect(backend.callsTo('restartTarget')).toEqual([]);
    // Cancel has the focus, and Return does nothing until the user moves.
    expect(document.activeElement).toBe(screen.getByTestId('cancel-button'));
    expect(within(dialog).getByTestId('plan-summary').textContent).toContain('Stop copilot --headless');
    expect(await fireEvent.keyDown(screen.getByTestId('cancel-button'), { key: 'Enter' })).toBe(false);
    expect(await fireEvent.keyDown(screen.getByTestId('confirm-button'), { key: 'Enter' })).toBe(false);
    expect(screen.queryByRole('dialog')).not.toBeNull();
    expect(backend.callsTo('restartTarget')).toEqual([]);

    // Escape cancels without restarting.
    await fireEvent.keyDown(dialog, { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(backend.callsTo('restartTarget')).toEqual([]);

    await fireEvent.click(screen.getByTestId('restart-button'));
    await fireEvent.click(await screen.findByTestId('confirm-button'));
    await waitFor(() => expect(backend.callsTo('restartTarget')).toEqual([['copilot']]));
    expect(await screen.findByText(/Restarted \(command\) · new pid 9999/)).toBeTruthy();
  });

  it('saves a snapshot', async () => {
    const { backend } = await show(leakingStatus());
    await fireEvent.click(within(row('copilot')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('snapshot-button'));
    await waitFor(() => expect(backend.callsTo('saveSnapshot')).toEqual([['copilot']]));
  });

  it('marks a baseline and says how to read it', async () => {
    const { backend } = await show(leakingStatus());
    await fireEvent.click(within(row('copilot')).getAllByRole('button')[0]);
    await fireEvent.click(screen.getByTestId('mark-baseline-button'));
    await waitFor(() => expect(backend.callsTo('markBaseline')).toEqual([['copilot']]));
    expect(await screen.findByText(/Baseline marked .*leakwatch explain copilot/)).toBeTruthy();
  });

  it('renders untrusted names, argv and messages as text', async () => {
    const evil = '<img src=x onerror=alert(1)>';
    const s = leakingStatus();
    s.targets[0].name = evil;
    s.targets[0].target = evil;
    s.targets[0].process!.argv = [evil, '--x'];
    s.recent_events[0].subject = { type: 'target', name: evil, instance: null };
    s.recent_events[0].message = evil;
    s.config.error = evil;
    s.orphans = orphanStatus().orphans;
    s.orphans[0].label = evil;
    await show(s);
    expect(screen.getAllByTestId('orphan-row')[0].textContent).toContain(evil);
    const r = row(evil);
    expect(r.textContent).toContain(evil);
    expect(document.querySelector('img')).toBeNull();
    await fireEvent.click(within(r).getAllByRole('button')[0]);
    await screen.findAllByText(evil);
    expect(document.querySelector('img')).toBeNull();
    expect(screen.getByTestId('config-error').textContent).toContain(evil);
  });

  it('renders a real status from the CLI', async () => {
    await show(realStatus);
    expect(screen.getAllByTestId('target-row')).toHaveLength(realStatus.targets.length);
    expect(screen.getAllByTestId('orphan-row')).toHaveLength(realStatus.orphans.length);
  });
});

describe('keyboard', () => {
  it('Esc closes the popover, Ctrl+, opens Settings, Ctrl+Q and Quit quit, arrows move between rows', async () => {
    const { backend } = await show(leakingStatus());
    const summaries = screen.getAllByTestId('target-summary');
    summaries[0].focus();
    await fireEvent.keyDown(summaries[0], { key: 'ArrowDown' });
    expect(document.activeElement).toBe(summaries[1]);
    await fireEvent.keyDown(summaries[1], { key: 'ArrowUp' });
    expect(document.activeElement).toBe(summaries[0]);

    await fireEvent.keyDown(window, { key: 'Escape' });
    expect(backend.callsTo('closePopover')).toHaveLength(1);
    await fireEvent.keyDown(window, { key: 'q', ctrlKey: true });
    await fireEvent.click(screen.getByTestId('quit-button'));
    expect(backend.callsTo('quit')).toHaveLength(2);
    await fireEvent.keyDown(window, { key: ',', ctrlKey: true });
    expect(screen.getByTestId('settings-button').getAttribute('aria-pressed')).toBe('true');
  });

  it('Esc in a dialog closes the dialog, not the popover', async () => {
    const text = 'Restart copilot:\n  SIGTERM 4821 copilot';
    const { backend } = await show(leakingStatus(), { restartPlan: { text, processes: [], no_health_check: false } });
    await fireEvent.click(within(row('copilot')).getByTestId('row-restart-button'));
    const dialog = await screen.findByRole('dialog');
    await fireEvent.keyDown(dialog, { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(backend.callsTo('closePopover')).toHaveLength(0);
  });

  // issue 12/13: the warning came from parsing the plan's words (a "then start:"
  // line without "and wait up to"); it now follows the typed ActionPlan flag.
  it('warns about a missing health check from the plan flag, not its text', async () => {
    const text = 'Restart copilot:\n  SIGTERM 4821 copilot\nthen start: copilot --headless';
    await show(leakingStatus(), { restartPlan: { text, processes: [], no_health_check: false } });
    await fireEvent.click(within(row('copilot')).getByTestId('row-restart-button'));
    const quiet = await screen.findByRole('dialog');
    expect(within(quiet).queryByTestId('plan-warning')).toBeNull();
    cleanup();

    await show(leakingStatus(), { restartPlan: { text: 'Restart copilot', processes: [], no_health_check: true } });
    await fireEvent.click(within(row('copilot')).getByTestId('row-restart-button'));
    const warned = await screen.findByRole('dialog');
    expect(within(warned).getByTestId('plan-warning').textContent).toContain('No health check');
  });
});

describe('updates', () => {
  it('follows the status event and never polls', async () => {
    const { backend } = await show(leakingStatus());
    const next = leakingStatus();
    next.at += 2000;
    next.tick += 1;
    next.targets[0].sample!.total = 9500;
    next.own.cpu_seconds! += 0.02;
    backend.emitStatus(next);
    await waitFor(() => expect(within(row('copilot')).getByTestId('target-fds').textContent).toBe('9500/10\u202f240'));
    expect(screen.getByText(/CPU 1\.0%/)).toBeTruthy();
    expect(backend.callsTo('getStatus')).toHaveLength(1);
  });

  // Issue 13: the app sent a tick's status and its events from two tasks; when
  // the status came first, the row listed the tick's events from it and again
  // as they arrived.
  it('lists an event once when its status arrived before it', async () => {
    const { backend } = await show(leakingStatus());
    const button = within(row('copilot')).getAllByRole('button')[0];
    await fireEvent.keyDown(button, { key: 'Enter' });
    const next = leakingStatus();
    next.at += 2000;
    next.tick += 1;
    const raised = { ...next.recent_events[0], at: next.at, message: 'copilot: 9500 descriptors' };
    next.recent_events.push(raised);
    backend.emitStatus(next);
    backend.emitEvent(raised);
    const listed = () =>
      [...within(row('copilot')).getByLabelText('recent events').querySelectorAll('li')].map((li) => li.textContent ?? '');
    await waitFor(() => expect(listed().some((t) => t.includes('9500 descriptors'))).toBe(true));
    expect(listed().filter((t) => t.includes('9500 descriptors'))).toHaveLength(1);
    // In the engine's order too: the event first, then its status.
    const later = leakingStatus();
    later.at += 4000;
    later.tick += 2;
    const again = { ...raised, at: later.at, message: 'copilot: 9600 descriptors' };
    later.recent_events.push(raised, again);
    backend.emitEvent(again);
    backend.emitStatus(later);
    await waitFor(() => expect(listed().filter((t) => t.includes('9600 descriptors'))).toHaveLength(1));
    expect(listed().filter((t) => t.includes('9500 descriptors'))).toHaveLength(1);
  });

  it('measures its own CPU over a second, not between two statuses milliseconds apart', async () => {
    const { backend } = await show(leakingStatus());
    // A rescan right after an action: 40 ms of CPU (four clock ticks) 10 ms later
    // once read as 400 %.
    const soon = leakingStatus();
    soon.at += 10;
    soon.tick += 1;
    soon.own.cpu_seconds! += 0.04;
    soon.targets[0].sample!.total = 9400;
    backend.emitStatus(soon);
    await waitFor(() => expect(within(row('copilot')).getByTestId('target-fds').textContent).toBe('9400/10\u202f240'));
    expect(screen.queryByText(/CPU 400/)).toBeNull();
    const later = leakingStatus();
    later.at += 2000;
    later.tick += 2;
    later.own.cpu_seconds! += 0.06;
    backend.emitStatus(later);
    await waitFor(() => expect(screen.getByText(/CPU 3\.0%/)).toBeTruthy());
  });
});

describe('banners', () => {
  it('shows a config error', async () => {
    await show(configErrorStatus());
    expect(screen.getByTestId('config-error').textContent).toContain('line 14');
  });

  it('shows paused alerts and resumes', async () => {
    const { backend } = await show(pausedStatus());
    const banner = screen.getByTestId('paused-banner');
    // The fixture's clock is fixed and the test's is not: a weekday shows once they differ in day.
    expect(banner.textContent).toMatch(/Alerts paused until (\w{3} )?\d\d:\d\d/);
    await fireEvent.click(within(banner).getByRole('button', { name: 'Resume' }));
    expect(backend.callsTo('pauseAlerts')).toEqual([[null]]);
    await waitFor(() => expect(screen.queryByTestId('paused-banner')).toBeNull());
  });
});

describe('orphans', () => {
  it('lists trees and cleans up the selected roots after the dry run', async () => {
    const { backend } = await show(orphanStatus());
    const rows = screen.getAllByTestId('orphan-row');
    expect(rows.map((r) => r.dataset.rootPid)).toEqual(['51234', '48800', '60321']);
    expect(rows[0].textContent).toContain('uvx mcp-server-git (uv → python)');
    expect(rows[0].textContent).toContain('80 MiB');
    expect(rows[0].textContent).toContain('up 5 h 12 min');
    expect(rows[0].textContent).toContain('idle 4 h 50 min');
    expect(rows[0].textContent).toContain('parent claude died');

    const cleanupButton = screen.getByTestId('cleanup-button') as HTMLButtonElement;
    expect(cleanupButton.disabled).toBe(true);
    await fireEvent.click(within(rows[1]).getByRole('checkbox'));
    await fireEvent.click(cleanupButton);
    const dialog = await screen.findByRole('dialog');
    expect(backend.callsTo('planCleanup')).toEqual([[[{ pid: 48800, start_time: 1_795_540_000_000_000 }]]]);
    expect(within(dialog).getByTestId('plan-text').textContent).toContain('48800  python3 -i notebook_repl.py');
    expect(backend.callsTo('cleanOrphans')).toEqual([]);
    await fireEvent.click(within(dialog).getByTestId('confirm-button'));
    await waitFor(() => expect(backend.callsTo('cleanOrphans')).toEqual([[[{ pid: 48800, start_time: 1_795_540_000_000_000 }]]]));
    const outcomes = await screen.findAllByTestId('outcome-row');
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0].textContent).toContain('stopped on SIGTERM');
  });

  it('selects all and shows every outcome with reasons', async () => {
    const { backend } = await show(orphanStatus(), {
      cleanupReport: (roots) => ({
        elapsed_seconds: 3.4,
        processes: [
          { pid: roots[0].pid, start_time: roots[0].start_time, name: 'uv', outcome: 'killed' },
          { pid: 51240, start_time: 1, name: 'python3', outcome: 'survived', reason: { code: 'uninterruptible' } },
          { pid: 51241, start_time: 1, name: 'sshd', outcome: 'protected', reason: { code: 'protect_pattern', pattern: '^sshd$' } },
        ],
      }),
    });
    const all = screen.getByTestId('orphans-select-all') as HTMLInputElement;
    await fireEvent.click(all);
    expect(all.checked).toBe(true);
    await fireEvent.click(screen.getByTestId('cleanup-button'));
    await fireEvent.click(await screen.findByTestId('confirm-button'));
    await waitFor(() => expect(backend.callsTo('cleanOrphans')).toHaveLength(1));
    expect((backend.callsTo('cleanOrphans')[0][0] as unknown[]).length).toBe(3);
    const outcomes = await screen.findAllByTestId('outcome-row');
    expect(outcomes.map((o) => o.textContent?.replace(/\s+/g, ' ').trim())).toEqual([
      'uv 51234 killed (SIGKILL)',
      'python3 51240 survived: stuck in uninterruptible I/O',
      'sshd 51241 protected: left alone: on the protect list (^sshd$)',
    ]);
  });

  it('flags a tree holding a watched target and leaves it out of select-all', async () => {
    const status = orphanStatus();
    status.orphans[0].watched = ['agent-server'];
    const { backend } = await show(status);
    const holding = screen.getAllByTestId('orphan-row')[0];
    expect(within(holding).getByTestId('orphan-holds-watched').textContent).toContain('contains agent-server');
    const all = screen.getByTestId('orphans-select-all') as HTMLInputElement;
    await fireEvent.click(all);
    expect(all.checked).toBe(true);
    expect((within(holding).getByTestId('orphan-select') as HTMLInputElement).checked).toBe(false);
    await fireEvent.click(screen.getByTestId('cleanup-button'));
    await screen.findByRole('dialog');
    expect(document.activeElement).toBe(screen.getByTestId('cancel-button'));
    const roots = backend.callsTo('planCleanup')[0][0] as { pid: number }[];
    expect(roots.map((r) => r.pid)).not.toContain(status.orphans[0].root.pid);
    expect(roots).toHaveLength(status.orphans.length - 1);
  });

  // issue 12: two trees of the same command read the same; each now says what differs.
  it('tells two trees of the same command apart', async () => {
    const status = orphanStatus();
    const twin = structuredClone(status.orphans[0]);
    twin.root = { pid: 51300, start_time: 2 };
    twin.members[0] = { ...twin.members[0], pid: 51300, start_time: 2 };
    twin.original_parent = undefined;
    status.orphans.push(twin);
    await show(status);
    const rows = screen.getAllByTestId('orphan-row');
    const first = rows.find((r) => r.dataset.rootPid === String(status.orphans[0].root.pid))!;
    const second = rows.find((r) => r.dataset.rootPid === '51300')!;
    const parent = status.orphans[0].original_parent!;
    expect(within(first).getByTestId('orphan-twin').textContent).toBe(
      `pid ${status.orphans[0].root.pid}, started by ${parent.name} (pid ${parent.pid})`,
    );
    expect(within(second).getByTestId('orphan-twin').textContent).toBe('pid 51300');
    expect(within(rows.find((r) => r.dataset.rootPid === '48800')!).queryByTestId('orphan-twin')).toBeNull();
  });

  it('clicking the section heading selects nothing', async () => {
    await show(orphanStatus());
    await fireEvent.click(screen.getByText('Orphans'));
    expect((screen.getByTestId('orphans-select-all') as HTMLInputElement).checked).toBe(false);
  });

  it('cancel sends nothing', async () => {
    const { backend } = await show(orphanStatus());
    await fireEvent.click(screen.getByTestId('orphans-select-all'));
    await fireEvent.click(screen.getByTestId('cleanup-button'));
    await fireEvent.click(await screen.findByTestId('cancel-button'));
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(backend.callsTo('cleanOrphans')).toEqual([]);
  });
});

describe('settings', () => {
  it('saves the general settings and shows a refused value inline', async () => {
    const { backend } = await show(leakingStatus(), {
      settingsError: { kind: 'invalid_settings', message: 'the poll interval must be at least 1 second', field: null },
    });
    await fireEvent.click(screen.getByTestId('settings-button'));
    const interval = await screen.findByLabelText('interval in seconds');
    await fireEvent.input(interval, { target: { value: '0' } });
    await fireEvent.click(screen.getByTestId('settings-save'));
    const err = await screen.findByTestId('settings-error');
    expect(err.textContent).toContain('at least 1 second');
    const saved = backend.callsTo('saveSettings')[0][0] as { interval_seconds: number };
    expect(saved.interval_seconds).toBe(0);
  });

  it('adds a target by hand; a refused value shows next to its field, in words', async () => {
    const { backend } = await show(leakingStatus(), {
      targetError: { kind: 'invalid_settings', message: 'expected a TCP port between 1 and 65535, found "abc"', field: 'locator' },
    });
    await fireEvent.click(screen.getByTestId('settings-button'));
    await fireEvent.click(await screen.findByTestId('add-target'));
    await fireEvent.input(screen.getByTestId('target-name'), { target: { value: 'web' } });
    await fireEvent.input(screen.getByTestId('target-locator'), { target: { value: 'abc' } });
    await fireEvent.change(screen.getByTestId('target-restart'), { target: { value: 'command' } });
    await fireEvent.input(await screen.findByTestId('target-restart-command'), { target: { value: 'python3 server.py' } });
    await fireEvent.click(screen.getByTestId('target-save'));
    const err = await screen.findByTestId('field-error-locator');
    expect(err.textContent).toContain('TCP port');
    const input = screen.getByTestId('target-locator');
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(input.getAttribute('aria-describedby')).toBe(err.id);
    expect(screen.queryByTestId('field-error-name')).toBeNull();
    const [previous, form] = backend.callsTo('saveTarget')[0] as [string | null, Record<string, string>];
    expect(previous).toBeNull();
    expect(form).toMatchObject({ name: 'web', locator: 'port', locator_value: 'abc', restart: 'command', restart_command: 'python3 server.py' });

    // Fixed, it saves and the list shows it.
    backend.options.targetError = null;
    await fireEvent.input(screen.getByTestId('target-locator'), { target: { value: '8787' } });
    await fireEvent.click(screen.getByTestId('target-save'));
    const list = await screen.findByTestId('settings-targets');
    expect(list.textContent).toContain('web');
    expect(list.textContent).toContain('port 8787');
  });

  it('edits and removes a target', async () => {
    const { backend } = await show(leakingStatus());
    await fireEvent.click(screen.getByTestId('settings-button'));
    await fireEvent.click((await screen.findAllByTestId('edit-target'))[0]);
    const limit = screen.getByTestId('target-fd-limit');
    await fireEvent.input(limit, { target: { value: '10240' } });
    await fireEvent.input(screen.getByTestId('target-fds-warn'), { target: { value: '500' } });
    await fireEvent.click(screen.getByTestId('target-save'));
    await screen.findByTestId('settings-targets');
    const [previous, form] = backend.callsTo('saveTarget')[0] as [string, Record<string, string>];
    expect(previous).toBe('copilot');
    expect(form).toMatchObject({ name: 'copilot', fd_limit: '10240', fds_warn: '500' });
    await fireEvent.click(screen.getAllByTestId('edit-target')[0]);
    await fireEvent.click(screen.getByTestId('target-remove'));
    await screen.findByTestId('settings-targets');
    expect(backend.callsTo('removeTarget')).toEqual([['copilot']]);
  });

  it('warns before discarding unsaved edits: Done, Esc and leaving for another view', async () => {
    await show(leakingStatus());
    await fireEvent.click(screen.getByTestId('settings-button'));
    const interval = await screen.findByLabelText('interval in seconds');
    await fireEvent.input(interval, { target: { value: '9' } });
    // Done asks; keep editing keeps the edit.
    await fireEvent.click(screen.getByTestId('settings-done'));
    expect(await screen.findByTestId('discard-confirm')).toBeTruthy();
    await fireEvent.click(screen.getByTestId('keep-editing'));
    expect(screen.queryByTestId('discard-confirm')).toBeNull();
    expect((screen.getByLabelText('interval in seconds') as HTMLInputElement).value).toBe('9');
    // Esc asks too.
    await fireEvent.keyDown(screen.getByLabelText('interval in seconds'), { key: 'Escape' });
    expect(await screen.findByTestId('discard-confirm')).toBeTruthy();
    await fireEvent.click(screen.getByTestId('keep-editing'));
    // Switching away with the gear button asks, and Discard leaves.
    await fireEvent.click(screen.getByTestId('settings-button'));
    expect(await screen.findByTestId('discard-confirm')).toBeTruthy();
    expect(screen.getByTestId('settings-done')).toBeTruthy();
    await fireEvent.click(screen.getByTestId('discard-changes'));
    await waitFor(() => expect(screen.queryByTestId('settings-done')).toBeNull());
    // Opened again: the saved value, and no question on leaving.
    await fireEvent.click(screen.getByTestId('settings-button'));
    expect(((await screen.findByLabelText('interval in seconds')) as HTMLInputElement).value).toBe('2');
    await fireEvent.click(screen.getByTestId('settings-done'));
    await waitFor(() => expect(screen.queryByTestId('settings-done')).toBeNull());
    expect(screen.queryByTestId('discard-confirm')).toBeNull();
  });

  it('keeps an unsaved target edit across the popover closing', async () => {
    const first = await show(leakingStatus());
    await fireEvent.click(screen.getByTestId('settings-button'));
    await fireEvent.click(await screen.findByTestId('add-target'));
    await fireEvent.input(screen.getByTestId('target-name'), { target: { value: 'half-done' } });
    // The popover loses focus: its webview is destroyed.
    first.view.unmount();
    await show(leakingStatus());
    await fireEvent.click(screen.getByTestId('settings-button'));
    expect(await screen.findByTestId('draft-restored')).toBeTruthy();
    expect((screen.getByTestId('target-name') as HTMLInputElement).value).toBe('half-done');
    await fireEvent.click(screen.getByTestId('target-cancel'));
    await fireEvent.click(await screen.findByTestId('discard-changes'));
    expect(await screen.findByTestId('settings-targets')).toBeTruthy();
    localStorage.clear();
  });

  it('toggles launch at login, pauses alerts, reveals the config', async () => {
    const { backend } = await show(leakingStatus());
    await fireEvent.click(screen.getByTestId('settings-button'));
    const login = (await screen.findByTestId('launch-at-login')) as HTMLInputElement;
    await fireEvent.click(login);
    expect(backend.callsTo('setLaunchAtLogin')).toEqual([[false]]);
    await fireEvent.click(screen.getByTestId('pause-alerts'));
    expect(backend.callsTo('pauseAlerts')).toEqual([[60]]);
    expect(await screen.findByTestId('paused-banner')).toBeTruthy();
    await fireEvent.click(screen.getByRole('button', { name: 'Reveal' }));
    expect(backend.callsTo('revealConfig')).toHaveLength(1);
  });
});

describe('popover height', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('asks for its content\'s height: the fixed parts plus all of the list', async () => {
    // jsdom has no layout: a 580 px window whose list area is 500 px tall, with
    // 200 px of rows in it, wants 280 px.
    const sizes = (el: HTMLElement) =>
      el.tagName === 'MAIN' ? { offset: 580, client: 580 }
        : el.classList.contains('scroll') ? { offset: 500, client: 500 }
          : el.dataset.testid === 'popover-content' ? { offset: 200, client: 200 }
            : { offset: 0, client: 0 };
    vi.spyOn(HTMLElement.prototype, 'offsetHeight', 'get').mockImplementation(function (this: HTMLElement) {
      return sizes(this).offset;
    });
    vi.spyOn(HTMLElement.prototype, 'clientHeight', 'get').mockImplementation(function (this: HTMLElement) {
      return sizes(this).client;
    });
    const observed: Element[] = [];
    vi.stubGlobal('ResizeObserver', class {
      constructor(private readonly callback: () => void) {}
      observe(el: Element) {
        observed.push(el);
        this.callback();
      }
      disconnect() {}
    });
    const { backend } = await show(leakingStatus());
    await waitFor(() => expect(backend.callsTo('fitPopover')).toEqual([[280]]));
    // It follows the list and the banners (which resize the list's area).
    expect(observed.map((el) => (el as HTMLElement).dataset.testid ?? el.className)).toEqual([
      'popover-content', expect.stringContaining('scroll'),
    ]);
    vi.restoreAllMocks();
  });
});
