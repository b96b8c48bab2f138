// Formatting helpers: numbers as a person reads them at a glance.
import type { FdClass } from '../bindings/FdClass';
import type { FdKind } from '../bindings/FdKind';
import { CLASSES, KINDS, KIND_CLASS, KIND_NOUNS } from '../bindings/kinds';
import type { OrphanTree } from '../bindings/OrphanTree';
import type { OutcomeKind } from '../bindings/OutcomeKind';
import type { PathGroup } from '../bindings/PathGroup';
import type { ProcessOutcome } from '../bindings/ProcessOutcome';
import type { Refusal } from '../bindings/Refusal';
import type { Sample } from '../bindings/Sample';
import type { Survival } from '../bindings/Survival';
import type { TargetStatus } from '../bindings/TargetStatus';

/** The kind order, classes and nouns are Rust's (generated into bindings/kinds.ts by
 * `cargo test -p leakwatch-app`), so no list of kinds is written twice. */
export { CLASSES, CLASS_LABELS, KINDS } from '../bindings/kinds';

/** The kind → class table of DESIGN.md ("File descriptor kinds"); an unknown kind
 * (a newer engine's) counts as other. */
export function classOf(kind: FdKind): FdClass {
  return KIND_CLASS[kind] ?? 'other';
}

/** Totals per class, every class present (zero when none). */
export function classTotals(kinds: Sample['kinds']): Record<FdClass, number> {
  const out = Object.fromEntries(CLASSES.map((c) => [c, 0])) as Record<FdClass, number>;
  for (const [kind, n] of Object.entries(kinds) as [FdKind, number][]) {
    out[classOf(kind)] += n ?? 0;
  }
  return out;
}

/** The kinds present, in canonical order (kqueue/epoll first); unknown kinds last. */
export function sortedKinds(kinds: Sample['kinds']): [FdKind, number][] {
  const rank = (k: string) => {
    const i = KINDS.indexOf(k as FdKind);
    return i < 0 ? KINDS.length : i;
  };
  return (Object.entries(kinds) as [FdKind, number][])
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => rank(a) - rank(b));
}

/** "1 kqueue", "812 kqueues", "2 open directories", "40 unix sockets". */
export function kindNoun(kind: FdKind, n: number): string {
  const [one, many] = KIND_NOUNS[kind] ?? [kind, `${kind}s`];
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** The thousands separator everywhere: a narrow no-break space (U+202F), so
 * "+11 977/h" never breaks across lines. */
export const GROUP = '\u202f';

/** Thousands separated by a narrow no-break space: "10 240". Four digits stay whole. */
export function formatCount(n: number): string {
  const s = String(Math.round(n));
  if (Math.abs(n) < 10_000) return s;
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, GROUP);
}

/** An engine message with its counts in the popover's number format: five
 * digits or more are grouped, except pids and uids (identifiers, not amounts). */
export function formatMessage(message: string): string {
  return message.replace(/(pid |uid )?(\d{5,})/g, (all, before: string | undefined, digits: string) =>
    before ? all : formatCount(Number(digits)),
  );
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Binary units, three significant figures at most: "212 MiB", "1.5 GiB", "0 B". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes == null || !Number.isFinite(bytes)) return '—';
  let v = Math.max(0, bytes);
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u += 1;
  }
  if (u === 0) return `${Math.round(v)} B`;
  const shown = v < 10 ? (Math.round(v * 10) / 10).toString() : String(Math.round(v));
  // 1023.6 KiB would round to "1024 KiB": say "1 MiB" instead.
  if (shown === '1024' && u < UNITS.length - 1) return `1 ${UNITS[u + 1]}`;
  return `${shown} ${UNITS[u]}`;
}

/** Like the CLI's human_duration: "40 s", "10 min", "2 h", "2 h 40 min", "3 d 2 h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const secs = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(secs / 60);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor(minutes / 60) % 24;
  const mins = minutes % 60;
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return mins === 0 ? `${hours} h` : `${hours} h ${mins} min`;
  if (minutes > 0) return `${mins} min`;
  return `${secs} s`;
}

/** The seconds a sparkline spans: the history it has (a target's first minutes
 * fill the box rather than a sliver at its right end), at least a minute, at most
 * the hour the engine keeps. */
export function sparkSpan(history: [number, number][], at: number): number {
  if (history.length === 0) return 3600;
  const seconds = (at - history[0][0]) / 1000;
  return Math.min(3600, Math.max(60, Math.ceil(seconds)));
}

/** The vertical range of a sparkline over `values`: a small wobble on a big
 * count must not look like a leak, so it spans at least 20% of the value (and
 * 20 descriptors). */
export function sparkRange(values: number[]): [number, number] {
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = Math.max(max - min, max * 0.2, 20);
  const mid = (max + min) / 2;
  return [mid - span * 0.6, mid + span * 0.6];
}

