// Where the popover should open, from the tray or a notification: the Rust side
// (src-tauri/src/popover.rs, `View::route`) puts it in the URL's hash when it
// creates the webview, and sends it as the `leakwatch-navigate` event when the
// popover is already open. Both are untrusted text; anything unrecognised is the
// overview, never an error.
import type { View } from '../bindings/View';

export type { View };

export const OVERVIEW: View = { view: 'overview' };

function decode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

/** `#/target/web%20ui` → `{view: 'target', target: 'web ui'}`. */
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
    case 'target':
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
    case 'target':
    case 'restart':
      return typeof p.target === 'string' && p.target !== '' ? { view: p.view, target: p.target } : null;
    default:
      return null;
  }
}
