import { describe, expect, it } from 'vitest';
import type { Settings } from '../bindings/Settings';
import { blankTarget, general, isDirty, keepDraft, refusal, restoreDraft, type Draft } from './settings-form';

function saved(): Settings {
  return {
    launch_at_login: false,
    interval_seconds: 2,
    notifications: true,
    config_path: '/home/me/.config/leakwatch/config.toml',
    targets: [{ ...blankTarget(), name: 'api', locator_value: '4321' }],
  };
}

class MemoryStorage {
  items = new Map<string, string>();
  get length() { return this.items.size; }
  clear() { this.items.clear(); }
  getItem(k: string) { return this.items.get(k) ?? null; }
  key(i: number) { return [...this.items.keys()][i] ?? null; }
  removeItem(k: string) { this.items.delete(k); }
  setItem(k: string, v: string) { this.items.set(k, v); }
}

describe('unsaved edits', () => {
  it('are none when the draft is what was saved, whitespace aside', () => {
    const s = saved();
    const draft: Draft = { general: general(s), editor: { previous: 'api', form: { ...s.targets[0], fds_warn: '  ' } } };
    expect(isDirty(s, draft)).toBe(false);
  });

  it('count a changed general value or target field, and any new target with content', () => {
    const s = saved();
    expect(isDirty(s, { general: { ...general(s), interval_seconds: 5 }, editor: null })).toBe(true);
    expect(isDirty(s, { general: general(s), editor: { previous: 'api', form: { ...s.targets[0], fd_limit: '4096' } } })).toBe(true);
    expect(isDirty(s, { general: general(s), editor: { previous: null, form: blankTarget() } })).toBe(false);
    expect(isDirty(s, { general: general(s), editor: { previous: null, form: { ...blankTarget(), name: 'web' } } })).toBe(true);
  });

  it('survive the popover closing as a draft, and a stale draft is dropped', () => {
    const storage = new MemoryStorage() as unknown as Storage;
    const s = saved();
    const draft: Draft = { general: general(s), editor: { previous: 'api', form: { ...s.targets[0], fds_warn: '500' } } };
    keepDraft(storage, draft);
    expect(restoreDraft(storage, s)).toEqual(draft);
    // Saved meanwhile (the same values): nothing to restore.
    const now = { ...s, targets: [{ ...s.targets[0], fds_warn: '500' }] };
    expect(restoreDraft(storage, now)).toBeNull();
    keepDraft(storage, null);
    expect(restoreDraft(storage, s)).toBeNull();
    storage.setItem('leakwatch.settings-draft', '{not json');
    expect(restoreDraft(storage, s)).toBeNull();
  });
});

describe('refusals', () => {
  it('name the field the app says, or none', () => {
    expect(refusal({ kind: 'invalid_settings', message: 'expected a TCP port', field: 'locator' })).toEqual({
      field: 'locator', message: 'expected a TCP port',
    });
    expect(refusal({ kind: 'io', message: 'cannot write', field: null })).toEqual({ field: null, message: 'cannot write' });
    expect(refusal('boom')).toEqual({ field: null, message: 'boom' });
  });
});
