import { describe, expect, it } from 'vitest';
import {
  classOf, classTotals, errorMessage, formatBytes, formatCount, formatDuration, formatEta,
  formatOrphanReason, formatPathGroup, formatPercent, formatSlope, kindNoun, shortenMiddle, sortedKinds, targetDot,
  sparkRange, sparkSpan, byUrgency, chosenByDefault, formatArgv, formatDown, formatMessage, formatOutcome, rowName,
  describeOutcome,
} from './format';
import { NOW, downTarget, healthyTarget, leakingTarget, orphanTrees, warningTarget } from '../fixtures/status';

describe('sparkline scale', () => {
  it('spans the recorded history, not always the hour', () => {
    const at = 1_000_000;
    expect(sparkSpan([[at - 3 * 60_000, 5], [at, 9]], at)).toBe(180);
    expect(sparkSpan([[at - 5_000, 5], [at, 9]], at)).toBe(60);
    expect(sparkSpan([[at - 2 * 3600_000, 5], [at, 9]], at)).toBe(3600);
    expect(sparkSpan([], at)).toBe(3600);
  });

  it('keeps a small wobble on a big count flat', () => {
    const [lo, hi] = sparkRange([1000, 1002]);
    expect(hi - lo).toBeGreaterThanOrEqual(200);
    expect(lo).toBeLessThan(1000);
    expect(hi).toBeGreaterThan(1002);
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [222_298_112, '212 MiB'],
    [1_610_612_736, '1.5 GiB'],
    [3_435_973_837, '3.2 GiB'],
    [1024 * 1024 - 1, '1 MiB'],
  ])('%d → %s', (n, s) => expect(formatBytes(n)).toBe(s));
  it('says — when unknown', () => expect(formatBytes(null)).toBe('—'));
});

describe('formatDuration (as the CLI)', () => {
  it.each([
    [40, '40 s'],
    [600, '10 min'],
    [9600, '2 h 40 min'],
    [7200, '2 h'],
    [3 * 86400 + 7200, '3 d 2 h'],
    [0, '0 s'],
  ])('%d s → %s', (n, s) => expect(formatDuration(n)).toBe(s));
});

describe('formatSlope', () => {
  it('signs and rounds', () => {
    expect(formatSlope(96.4)).toBe('+96/h');
    expect(formatSlope(-12)).toBe('\u221212/h');
    expect(formatSlope(0.3)).toBe('flat');
    expect(formatSlope(-0.4)).toBe('flat');
    expect(formatSlope(null)).toBe('');
    expect(formatSlope(12_000)).toBe('+200/min');
    expect(formatSlope(599)).toBe('+599/h');
    expect(formatSlope(718_620)).toBe('+11\u202f977/min');
  });
});

describe('formatEta', () => {
  it('says how long until the limit', () => {
    expect(formatEta(9600)).toBe('limit in 2 h 40 min');
    expect(formatEta(0)).toBe('at limit');
    expect(formatEta(null)).toBe('');
  });
});

describe('kinds and classes', () => {
  it('pluralises kind nouns', () => {
    expect(kindNoun('kqueue', 1)).toBe('1 kqueue');
    expect(kindNoun('kqueue', 812)).toBe('812 kqueues');
    expect(kindNoun('dir', 2)).toBe('2 open directories');
    expect(kindNoun('epoll', 3)).toBe('3 epoll instances');
    expect(kindNoun('unix', 40)).toBe('40 unix sockets');
    expect(kindNoun('tcp', 1)).toBe('1 TCP socket');
  });
  it('maps kinds to the classes of DESIGN.md', () => {
    expect(classOf('kqueue')).toBe('event_loops');
    expect(classOf('fsevents')).toBe('event_loops');
    expect(classOf('inotify')).toBe('event_loops');
    expect(classOf('udp')).toBe('sockets');
    expect(classOf('shm')).toBe('files');
    expect(classOf('pipe')).toBe('pipes');
    expect(classOf('pidfd')).toBe('other');
    expect(classOf('other')).toBe('other');
    expect(classTotals({ epoll: 40, unix: 40, tcp: 1, file: 142, device: 2, pipe: 1 })).toEqual({
      event_loops: 40, sockets: 41, files: 144, pipes: 1, other: 0,
    });
  });
  it('orders kinds event loops first', () => {
    expect(sortedKinds({ file: 3, pipe: 1, kqueue: 9, unix: 2, epoll: 0 }).map(([k]) => k)).toEqual([
      'kqueue', 'unix', 'file', 'pipe',
    ]);
  });
});

