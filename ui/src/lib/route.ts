// Where the popover should open, from the tray or a notification: the Rust side
// (src-tauri/src/popover.rs, `View::route`) puts it in the URL's hash when it
// creates the webview, and sends it as the `leakwatch-navigate` event when the
// popover is already open. Both are untrusted text; anything unrecognised is the
// overview, never an error.
import type { TargetStatus } from '../bindings/TargetStatus';
import type { View } from '../bindings/View';

export type { View };

export const OVERVIEW: View = { view: 'overview' };

/** What names a row: its target and instance, as the engine types them (its
 * display `name` is for people, never parsed or matched). */
export type RowId = Pick<TargetStatus, 'target' | 'instance'>;

function decode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** A pid, as the engine's u32. */
function isPid(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

function parsePid(s: string | undefined): number | null {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return null;
  const n = Number(s);
  return isPid(n) ? n : null;
}

/** `#/target/web%20ui` → `{view: 'target', target: 'web ui', instance: null}`;
 * `#/target/web/7` is web's row of pid 7; `#/process/9` is the row of a top
 * holder (automatic mode), pid 9. */
export function parseRoute(hash: string): View {
  const path = hash.replace(/^#/, '').replace(/^\//, '');
  const slash = path.indexOf('/');
  const head = slash < 0 ? path : path.slice(0, slash);
  const rest = slash < 0 ? '' : path.slice(slash + 1);
  switch (head) {
    case 'orphans':
    case 'cleanup':
    case 'settings':
      return rest === '' ? { view: head } : OVERVIEW;
    case 'target': {
      const [name, pid, ...more] = rest.split('/');
      const target = decode(name);
      if (!target || more.length > 0) return OVERVIEW;
      if (pid === undefined) return { view: 'target', target, instance: null };
      const instance = parsePid(pid);
      return instance === null ? OVERVIEW : { view: 'target', target, instance };
    }
    case 'process': {
      const instance = parsePid(rest);
      return instance === null ? OVERVIEW : { view: 'target', target: null, instance };
    }
    case 'restart': {
      const target = decode(rest);
      return target ? { view: head, target } : OVERVIEW;
    }
    default:
      return OVERVIEW;
  }
}

/** Checks a `leakwatch-navigate` payload; `null` when it is not a View. */
export function asView(payload: unknown): View | null {
  if (typeof payload !== 'object' || payload === null) return null;
  const p = payload as Record<string, unknown>;
  switch (p.view) {
    case 'overview':
    case 'orphans':
    case 'cleanup':
    case 'settings':
      return { view: p.view };
    case 'target': {
      const target = p.target === null || (typeof p.target === 'string' && p.target !== '') ? p.target : undefined;
      const instance = p.instance === null || isPid(p.instance) ? p.instance : undefined;
      if (target === undefined || instance === undefined || (target === null && instance === null)) return null;
      return { view: 'target', target, instance };
    }
    case 'restart':
      return typeof p.target === 'string' && p.target !== '' ? { view: p.view, target: p.target } : null;
    default:
      return null;
  }
}

const sameRow = (a: RowId, b: RowId) => a.target === b.target && a.instance === b.instance;

/** The row among `rows` that `view` asks for, by target and instance: a
 * target's row exactly (or, asked for a target's only row, its first while it
 * matches several processes); a restart, its target's first row (one
 * confirmation, however many processes the target matched). */
export function requestedRow<R extends RowId>(view: View, rows: readonly R[]): R | undefined {
  switch (view.view) {
    case 'target': {
      const exact = rows.find((r) => sameRow(r, view));
      if (exact || view.target === null || view.instance !== null) return exact;
      return rows.find((r) => r.target === view.target);
    }
    case 'restart':
      return rows.find((r) => r.target === view.target);
    default:
      return undefined;
  }
}

/** Whether `view` asks for `row` (see [`requestedRow`]). */
export function requestsRow(view: View, row: RowId, rows: readonly RowId[]): boolean {
  const wanted = requestedRow(view, rows);
  return wanted !== undefined && sameRow(wanted, row);
}
