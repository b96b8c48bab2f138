import { describe, expect, it } from 'vitest';
import { asView, parseRoute } from './route';

describe('parseRoute', () => {
  it('reads every view the app opens', () => {
    expect(parseRoute('#/')).toEqual({ view: 'overview' });
    expect(parseRoute('')).toEqual({ view: 'overview' });
    expect(parseRoute('#/target/copilot')).toEqual({ view: 'target', target: 'copilot' });
    expect(parseRoute('#/restart/leaky')).toEqual({ view: 'restart', target: 'leaky' });
    expect(parseRoute('#/orphans')).toEqual({ view: 'orphans' });
    expect(parseRoute('#/settings')).toEqual({ view: 'settings' });
    expect(parseRoute('#/cleanup')).toEqual({ view: 'cleanup' });
  });

  it('decodes names as popover.rs encodes them', () => {
    expect(parseRoute('#/target/web%20ui%2F1')).toEqual({ view: 'target', target: 'web ui/1' });
    expect(parseRoute('#/restart/%C3%A9t%C3%A9')).toEqual({ view: 'restart', target: 'été' });
    expect(parseRoute('#/target/%3Cimg%20src%3Dx%3E')).toEqual({ view: 'target', target: '<img src=x>' });
  });

  it('treats junk as the overview', () => {
    for (const junk of ['#/target/', '#/target', '#/restart/%E0%A4%A', '#/nope/x', '#/orphans/extra', '#//', '#settings/x', 'garbage']) {
      expect(parseRoute(junk), junk).toEqual({ view: 'overview' });
    }
  });
});

describe('asView', () => {
  it('accepts the event payloads popover.rs sends', () => {
    expect(asView({ view: 'target', target: 'a b' })).toEqual({ view: 'target', target: 'a b' });
    expect(asView({ view: 'orphans' })).toEqual({ view: 'orphans' });
    expect(asView({ view: 'cleanup', target: 'x' })).toEqual({ view: 'cleanup' });
    expect(asView({ view: 'overview' })).toEqual({ view: 'overview' });
  });

  it('refuses anything else', () => {
    for (const junk of [null, 'orphans', 3, {}, { view: 'target' }, { view: 'restart', target: 7 }, { view: 'target', target: '' }, { view: 'x' }]) {
      expect(asView(junk)).toBeNull();
    }
  });
});
