/**
 * Plots for reports, as SVG drawn by Vega-Lite (headless: no canvas, no browser). Line charts of
 * scores against steps or time, and bar charts of latencies.
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Fixed y range, e.g. [0, 1] for scores. */
  yDomain?: [number, number];
  logX?: boolean;
  width?: number;
  height?: number;
}

async function toSvg(spec: vl.TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export async function lineChartSvg(c: LineChart): Promise<string> {
  const values = c.series.flatMap((s) => s.points.map((p) => ({ series: s.name, x: p.x, y: p.y })));
  return toSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: c.title,
    width: c.width ?? 520,
    height: c.height ?? 300,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: c.xLabel, scale: c.logX ? { type: 'log' } : { zero: false } },
      y: { field: 'y', type: 'quantitative', title: c.yLabel, ...(c.yDomain ? { scale: { domain: c.yDomain } } : {}) },
      color: { field: 'series', type: 'nominal', title: null, sort: c.series.map((s) => s.name) },
    },
  } as vl.TopLevelSpec);
}

export interface BarChart {
  title: string;
  yLabel: string;
  bars: { label: string; value: number; group?: string }[];
  logY?: boolean;
  width?: number;
  height?: number;
}

export async function barChartSvg(c: BarChart): Promise<string> {
  return toSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: c.title,
    width: c.width ?? 520,
    height: c.height ?? 260,
    background: 'white',
    data: { values: c.bars.map((b) => ({ label: b.label, value: b.value, group: b.group ?? '' })) },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'label', type: 'nominal', title: null, sort: null, axis: { labelAngle: -30 } },
      y: { field: 'value', type: 'quantitative', title: c.yLabel, ...(c.logY ? { scale: { type: 'log' } } : {}) },
      color: { field: 'group', type: 'nominal', title: null },
    },
  } as vl.TopLevelSpec);
}
