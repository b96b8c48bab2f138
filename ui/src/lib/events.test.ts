import { describe, expect, it } from 'vitest';
import type { Event } from '../bindings/Event';
import { eventKey, mergeEvents } from './events';

function event(at: number, message: string, instance: number | null = null): Event {
  return {
    at,
    subject: { type: 'target', name: 'web', instance },
    pid: null,
    kind: 'raised',
    rule: 'fds',
    severity: 'warning',
    value: 1,
    message,
    notified: false,
  };
}

describe('mergeEvents', () => {
  it('lists the newest first: live ones, then the status’s', () => {
    const merged = mergeEvents([event(3, 'c')], [event(1, 'a'), event(2, 'b')]);
    expect(merged.map((e) => e.message)).toEqual(['c', 'b', 'a']);
  });

  // Issue 13: a status that reached the popover before its tick's events
  // listed them, and the events arriving after were listed again.
  it('lists an event once when the status already holds it', () => {
    const merged = mergeEvents([event(2, 'b')], [event(1, 'a'), event(2, 'b')]);
    expect(merged.map((e) => e.message)).toEqual(['b', 'a']);
  });

  it('keeps events that differ only in subject or time', () => {
    expect(eventKey(event(2, 'b', 7))).not.toBe(eventKey(event(2, 'b', 8)));
    expect(eventKey(event(2, 'b'))).not.toBe(eventKey(event(3, 'b')));
    const merged = mergeEvents([event(2, 'b', 7)], [event(2, 'b', 8)]);
    expect(merged).toHaveLength(2);
  });
});
