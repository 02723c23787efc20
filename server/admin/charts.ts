// Small server-rendered SVG line charts for the dashboard (no script, no library).
import { html, type SafeHtml } from './html.js'

export interface Series {
  label: string
  points: Array<{ x: number; y: number }>
}

const W = 480
const H = 140
const PAD = { l: 56, r: 8, t: 10, b: 22 }
const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2']

/** A line chart of one or more series; x is µs epoch, y formatted with `fmt`. */
export function lineChart(title: string, series: Series[], fmt: (y: number) => string): SafeHtml {
  const all = series.flatMap((s) => s.points)
  if (all.length === 0)
    return html`<figure class="chart">
      <figcaption>${title}</figcaption>
      <p class="muted">No data yet.</p>
    </figure>`
  const xs = all.map((p) => p.x)
  const ys = all.map((p) => p.y)
  const x0 = Math.min(...xs)
  const x1 = Math.max(...xs)
  const y1 = Math.max(...ys, 1)
  const sx = (x: number) =>
    PAD.l + (x1 === x0 ? (W - PAD.l - PAD.r) / 2 : ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r))
  const sy = (y: number) => H - PAD.b - (y / y1) * (H - PAD.t - PAD.b)
  const lines = series.map((s, i) => {
    const color = COLORS[i % COLORS.length]!
    const pts = s.points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')
    return html`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts}"
      ><title>${s.label}</title></polyline
    >`
  })
  const legend = series.map(
    (s, i) =>
      html`<span class="legend"
        ><svg width="10" height="10">
          <rect width="10" height="10" fill="${COLORS[i % COLORS.length]}" />
        </svg>
        ${s.label}</span
      >`,
  )
  // minutes are enough for a long span; a short one (a fresh install) needs seconds
  const day = (us: number) =>
    new Date(us / 1000)
      .toISOString()
      .slice(0, x1 - x0 < 3600e6 ? 19 : 16)
      .replace('T', ' ')
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${title}">
      <line x1="${PAD.l}" y1="${H - PAD.b}" x2="${W - PAD.r}" y2="${H - PAD.b}" stroke="#999" />
      <line x1="${PAD.l}" y1="${PAD.t}" x2="${PAD.l}" y2="${H - PAD.b}" stroke="#999" />
      <text x="${PAD.l - 4}" y="${PAD.t + 8}" text-anchor="end" font-size="10">${fmt(y1)}</text>
      <text x="${PAD.l - 4}" y="${H - PAD.b}" text-anchor="end" font-size="10">0</text>
      <text x="${PAD.l}" y="${H - 6}" font-size="10">${day(x0)}</text>
      <text x="${W - PAD.r}" y="${H - 6}" text-anchor="end" font-size="10">${day(x1)}</text>
      ${lines}
    </svg>
    <div>${legend}</div>
  </figure>`
}