/** Slope of descriptors: "+96/h", "−12/h", "flat" (under 1/h), "" when unknown;
 * a fast leak (600/h or more) reads per minute: "+200/min". */
export function formatSlope(perHour: number | null | undefined): string {
  if (perHour == null || !Number.isFinite(perHour)) return '';
  if (Math.abs(perHour) >= 600) {
    const m = Math.round(perHour / 60);
    return m > 0 ? `+${formatCount(m)}/min` : `\u2212${formatCount(-m)}/min`;
  }
  const r = Math.round(perHour);
  if (r === 0) return 'flat';
  return r > 0 ? `+${formatCount(r)}/h` : `\u2212${formatCount(-r)}/h`;
}

/** Time until the FD limit: "limit in 2 h 40 min", "at limit", "" when not approaching. */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds)) return '';
  if (seconds <= 0) return 'at limit';
  return `limit in ${formatDuration(seconds)}`;
}

/** "12 s ago", "3 min ago", relative to `now`. */
export function formatAgo(at: number, now: number): string {
  const secs = Math.max(0, (now - at) / 1000);
  return secs < 1 ? 'just now' : `${formatDuration(secs)} ago`;
}

/** A clock time for a banner: "14:05" (today) or "Mon 14:05". */
export function formatClock(at: number, now: number = Date.now()): string {
  const d = new Date(at);
  const hh = String(d.getHours()).padStart(2, '0');
  const mm = String(d.getMinutes()).padStart(2, '0');
  const sameDay = new Date(now).toDateString() === d.toDateString();
  if (sameDay) return `${hh}:${mm}`;
  return `${d.toLocaleDateString('en-GB', { weekday: 'short' })} ${hh}:${mm}`;
}

/** "85%" of the limit, or "" when there is none. */
export function formatPercent(part: number, whole: number | null | undefined): string {
  if (!whole) return '';
  const p = (part * 100) / whole;
  if (p > 0 && p < 0.1) return '<0.1%';
  return `${p < 10 && p > 0 ? p.toFixed(1) : Math.round(p)}%`;
}

/** Long paths keep their start and their file name: "/Users/me/…/Leakwatch/config.toml". */
export function shortenMiddle(text: string, max: number): string {
  if (text.length <= max) return text;
  const tail = Math.ceil((max - 1) * 0.6);
  const head = max - 1 - tail;
  return `${text.slice(0, head)}\u2026${text.slice(text.length - tail)}`;
}

function basename(path: string): string {
  const i = path.lastIndexOf('/');
  return i >= 0 && i < path.length - 1 ? path.slice(i + 1) : path;
}

/** "state.db ×48, -wal ×46, -shm ×46": a path group with its SQLite companions. */
export function formatPathGroup(group: PathGroup): string {
  // Devices read better whole ("/dev/null"); files by their name.
  const name = group.kind === 'device' ? group.path : basename(group.path);
  const parts = [`${name} \u00d7${group.count}`];
  for (const c of group.companions ?? []) parts.push(`${c.suffix} \u00d7${c.count}`);
  return parts.join(', ');
}

/** Why a tree counts as an orphan, in words. */
export function formatOrphanReason(tree: OrphanTree): string {
  switch (tree.reason) {
    case 'leader_gone':
      return 'group leader gone';
    case 'parent_died':
      return tree.original_parent
        ? `parent ${tree.original_parent.name} died`
        : 'parent died';
    case 'pattern':
      return `matches ${tree.pattern}`;
    default:
      return '';
  }
}

export type Dot = 'ok' | 'warning' | 'critical' | 'measuring' | 'down';

/** The status dot of a target: down (or unreadable) beats any severity, a full
 * table is critical, and a row with no slope yet is measuring, never OK. */
export function targetDot(t: TargetStatus): Dot {
  if (t.state !== 'up') return 'down';
  if (t.reading === 'at_limit') return 'critical';
  if (t.severity === 'ok' && t.reading === 'measuring') return 'measuring';
  return t.severity;
}

const SEVERITY_RANK = { critical: 2, warning: 1, ok: 0 } as const;

/** Rows by urgency, as the engine orders them (TargetStatus::urgency_cmp):
 * severity, then the nearest limit (a full table first); stable otherwise. */
