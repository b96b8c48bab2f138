import './lib/locale-guard';
import { mount } from 'svelte';
import App from './App.svelte';
import { tauriBackend, type Backend } from './lib/backend';

async function pickBackend(): Promise<Backend> {
  // The fake backend only in a plain browser: `tauri dev` runs `npm run dev` too,
  // and inside the app the real one is there.
  if (import.meta.env.VITE_FAKE_BACKEND === '1' && !('__TAURI_INTERNALS__' in window)) {
    // Tree-shaken out of the app build.
    const { FakeBackend } = await import('./lib/fake-backend');
    const { demoStatus, realStatus } = await import('./fixtures/status');
    const which = new URLSearchParams(location.search).get('fixture');
    return new FakeBackend({ status: which === 'real' ? realStatus : demoStatus() });
  }
  return tauriBackend();
}

const backend = await pickBackend();
const target = document.getElementById('app');
if (!target) throw new Error('no #app element');
const app = mount(App, { target, props: { backend } });
export default app;

if (import.meta.env.VITE_FAKE_BACKEND === '1' && !('__TAURI_INTERNALS__' in window)) {
  // Preview helpers for screenshots: ?expand=NAME, ?restart=NAME, ?settings, ?cleanup.
  const q = new URLSearchParams(location.search);
  const click = (sel: string) => document.querySelector<HTMLElement>(sel)?.click();
  const later = (f: () => void, ms = 150) => setTimeout(f, ms);
  later(() => {
    for (const name of q.getAll('expand').concat(q.getAll('restart'))) {
      click(`[data-testid="target-row"][data-target="${CSS.escape(name)}"] [role="button"]`);
    }
    if (q.has('restart')) later(() => click('[data-testid="restart-button"]'));
    if (q.has('settings')) click('[data-testid="settings-button"]');
    if (q.has('cleanup')) {
      click('[data-testid="orphans-select-all"]');
      later(() => click('[data-testid="cleanup-button"]'));
      if (q.get('cleanup') === 'done') later(() => click('[data-testid="confirm-button"]'), 400);
    }
    if (q.has('scroll')) later(() => document.querySelector('.scroll')?.scrollTo(0, 10_000), 300);
  });
}
