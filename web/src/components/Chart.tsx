// A small live line chart on uPlot (canvas; ~20 kB gzipped).

import { useEffect, useRef } from 'react'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { fmt } from './format.ts'

export interface ChartSeries {
  label: string
  values: (number | null)[]
  color: string
}

export function Chart({ t, series, unit, height = 140, title }: { t: number[]; series: ChartSeries[]; unit: string; height?: number; title: string }) {
  const wrap = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  const shape = series.map((s) => `${s.label}|${s.color}`).join(',')

  useEffect(() => {
    const el = wrap.current
    if (!el) return
    // Canvas cannot read CSS variables: resolve the theme's colours once per chart.
    const css = getComputedStyle(el)
    const muted = css.getPropertyValue('--muted').trim() || '#64748b'
    const grid = { stroke: 'rgba(128,128,128,.15)', width: 1 }
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: series.length > 1, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min ?? 0), Math.max(1, (max ?? 1) * 1.1)] } },
      axes: [
        { stroke: muted, grid, ticks: { show: false }, size: 24, space: 70, values: (_u, vals) => vals.map(clock) },
        { stroke: muted, grid, ticks: { show: false }, size: 48, values: (_u, vals) => vals.map((v) => fmt(v) + unit) },
      ],
      series: [
        {},
        ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, fill: `${s.color}22`, spanGaps: false, points: { show: false } })),
      ],
    }
    const u = new uPlot(opts, [[], ...series.map(() => [])] as uPlot.AlignedData, el)
    plot.current = u
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }))
    ro.observe(el)
    return () => {
      ro.disconnect()
      u.destroy()
      plot.current = null
    }
    // Rebuilt only when the set of series changes; data flows through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height, unit])

  useEffect(() => {
    plot.current?.setData([t, ...series.map((s) => s.values)] as uPlot.AlignedData)
  })

  const last = series.map((s) => s.values[s.values.length - 1])
  return (
    <figure className="chart" aria-label={title}>
      <div ref={wrap} className="chart-canvas" role="img" aria-label={`${title}: ${series.map((s, i) => `${s.label} ${last[i] == null ? 'no data' : fmt(last[i] as number) + unit}`).join(', ')}`} />
    </figure>
  )
}

const pad = (n: number) => String(n).padStart(2, '0')
/** Seconds since the epoch → HH:MM:SS, local time. */
export function clock(t: number): string {
  const d = new Date(t * 1000)
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}
