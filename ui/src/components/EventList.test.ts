import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, render, screen } from '@testing-library/svelte';
import EventList, { isAboutRow } from './EventList.svelte';
import { NOW, events, target } from '../fixtures/status';
import type { Event } from '../bindings/Event';

afterEach(cleanup);

function event(subject: Event['subject'], notified: boolean, message = 'm'): Event {
  return { at: NOW, subject, pid: null, kind: 'raised', rule: 'fds', severity: 'warning', value: 1, message, notified };
}

describe('issue 13: events are typed facts', () => {
  it('matches an event to its row by subject, never by name text', () => {
    const web = { target: 'web', instance: null };
    const web7 = { target: 'web', instance: 7 };
    const holder = { target: null, instance: 7 };
    expect(isAboutRow(event(target('web'), false), web)).toBe(true);
    expect(isAboutRow(event(target('web'), false), web7)).toBe(false);
    expect(isAboutRow(event(target('web', 7), false), web7)).toBe(true);
    expect(isAboutRow(event(target('web', 7), false), holder)).toBe(false);
    expect(isAboutRow(event({ type: 'process', name: 'python3', pid: 7 }, false), holder)).toBe(true);
    expect(isAboutRow(event({ type: 'process', name: 'web', pid: 7 }, false), web7)).toBe(false);
    // A target whose name reads like another's instance is still itself.
    expect(isAboutRow(event(target('web[7]'), false), web7)).toBe(false);
    expect(isAboutRow(event({ type: 'orphans' }, false), web)).toBe(false);
    expect(isAboutRow(event({ type: 'leakwatch' }, false), web)).toBe(false);
  });

  it('says which events were notified from the field, and shows messages as sent', () => {
    const shown = events().reverse();
    render(EventList, { props: { events: shown, now: NOW } });
    const items = screen.getAllByTestId('event');
    expect(items).toHaveLength(shown.length);
    const notified = items.map((li) => li.querySelector('[data-testid="event-notified"]') !== null);
    expect(notified).toEqual(shown.map((e) => e.notified));
    expect(notified).toContain(false);
    expect(items[0].textContent).toContain('12 s ago');
  });

  it('does not read "not notified" out of a message', () => {
    const text = 'copilot: 12 kqueues (within cooldown: not notified)';
    render(EventList, { props: { events: [event(target('copilot'), true, text)], now: NOW } });
    const item = screen.getByTestId('event');
    expect(item.querySelector('[data-testid="event-notified"]')).not.toBeNull();
    expect(item.textContent).toContain(text);
  });
});
