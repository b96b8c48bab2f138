// The popover's event list: the events of ticks whose status has not arrived
// yet, then the status's own recent events, each once.
import type { Event } from '../bindings/Event';

/** What makes two copies of an event the same event (engine events carry no
 * id): when it happened, what about, which kind and rule, and its text. */
export function eventKey(e: Event): string {
  const s = e.subject;
  const about = s.type === 'target' ? [s.type, s.name, s.instance] : s.type === 'process' ? [s.type, s.name, s.pid] : [s.type];
  return JSON.stringify([e.at, about, e.pid, e.kind, e.rule, e.message]);
}

/** Newest first: `live` (the events sent since the last status, newest
 * first), then the status's `recent` (oldest first, as the engine keeps them).
 * An event in both is shown once: the app sends a tick's events before its
 * status, but a status fetched at start may already hold events still on
 * their way (issue 13: a status that overtook its events showed them twice). */
export function mergeEvents(live: Event[], recent: Event[]): Event[] {
  const listed = new Set(recent.map(eventKey));
  return [...live.filter((e) => !listed.has(eventKey(e))), ...[...recent].reverse()];
}
