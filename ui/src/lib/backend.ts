// The one door to the app: Tauri commands (invoke) and events (listen). Components
// take a Backend, so tests and the browser preview can pass a fake one.
import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import type { ActionPlan } from '../bindings/ActionPlan';
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
import { asView, type View } from './route';

export type Unlisten = () => void;

export interface Backend {
  getStatus(): Promise<Status>;
  getTree(pid: number): Promise<TreeRow[]>;
  planRestart(target: string): Promise<ActionPlan>;
  restartTarget(target: string): Promise<RestartReport>;
  saveSnapshot(target: string): Promise<void>;
  /** Marks a baseline on the target in the running engine: `leakwatch explain
   * TARGET` then counts survivors from now. Rejects with `{kind, message}`. */
  markBaseline(target: string): Promise<Mark[]>;
  planCleanup(roots: ProcessId[]): Promise<ActionPlan>;
  cleanOrphans(roots: ProcessId[]): Promise<KillReport>;
  /** `null` resumes alerts. */
  pauseAlerts(minutes: number | null): Promise<void>;
  getSettings(): Promise<Settings>;
  /** Rejects with `{kind, message}` naming a refused value. */
  saveSettings(settings: Settings): Promise<Settings>;
  setLaunchAtLogin(enabled: boolean): Promise<boolean>;
  revealConfig(): Promise<void>;
  /** Watch: a name and a locator for an automatic-mode row's process. */
  proposeWatch(pid: number): Promise<Proposal>;
  /** The pids a locator matches now. */
  locatorMatches(locator: Locator): Promise<number[]>;
  /** Adds a `[[watch]]` target; rejects with `{kind, message}` naming what is wrong. */
  addTarget(name: string, locator: Locator, fdLimit: number | null): Promise<void>;
  /** Settings' target form: saves `target` over the one named `previous` (`null`
   * adds it); rejects with `{kind, message, field}`, `field` naming the form's
   * field a refused value belongs to. Resolves to the settings as now written. */
  saveTarget(previous: string | null, target: TargetForm): Promise<Settings>;
  /** Removes the `[[watch]]` target `name`. */
  removeTarget(name: string): Promise<void>;
  /** "Set limit…": the target's `fd_limit` (`null` removes it). */
  setFdLimit(target: string, limit: number | null): Promise<void>;
  /** Fits the popover's height to its content's (CSS pixels), within the screen;
   * resolves to the height given. */
  fitPopover(height: number): Promise<number>;
  /** Esc: closes the popover. */
  closePopover(): Promise<void>;
  /** ⌘Q / Ctrl+Q and the popover's Quit: quits Leakwatch. */
  quit(): Promise<void>;
  /** The `status` event, after every engine tick. */
  onStatus(handler: (status: Status) => void): Promise<Unlisten>;
  /** The `leakwatch-event` event: one Event as it happens. */
  onEvent(handler: (event: Event) => void): Promise<Unlisten>;
  /** The `leakwatch-navigate` event: the tray or a notification asks the open
   * popover to show a view. Malformed payloads are dropped. */
  onNavigate(handler: (view: View) => void): Promise<Unlisten>;
}

export function tauriBackend(): Backend {
  return {
    getStatus: () => invoke<Status>('get_status'),
    getTree: (pid) => invoke<TreeRow[]>('get_tree', { pid }),
    planRestart: (target) => invoke<ActionPlan>('plan_restart', { target }),
    restartTarget: (target) => invoke<RestartReport>('restart_target', { target }),
    saveSnapshot: (target) => invoke<void>('save_snapshot', { target }),
    markBaseline: (target) => invoke<Mark[]>('mark_baseline', { target }),
    planCleanup: (roots) => invoke<ActionPlan>('plan_cleanup', { roots }),
    cleanOrphans: (roots) => invoke<KillReport>('clean_orphans', { roots }),
    pauseAlerts: (minutes) => invoke<void>('pause_alerts', { minutes }),
    getSettings: () => invoke<Settings>('get_settings'),
    saveSettings: (settings) => invoke<Settings>('save_settings', { settings }),
    setLaunchAtLogin: (enabled) => invoke<boolean>('set_launch_at_login', { enabled }),
    revealConfig: () => invoke<void>('reveal_config'),
    proposeWatch: (pid) => invoke<Proposal>('propose_watch', { pid }),
    locatorMatches: (locator) => invoke<number[]>('locator_matches', { locator }),
    addTarget: (name, locator, fdLimit) => invoke<void>('add_target', { name, locator, fdLimit }),
    saveTarget: (previous, target) => invoke<Settings>('save_target', { previous, target }),
    removeTarget: (name) => invoke<void>('remove_target', { name }),
    setFdLimit: (target, limit) => invoke<void>('set_fd_limit', { target, limit }),
    fitPopover: (height) => invoke<number>('fit_popover', { height }),
    closePopover: () => invoke<void>('close_popover'),
    quit: () => invoke<void>('quit'),
    onStatus: (handler) => listen<Status>('status', (e) => handler(e.payload)),
    onEvent: (handler) => listen<Event>('leakwatch-event', (e) => handler(e.payload)),
    onNavigate: (handler) =>
      listen<unknown>('leakwatch-navigate', (e) => {
        const view = asView(e.payload);
        if (view) handler(view);
      }),
  };
}