describe('other helpers', () => {
  it('folds SQLite companions', () => {
    expect(formatPathGroup(leakingTarget().top_paths[0])).toBe('state.db \u00d748, -wal \u00d746, -shm \u00d746');
    expect(formatPathGroup({ path: '/dev/null', kind: 'device', count: 2 })).toBe('/dev/null \u00d72');
  });
  it('shortens long paths in the middle', () => {
    const p = '/Users/me/Library/Application Support/dev.leakwatch.Leakwatch/config.toml';
    const s = shortenMiddle(p, 40);
    expect(s).toHaveLength(40);
    expect(s.endsWith('config.toml')).toBe(true);
    expect(s.startsWith('/Users/')).toBe(true);
    expect(shortenMiddle('short', 40)).toBe('short');
  });
  it('counts and percentages', () => {
    expect(formatCount(9412)).toBe('9412');
    expect(formatCount(10240)).toBe('10\u202f240');
    expect(formatPercent(9412, 10240)).toBe('92%');
    expect(formatPercent(5, 1000)).toBe('0.5%');
    expect(formatPercent(5, null)).toBe('');
    expect(formatPercent(9, 20000)).toBe('<0.1%');
  });
  it('explains orphan reasons', () => {
    const [a, b, c] = orphanTrees();
    expect(formatOrphanReason(a)).toBe('parent claude died');
    expect(formatOrphanReason(b)).toBe('group leader gone');
    expect(formatOrphanReason(c)).toBe('matches node .*mcp-remote');
  });
  it('puts down before severity', () => {
    expect(targetDot(downTarget())).toBe('down');
    expect(targetDot(leakingTarget())).toBe('critical');
  });
  it('takes the message of a command error', () => {
    expect(errorMessage({ kind: 'config', message: 'fds.warn: "lots" is not a count' })).toBe('fds.warn: "lots" is not a count');
    expect(errorMessage('plain')).toBe('plain');
  });
});

describe('issue 12: one number format, urgency, selection, words', () => {
  it('groups counts in events too, with U+202F, but never a pid', () => {
    expect(formatMessage('copilot: 12345 kqueues, +11977/h')).toBe(
      'copilot: 12\u202f345 kqueues, +11\u202f977/h',
    );
    expect(formatMessage('copilot: now pid 31999 (was pid 12345)')).toBe('copilot: now pid 31999 (was pid 12345)');
    expect(formatCount(2102)).toBe('2102');
    expect(formatCount(123_456)).not.toContain('\u2009');
  });

  it('a row with no slope yet is measuring, never OK; a full table is critical', () => {
    expect(targetDot({ ...healthyTarget(), reading: 'measuring' })).toBe('measuring');
    expect(targetDot({ ...healthyTarget(), reading: 'measured' })).toBe('ok');
    expect(targetDot({ ...healthyTarget(), reading: 'at_limit' })).toBe('critical');
  });

  it('orders rows by severity, then the nearest limit, a full table first', () => {
    const soon = { ...leakingTarget(), name: 'soon', eta_seconds: 60 };
    const later = { ...leakingTarget(), name: 'later', eta_seconds: 9600 };
    const full = { ...leakingTarget(), name: 'full', eta_seconds: null, reading: 'at_limit' as const };
    const calm = healthyTarget();
    const warn = warningTarget();
    const names = byUrgency([calm, later, warn, downTarget(), soon, full]).map((t) => t.name);
    expect(names).toEqual(['full', 'soon', 'later', 'mcp-gateway', warn.name, calm.name]);
  });

  it('says why a target is down and since when', () => {
    expect(formatDown(downTarget(), NOW)).toMatch(/^nothing listens on port 8931, since \d\d:\d\d$/);
  });

  it('select-all never takes a tree holding a watched target', () => {
    const trees = orphanTrees();
    trees[1].watched = ['agent-server'];
    expect(chosenByDefault(trees).map((t) => t.root.pid)).toEqual(
      trees.filter((_, i) => i !== 1).map((t) => t.root.pid),
    );
  });

  it('keeps the script name visible in a long argv', () => {
    const argv = ['/opt/homebrew/Cellar/python@3.12/3.12.4/bin/python3', '-X', 'dev', '-u',
      '/Users/me/src/some/very/long/project/path/agent_server.py', '--port', '4321'];
    const text = formatArgv(argv, 50);
    expect(text.length).toBeLessThanOrEqual(50);
    expect(text).toContain('agent_server.py');
    expect(text.startsWith('python3')).toBe(true);
  });

  it('outcomes in plain words; automatic rows named without their pid', () => {
    expect(formatOutcome('exited_after_term')).toBe('stopped on SIGTERM');
    // Issue 13: from the typed fields, never by cutting `[pid]` off the name.
    const holder = healthyTarget();
    const node = { ...holder, name: 'node[4242]', target: null, instance: 4242, process: { ...holder.process!, name: 'node', pid: 4242 } };
    expect(rowName(node)).toBe('node');
    expect(rowName({ ...holder, name: 'web[7][8]', target: 'web[7]', instance: 8 })).toBe('web[7]');
  });

  // issue 13: reasons arrive as enums (kill::Refusal, kill::Survival), not sentences.
  it('words outcome reasons from their codes', () => {
    const id = { pid: 7, start_time: 1, name: 'x' };
    expect(describeOutcome({ ...id, outcome: 'killed' })).toBe('killed (SIGKILL)');
    expect(describeOutcome({ ...id, outcome: 'protected', reason: { code: 'other_user', uid: 0, own_uid: 501 } }))
      .toBe("protected: left alone: another user's (uid 0); only root may stop it");
    expect(describeOutcome({ ...id, outcome: 'protected', reason: { code: 'pid_reused', pid: 7 } }))
      .toBe('protected: left alone: pid 7 now belongs to another process');
    expect(describeOutcome({
      ...id, outcome: 'survived', reason: { code: 'signal_failed', signal: 'SIGKILL', error: 'permission denied' },
    })).toBe('survived: SIGKILL failed: permission denied');
  });
});