export function byUrgency(targets: TargetStatus[]): TargetStatus[] {
  const eta = (t: TargetStatus) =>
    t.reading === 'at_limit' ? -1 : t.eta_seconds != null && Number.isFinite(t.eta_seconds) ? t.eta_seconds : Infinity;
  return [...targets].sort(
    (a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || eta(a) - eta(b) || 0,
  );
}

/** Why a target is down, and since when: "pidfile … names pid 31999, not running, since 14:56". */
export function formatDown(t: TargetStatus, now: number): string {
  if (t.state === 'up') return '';
  return t.down_since != null ? `${t.reason}, since ${formatClock(t.down_since, now)}` : t.reason;
}

/** A row's name without its pid (shown beside it already), from the row's
 * typed fields, never read out of its display `name` (`web[4321]`): the
 * configured target, else (a top holder in automatic mode) its process's name. */
export function rowName(t: TargetStatus): string {
  return t.target ?? t.process?.name ?? t.name;
}

/** The orphan trees "select all" and the tray's clean-up take: never one
 * holding a watched target (OrphanTree::chosen_by_default). */
export function chosenByDefault(trees: OrphanTree[]): OrphanTree[] {
  return trees.filter((t) => (t.watched ?? []).length === 0);
}

/** Argv shortened so the script stays visible: the interpreter's path is cut
 * to its name, and the middle goes before the script's name does. */
export function formatArgv(argv: string[], max = 60): string {
  if (argv.length === 0) return '';
  const [head, ...rest] = argv;
  const text = [head.split('/').pop() ?? head, ...rest].join(' ');
  if (text.length <= max) return text;
  const script =
    rest.find((a) => /\.(py|js|mjs|cjs|ts|rb|pl|sh|php|jar)$/.test(a)) ??
    rest.find((a) => a.includes('/')) ??
    rest.find((a) => !a.startsWith('-'));
  if (script) {
    const base = script.split('/').pop() ?? script;
    const lead = `${head.split('/').pop()} `;
    const tail = text.slice(text.indexOf(base));
    if (lead.length + tail.length <= max) return `${lead}…${tail}`;
    return shortenEnd(`${lead}${tail}`, max);
  }
  return shortenEnd(text, max);
}

function shortenEnd(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The FD limit to gauge against: the sample's, else the soft limit. */
export function targetLimit(t: TargetStatus): number | null {
  return t.sample?.limit ?? t.limit?.soft ?? null;
}

/** Every outcome the engine reports (the generated `OutcomeKind`: a new one
 * fails the type check here until it has words). */
const OUTCOME_WORDS: Readonly<Record<OutcomeKind, string>> = {
  exited_after_term: 'stopped on SIGTERM',
  killed: 'killed (SIGKILL)',
  already_gone: 'already gone',
  identity_changed: 'pid reused by another process: left alone',
  protected: 'protected: left alone',
  survived: 'survived',
};

/** Plain words for an outcome: "stopped on SIGTERM", not "exited after term".
 * A newer engine's outcome, unknown here, is shown as its name in words. */
export function formatOutcome(outcome: OutcomeKind): string {
  return OUTCOME_WORDS[outcome] ?? String(outcome).replace(/_/g, ' ');
}

/** Why a process was left alone (kill::Refusal), in plain words. */
export function formatRefusal(r: Refusal): string {
  switch (r.code) {
    case 'pid_zero':
      return 'pid 0 is never signalled';
    case 'init':
      return 'init (pid 1) is never signalled';
    case 'leakwatch':
      return 'it is Leakwatch itself';
    case 'leakwatch_parent':
      return 'it started Leakwatch';
    case 'leakwatch_ancestor':
      return 'Leakwatch runs under it';
    case 'kernel_thread':
      return 'it is a kernel thread';
    case 'other_user_not_allowed':
      return `another user's (uid ${r.uid}); allow_other_users is off`;
    case 'other_user':
      return `another user's (uid ${r.uid}); only root may stop it`;
    case 'protect_pattern':
      return `on the protect list (${r.pattern})`;
    case 'unreadable':
      return `cannot be read (uid ${r.uid})`;
    case 'not_running':
      return 'no longer running';
    case 'pid_reused':
      return `pid ${r.pid} now belongs to another process`;
  }
}

/** Why a process is still running (kill::Survival), in plain words. */
export function formatSurvival(s: Survival): string {
  switch (s.code) {
    case 'uninterruptible':
      return 'stuck in uninterruptible I/O';
    case 'traced':
      return 'held by a debugger';
    case 'after_sigkill':
      return 'still running after SIGKILL';
    case 'still_running':
      return 'still running';
    case 'signal_failed':
      return `${s.signal} failed: ${s.error}`;
    case 'unreadable':
      return `could not be read: ${s.error}`;
    case 'unknown':
      return 'unknown';
  }
}

/** An outcome with its reason: "survived: still running after SIGKILL". */
export function describeOutcome(p: ProcessOutcome): string {
  const words = formatOutcome(p.outcome);
  if (p.outcome === 'protected') return `${words}: ${formatRefusal(p.reason)}`;
  if (p.outcome === 'survived') return `${words}: ${formatSurvival(p.reason)}`;
  return words;
}

/** Error payloads of commands are `{kind, message}`; show the message. */
export function errorMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e && typeof (e as { message: unknown }).message === 'string') {
    return (e as { message: string }).message;
  }
  return typeof e === 'string' ? e : String(e);
}
