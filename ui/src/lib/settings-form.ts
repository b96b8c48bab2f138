// The Settings screen's logic apart from its markup, so it is tested without a
// DOM: what counts as an unsaved edit, which field a refusal belongs to, and
// the draft kept across the popover's closing (it destroys its webview on blur,
// so an edit in progress would otherwise be lost without a word).
import type { FormField } from '../bindings/FormField';
import type { Settings } from '../bindings/Settings';
import type { TargetForm } from '../bindings/TargetForm';

/** The general part of Settings (the targets are saved one at a time). */
export interface General {
  launch_at_login: boolean;
  interval_seconds: number;
  notifications: boolean;
}

/** What is being edited: the general settings and, when open, one target. */
export interface Draft {
  general: General;
  /** `previous` is the target's saved name; `null` for a new target. */
  editor: { previous: string | null; form: TargetForm } | null;
}

export function general(s: Settings): General {
  return { launch_at_login: s.launch_at_login, interval_seconds: s.interval_seconds, notifications: s.notifications };
}

export function blankTarget(): TargetForm {
  return {
    name: '',
    locator: 'port',
    locator_value: '',
    fd_limit: '',
    fds_warn: '',
    fds_critical: '',
    restart: 'none',
    restart_command: '',
    restart_cwd: '',
    restart_health: '',
    restart_service: '',
  };
}

const trimmed = (form: TargetForm): TargetForm =>
  Object.fromEntries(Object.entries(form).map(([k, v]) => [k, typeof v === 'string' ? v.trim() : v])) as TargetForm;

function sameTarget(a: TargetForm, b: TargetForm): boolean {
  const x = trimmed(a);
  const y = trimmed(b);
  return (Object.keys(x) as (keyof TargetForm)[]).every((k) => x[k] === y[k]);
}

/** The saved form of the target being edited (a blank one for a new target). */
export function savedTarget(saved: Settings, previous: string | null): TargetForm {
  return saved.targets.find((t) => t.name === previous) ?? blankTarget();
}

/** Whether `draft` holds edits that `saved` does not. */
export function isDirty(saved: Settings, draft: Draft): boolean {
  const g = general(saved);
  if (g.notifications !== draft.general.notifications) return true;
  if (Number(g.interval_seconds) !== Number(draft.general.interval_seconds)) return true;
  if (!draft.editor) return false;
  return !sameTarget(savedTarget(saved, draft.editor.previous), draft.editor.form);
}

/** A command's refusal: on one field of the target form, or about the whole. */
export function refusal(e: unknown): { field: FormField | null; message: string } {
  if (e && typeof e === 'object' && 'message' in e) {
    const { message, field } = e as { message: unknown; field?: unknown };
    return { field: typeof field === 'string' ? (field as FormField) : null, message: String(message) };
  }
  return { field: null, message: typeof e === 'string' ? e : String(e) };
}

const KEY = 'leakwatch.settings-draft';

/** Keeps an unsaved draft (or, with `null`, forgets it). */
export function keepDraft(storage: Storage | undefined, draft: Draft | null) {
  try {
    if (!storage) return;
    if (draft) storage.setItem(KEY, JSON.stringify(draft));
    else storage.removeItem(KEY);
  } catch {
    // Storage full or refused: the warning on leaving still applies.
  }
}

/** The draft left by a popover closed with unsaved edits, if it still differs from `saved`. */
export function restoreDraft(storage: Storage | undefined, saved: Settings): Draft | null {
  try {
    const text = storage?.getItem(KEY);
    if (!text) return null;
    const draft = JSON.parse(text) as Draft;
    if (!draft || typeof draft !== 'object' || !draft.general) return null;
    if (draft.editor && draft.editor.previous != null && !saved.targets.some((t) => t.name === draft.editor?.previous)) {
      draft.editor = null;
    }
    return isDirty(saved, draft) ? draft : null;
  } catch {
    return null;
  }
}

/** Words for each field, as the form labels them (for messages about a field). */
export const FIELD_LABELS: Record<FormField, string> = {
  name: 'Name',
  locator: 'Found by',
  fd_limit: 'Descriptor limit',
  fds_warn: 'Warn at',
  fds_critical: 'Critical at',
  restart: 'Restart',
  restart_command: 'Command',
  restart_cwd: 'Working directory',
  restart_health: 'Health check',
  restart_service: 'Service',
};
