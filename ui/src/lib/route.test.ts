import { describe, expect, it } from 'vitest';
import { asView, parseRoute, requestedRow } from './route';

describe('parseRoute', () => {
  it('reads every view the app opens', () => {
    expect(parseRoute('#/')).toEqual({ view: 'overview' });
    expect(parseRoute('')).toEqual({ view: 'overview' });
    expect(parseRoute('#/target/copilot')).toEqual({ view: 'target', target: 'copilot', instance: null });
    expect(parseRoute('#/target/worker/124')).toEqual({ view: 'target', target: 'worker', instance: 124 });
    expect(parseRoute('#/process/9')).toEqual({ view: 'target', target: null, instance: 9 });
    expect(parseRoute('#/restart/leaky')).toEqual({ view: 'restart', target: 'leaky' });
    expect(parseRoute('#/orphans')).toEqual({ view: 'orphans' });
    expect(parseRoute('#/settings')).toEqual({ view: 'settings' });
    expect(parseRoute('#/cleanup')).toEqual({ view: 'cleanup' });
  });

  it('decodes names as popover.rs encodes them', () => {
    expect(parseRoute('#/target/web%20ui%2F1')).toEqual({ view: 'target', target: 'web ui/1', instance: null });
    expect(parseRoute('#/target/web%5B7%5D/8')).toEqual({ view: 'target', target: 'web[7]', instance: 8 });
    expect(parseRoute('#/restart/%C3%A9t%C3%A9')).toEqual({ view: 'restart', target: 'été' });
    expect(parseRoute('#/target/%3Cimg%20src%3Dx%3E')).toEqual({ view: 'target', target: '<img src=x>', instance: null });
  });

  it('treats junk as the overview', () => {
    for (const junk of ['#/target/', '#/target', '#/restart/%E0%A4%A', '#/nope/x', '#/orphans/extra', '#//', '#settings/x', 'garbage',
      '#/target/web/x', '#/target/web/7/8', '#/target/web/-1', '#/target/web/99999999999', '#/process/', '#/process/web', '#/process/7/8']) {
      expect(parseRoute(junk), junk).toEqual({ view: 'overview' });
    }
  });
});

describe('asView', () => {
  it('accepts the event payloads popover.rs sends', () => {
    expect(asView({ view: 'target', target: 'a b', instance: null })).toEqual({ view: 'target', target: 'a b', instance: null });
    expect(asView({ view: 'target', target: null, instance: 9 })).toEqual({ view: 'target', target: null, instance: 9 });
    expect(asView({ view: 'restart', target: 'a b' })).toEqual({ view: 'restart', target: 'a b' });
    expect(asView({ view: 'orphans' })).toEqual({ view: 'orphans' });
    expect(asView({ view: 'cleanup', target: 'x' })).toEqual({ view: 'cleanup' });
    expect(asView({ view: 'overview' })).toEqual({ view: 'overview' });
  });

  it('refuses anything else', () => {
    for (const junk of [null, 'orphans', 3, {}, { view: 'target' }, { view: 'restart', target: 7 }, { view: 'target', target: '', instance: null }, { view: 'x' },
      { view: 'target', target: null, instance: null }, { view: 'target', target: 'a', instance: 1.5 }, { view: 'target', target: 'a', instance: '7' }, { view: 'target', target: 'a' }]) {
      expect(asView(junk)).toBeNull();
    }
  });
});

// Issue 13: a notification's or the tray's row was a `name[pid]` label matched
// against row names; it is the row's target and instance.
describe('requestedRow', () => {
  const rows = [
    { target: 'worker', instance: 123 },
    { target: 'worker', instance: 124 },
    { target: 'web[7]', instance: null },
    { target: null, instance: 9 },
  ];

  it('finds a row by target and instance', () => {
    expect(requestedRow({ view: 'target', target: 'worker', instance: 124 }, rows)).toBe(rows[1]);
    expect(requestedRow({ view: 'target', target: 'web[7]', instance: null }, rows)).toBe(rows[2]);
    expect(requestedRow({ view: 'target', target: null, instance: 9 }, rows)).toBe(rows[3]);
    // A label is no row: `web` with pid 7 is not the target named `web[7]`.
    expect(requestedRow({ view: 'target', target: 'web', instance: 7 }, rows)).toBeUndefined();
    expect(requestedRow({ view: 'target', target: 'worker', instance: 125 }, rows)).toBeUndefined();
  });

  it('takes a target’s first row for its only row once it matches several, and for a restart', () => {
    expect(requestedRow({ view: 'target', target: 'worker', instance: null }, rows)).toBe(rows[0]);
    expect(requestedRow({ view: 'restart', target: 'worker' }, rows)).toBe(rows[0]);
    expect(requestedRow({ view: 'orphans' }, rows)).toBeUndefined();
  });
});
