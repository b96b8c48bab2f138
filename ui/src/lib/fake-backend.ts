// A Backend held in memory: for component tests and the browser preview
// (`npm run dev`, VITE_FAKE_BACKEND=1). It records every call and lets a test
// push `status` events.
import type { Backend, Unlisten } from './backend';
import type { ActionPlan } from '../bindings/ActionPlan';
import type { AppError } from '../bindings/AppError';
import type { Event } from '../bindings/Event';
import type { KillReport } from '../bindings/KillReport';
import type { Locator } from '../bindings/Locator';
import type { Mark } from '../bindings/Mark';
import type { ProcessId } from '../bindings/ProcessId';
import type { Proposal } from '../bindings/Proposal';
import type { RestartReport } from '../bindings/RestartReport';
import type { Settings } from '../bindings/Settings';
import type { Status } from '../bindings/Status';
import type { TargetForm } from '../bindings/TargetForm';
import type { TreeRow } from '../bindings/TreeRow';
import { blankTarget } from './settings-form';
import type { View } from './route';

export interface FakeCall {
  name: keyof Backend;
  args: unknown[];
}

export interface FakeOptions {
  status: Status;
  tree?: TreeRow[];
  settings?: Settings;
  /** Makes saveSettings refuse with this error. */
  settingsError?: AppError | null;
  /** Makes saveTarget refuse with this error. */
  targetError?: AppError | null;
  restartPlan?: ActionPlan;
  cleanupPlan?: (roots: ProcessId[]) => ActionPlan;
  cleanupReport?: (roots: ProcessId[]) => KillReport;
}

export class FakeBackend implements Backend {
  calls: FakeCall[] = [];
  status: Status;
  private statusHandlers = new Set<(s: Status) => void>();
  private eventHandlers = new Set<(e: Event) => void>();
  private navigateHandlers = new Set<(v: View) => void>();

  constructor(public options: FakeOptions) {
    this.status = options.status;
  }

  private record(name: keyof Backend, ...args: unknown[]) {
    this.calls.push({ name, args });
  }

  callsTo(name: keyof Backend): unknown[][] {
    return this.calls.filter((c) => c.name === name).map((c) => c.args);
  }

  /** Deliver a `status` event as the app would after a tick. */
  emitStatus(status: Status) {
    this.status = status;
    for (const h of this.statusHandlers) h(status);
  }

  emitEvent(event: Event) {
    for (const h of this.eventHandlers) h(event);
  }

  /** Deliver a `leakwatch-navigate` event as the tray would. */
  emitNavigate(view: View) {
    for (const h of this.navigateHandlers) h(view);
  }

  async getStatus() {
    this.record('getStatus');
    return this.status;
  }

  async getTree(pid: number): Promise<TreeRow[]> {
    this.record('getTree', pid);
    if (this.options.tree) return this.options.tree;
    const t = this.status.targets.find((t) => t.process?.pid === pid);
    if (!t?.process) return [];
    return [{
      pid, ppid: 1, depth: 0, name: t.process.name, argv: t.process.argv,
      rss_bytes: t.sample?.rss_bytes ?? null, fds: t.sample?.total ?? null,
    }];
  }

  async planRestart(target: string): Promise<ActionPlan> {
    this.record('planRestart', target);
    if (this.options.restartPlan) return this.options.restartPlan;
    const t = this.status.targets.find((t) => t.name === target);
    const pid = t?.process?.pid ?? 0;
    return {
      text: `Restart ${target} (command): SIGTERM pid ${pid} (${t?.process?.name ?? '?'}), grace 3 s, then SIGKILL; start it again and wait for health.`,
      processes: [],
      no_health_check: false,
    };
  }

  async restartTarget(target: string): Promise<RestartReport> {
    this.record('restartTarget', target);
    const t = this.status.targets.find((t) => t.name === target);
    return {
      target, strategy: 'command',
      previous: t?.process ? { pid: t.process.pid, start_time: t.process.start_time } : null,
      stopped: null, spawned_pid: 9999, new_pid: 9999, healthy_after: 1.4, snapshot_saved: true,
    };
  }

  async saveSnapshot(target: string) {
    this.record('saveSnapshot', target);
  }

  async markBaseline(target: string): Promise<Mark[]> {
    this.record('markBaseline', target);
    const t = this.status.targets.find((t) => t.name === target);
    if (!t?.process) throw { kind: 'not_found', message: `target \`${target}\` has no running process to mark` };
    return [{
      instance: t.name, target, at: Date.now(), descriptors: t.sample?.total ?? 0,
      process: { pid: t.process.pid, start_time: t.process.start_time },
    }];
  }

