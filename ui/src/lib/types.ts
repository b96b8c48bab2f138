// The JSON shapes the popover receives, mirroring the Rust types exactly
// (crates/core/src/{status,model,orphans,kill,restart,summary}.rs,
// crates/probe/src/model.rs) plus the app's command payloads (src-tauri).
//
// Every component imports its types from this file only. When ts-rs bindings
// land in ../bindings/, replace the declarations below with re-exports, e.g.
//   export type { Status } from '../bindings/Status';

import type { Problem } from '../bindings/Problem';
import type { TopKind } from '../bindings/TopKind';
import type { Locator } from '../bindings/Locator';
import type { Proposal } from '../bindings/Proposal';
import type { Settings } from '../bindings/Settings';
import type { TargetForm } from '../bindings/TargetForm';
import type { FormField } from '../bindings/FormField';
import type { LocatorKey } from '../bindings/LocatorKey';
import type { RestartWay } from '../bindings/RestartWay';
import type { Reading } from '../bindings/Reading';
import type { Owner } from '../bindings/Owner';
import type { Mark } from '../bindings/Mark';
import type { Event } from '../bindings/Event';
import type { EventKind } from '../bindings/EventKind';
import type { Subject } from '../bindings/Subject';
import type { Refusal } from '../bindings/Refusal';
import type { Survival } from '../bindings/Survival';
import type { Strategy } from '../bindings/Strategy';
export type {
  Event, EventKind, FormField, Locator, LocatorKey, Mark, Owner, Problem, Proposal, Reading,
  Refusal, RestartWay, Settings, Strategy, Subject, Survival, TargetForm, TopKind,
};

/** Milliseconds since the Unix epoch. */
export type UnixMillis = number;

export type FdKind =
  | 'kqueue' | 'epoll' | 'eventfd' | 'timerfd' | 'signalfd' | 'inotify' | 'fsevents' | 'pidfd'
  | 'unix' | 'tcp' | 'udp' | 'socket'
  | 'file' | 'dir' | 'device' | 'shm' | 'sem'
  | 'pipe' | 'other';

export type FdClass = 'event_loops' | 'sockets' | 'files' | 'pipes' | 'other';

export type Severity = 'ok' | 'warning' | 'critical';

/** Leak signatures (crates/core/src/diagnose/signatures.rs). */
export type Signature =
  | 'event_loops_not_closed' | 'sqlite_connections_not_closed' | 'subprocess_pipes_not_closed'
  | 'close_wait_sockets' | 'watchers_not_removed' | 'path_reopened' | 'inherited_by_children'
  | 'orphaned_tree' | 'idle_tree_holding_memory' | 'unrecognised';

/** `start_time` is the OS's own unit; only compared for equality. */
export interface ProcessId {
  pid: number;
  start_time: number;
}

export type LimitSource = 'proc_limits' | 'getrlimit' | 'launchd_default' | 'configured';

export interface FdLimit {
  soft: number | null;
  hard: number | null;
  source: LimitSource;
}

export interface Sample {
  at: UnixMillis;
  total: number;
  kinds: Partial<Record<FdKind, number>>;
  limit: number | null;
  rss_bytes: number | null;
  cpu_seconds: number | null;
  threads: number | null;
  descendants: number;
}

export interface Companion {
  suffix: string;
  count: number;
}

export interface PathGroup {
  path: string;
  kind: FdKind;
  count: number;
  /** Absent when empty. */
  companions?: Companion[];
}

/** `#[serde(tag = "state", content = "reason")]`, flattened into TargetStatus. */
export type TargetState =
  | { state: 'up' }
  | { state: 'down'; reason: string }
  | { state: 'permission_denied'; reason: string }
  | { state: 'unknown'; reason: string };

export interface ProcessSummary extends ProcessId {
  name: string;
  argv: string[];
  started_at: UnixMillis;
}

export interface RuleStatus {
  metric: string;
  severity: Severity;
  value: number | null;
}

export interface KindGrowth {
  kind: FdKind;
  first: number;
  now: number;
}

