import { vi } from 'vitest';

// jsdom has no canvas: stand uPlot in with a stub that records its data.
vi.mock('uplot', () => {
  class FakePlot {
    static instances: FakePlot[] = [];
    data: unknown;
    constructor(_opts: unknown, data: unknown, _el: HTMLElement) {
      this.data = data;
      FakePlot.instances.push(this);
    }
    setData(data: unknown) {
      this.data = data;
    }
    destroy() {}
  }
  return { default: FakePlot };
});