  async planCleanup(roots: ProcessId[]): Promise<ActionPlan> {
    this.record('planCleanup', roots);
    if (this.options.cleanupPlan) return this.options.cleanupPlan(roots);
    const trees = this.status.orphans.filter((o) => roots.some((r) => r.pid === o.root.pid));
    const n = trees.reduce((a, t) => a + t.members.length, 0);
    return {
      text: `Stop ${trees.length} ${trees.length === 1 ? 'tree' : 'trees'} (${n} processes): SIGTERM, grace 3 s, then SIGKILL.\n`
        + trees.map((t) => `  ${t.root.pid}  ${t.label}`).join('\n'),
      processes: [],
      no_health_check: false,
    };
  }

  async cleanOrphans(roots: ProcessId[]): Promise<KillReport> {
    this.record('cleanOrphans', roots);
    if (this.options.cleanupReport) return this.options.cleanupReport(roots);
    const trees = this.status.orphans.filter((o) => roots.some((r) => r.pid === o.root.pid));
    return {
      processes: trees.flatMap((t) => t.members.map((m) => ({
        pid: m.pid, start_time: m.start_time, name: m.name, outcome: 'exited_after_term' as const,
      }))),
      elapsed_seconds: 0.3,
    };
  }

  async pauseAlerts(minutes: number | null) {
    this.record('pauseAlerts', minutes);
    const until = minutes == null ? null : Date.now() + minutes * 60_000;
    this.emitStatus({ ...this.status, alerts_paused_until: until });
  }

  async getSettings(): Promise<Settings> {
    this.record('getSettings');
    return structuredClone(this.options.settings ?? defaultSettings(this.status));
  }

  async saveSettings(settings: Settings): Promise<Settings> {
    this.record('saveSettings', settings);
    if (this.options.settingsError) throw this.options.settingsError;
    this.options.settings = structuredClone(settings);
    return settings;
  }

  async setLaunchAtLogin(enabled: boolean) {
    this.record('setLaunchAtLogin', enabled);
    return enabled;
  }

  async revealConfig() {
    this.record('revealConfig');
  }

  async proposeWatch(pid: number): Promise<Proposal> {
    this.record('proposeWatch', pid);
    const row = this.status.targets.find((t) => t.process?.pid === pid);
    return {
      name: row?.process?.name ?? 'server',
      locator: { key: 'argv', value: `^${row?.process?.argv[0] ?? 'server'}` },
      why: 'its program and first argument',
      last_resort: false,
      matches: [pid],
    };
  }

  async locatorMatches(locator: Locator): Promise<number[]> {
    this.record('locatorMatches', locator);
    return [];
  }

  async addTarget(name: string, locator: Locator, fdLimit: number | null) {
    this.record('addTarget', name, locator, fdLimit);
    if (this.options.settingsError) throw this.options.settingsError;
  }

  async saveTarget(previous: string | null, target: TargetForm): Promise<Settings> {
    this.record('saveTarget', previous, structuredClone(target));
    if (this.options.targetError) throw this.options.targetError;
    const settings = this.options.settings ?? defaultSettings(this.status);
    const others = settings.targets.filter((t) => t.name !== previous);
    const index = settings.targets.findIndex((t) => t.name === previous);
    const targets = [...others];
    targets.splice(index < 0 ? targets.length : index, 0, structuredClone(target));
    this.options.settings = { ...settings, targets };
    return structuredClone(this.options.settings);
  }

  async removeTarget(name: string) {
    this.record('removeTarget', name);
    const settings = this.options.settings ?? defaultSettings(this.status);
    this.options.settings = { ...settings, targets: settings.targets.filter((t) => t.name !== name) };
  }

  async setFdLimit(target: string, limit: number | null) {
    this.record('setFdLimit', target, limit);
    if (this.options.settingsError) throw this.options.settingsError;
  }

  async closePopover() {
    this.record('closePopover');
  }

  async quit() {
    this.record('quit');
  }

  async fitPopover(height: number) {
    this.record('fitPopover', height);
    return height;
  }

  async onStatus(handler: (s: Status) => void): Promise<Unlisten> {
    this.statusHandlers.add(handler);
    return () => this.statusHandlers.delete(handler);
  }

  async onEvent(handler: (e: Event) => void): Promise<Unlisten> {
    this.eventHandlers.add(handler);
    return () => this.eventHandlers.delete(handler);
  }

  async onNavigate(handler: (v: View) => void): Promise<Unlisten> {
    this.navigateHandlers.add(handler);
    return () => this.navigateHandlers.delete(handler);
  }
}

export function defaultSettings(status: Status): Settings {
  return {
    launch_at_login: true,
    interval_seconds: 2,
    notifications: true,
    config_path: status.config.path ?? '~/Library/Application Support/dev.leakwatch.Leakwatch/config.toml',
    targets: status.targets
      .filter((t) => t.target != null)
      .map((t) => ({ ...blankTarget(), name: t.name, locator_value: '4321', fds_warn: '80%', fds_critical: '95%' })),
  };
}