export type TargetStatus = TargetState & {
  /** The row's display name (`name[pid]` for one of several); never parsed. */
  name: string;
  /** The `[[watch]]` name; null for an automatic-mode row. */
  target: string | null;
  /** The pid, when one of several rows of its target (or automatic). */
  instance: number | null;
  restartable: boolean;
  /** Why Restart is not offered, when it is not. */
  restart_unavailable: string | null;
  /** The process's own limit cannot be read and no fd_limit is configured. */
  limit_unknown: boolean;
  top_kind: TopKind | null;
  selector: string;
  process: ProcessSummary | null;
  sample: Sample | null;
  limit: FdLimit | null;
  slope_per_hour: number | null;
  kind_slopes_per_hour: Partial<Record<FdKind, number>>;
  eta_seconds: number | null;
  severity: Severity;
  rules: RuleStatus[];
  top_paths: PathGroup[];
  grew: KindGrowth[];
  /** `[at, total]` pairs, oldest first. */
  history: [UnixMillis, number][];
  /** What is leaking, in one line, or null while nothing recognisable survives. */
  diagnosis: string | null;
  signatures: Signature[];
  /** Measuring until a slope exists; at_limit when the descriptor table is full. */
  reading: Reading;
  /** When this run first found the target down or unreadable. */
  down_since: UnixMillis | null;
};

export interface ConfigStatus {
  path: string | null;
  error: string | null;
  automatic: boolean;
}

export interface OwnUsage {
  pid: number;
  fds: number | null;
  rss_bytes: number | null;
  cpu_seconds: number | null;
  threads: number | null;
}

/** `#[serde(tag = "reason", content = "pattern")]`, flattened into OrphanTree. */
export type OrphanReason =
  | { reason: 'leader_gone' }
  | { reason: 'parent_died' }
  | { reason: 'pattern'; pattern: string };

export interface ParentRecord extends ProcessId {
  name: string;
  argv: string[];
}

export interface OrphanMember extends ProcessId {
  ppid: number;
  depth: number;
  name: string;
  argv: string[];
  rss_bytes: number | null;
  fds: number | null;
  cpu_seconds: number | null;
  /** Only for a launcher wrapper: e.g. `uvx X (uv → python)`. */
  label?: string;
  /** Only for a worker folded into its wrapper's row: the wrapper's pid. */
  folded_into?: number;
}

export type OrphanTree = OrphanReason & {
  root: ProcessId;
  /** Absent when the lineage does not know it. */
  original_parent?: ParentRecord;
  label: string;
  members: OrphanMember[];
  total_rss_bytes: number;
  total_fds: number;
  age_seconds: number;
  idle_seconds: number | null;
  /** Watched targets whose process is in this tree: never chosen by default. */
  watched: string[];
};

export interface Status {
  at: UnixMillis;
  tick: number;
  targets: TargetStatus[];
  config: ConfigStatus;
  own: OwnUsage;
  recent_events: Event[];
  alerts_paused_until: UnixMillis | null;
  orphans: OrphanTree[];
  orphan_rules: RuleStatus[];
  /** Automatic restarts per target since the engine started. */
  restarts: Partial<Record<string, number>>;
  /** What keeps Leakwatch itself from working fully, with a fix. */
  problems: Problem[];
  /** The engine that made this status (the daemon's when the app is attached). */
  engine?: Owner | null;
}

// ---- actions (core::kill, core::restart) ----

export interface PlannedProcess extends ProcessId {
  ppid: number;
  depth: number;
  name: string;
  argv: string[];
  rss_bytes: number | null;
  /** Why it will not be signalled, if so. */
  protected: Refusal | null;
}

export interface KillPlan {
  roots: ProcessId[];
  grace_seconds: number;
  processes: PlannedProcess[];
}

/** `#[serde(tag = "outcome")]` */
export type Outcome =
  | { outcome: 'exited_after_term' }
  | { outcome: 'killed' }
  | { outcome: 'already_gone' }
  | { outcome: 'identity_changed' }
  | { outcome: 'protected'; reason: Refusal }
  | { outcome: 'survived'; reason: Survival };

export type ProcessOutcome = ProcessId & { name: string } & Outcome;

export interface KillReport {
  processes: ProcessOutcome[];
  elapsed_seconds: number;
}

export interface RestartReport {
  target: string;
  strategy: Strategy;
  previous: ProcessId | null;
  stopped: KillReport | null;
  spawned_pid: number | null;
  new_pid: number | null;
  healthy_after: number | null;
  snapshot_saved: boolean;
}

// ---- app commands (src-tauri) ----

export interface TreeRow {
  pid: number;
  ppid: number;
  depth: number;
  name: string;
  argv: string[];
  rss_bytes: number | null;
  fds: number | null;
}

/** What a restart or cleanup would do: `text` is shown verbatim before confirming. */
export interface ActionPlan {
  text: string;
  processes: PlannedProcess[];
  /** A command restart that cannot tell whether it came back up (issue 12). */
  no_health_check: boolean;
}

/** How every command fails. */
export interface CommandError {
  /** not_found, invalid_settings, config, refused, restart, ... */
  kind: string;
  message: string;
}
