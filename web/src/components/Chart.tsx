import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { type Columns, countPoints } from "../lib/series";
import { formatLocal, formatUtc } from "../lib/time";

export interface ChartProps {
  testid: string;
  label: string;
  data: Columns;
  series: uPlot.Series[];
  bands?: uPlot.Band[];
  axes?: uPlot.Axis[];
  scales?: uPlot.Scales;
  height?: number;
  /** Series whose non-null values are counted into data-points-N attributes. */
  counted?: number[];
}

const timeSeries: uPlot.Series = {
  label: "time",
  value: (_u, v) => (v === null ? "—" : `${formatLocal(v * 1000)} (${formatUtc(v * 1000)})`),
};

/** A uPlot chart that follows its container's width; the series' point counts are exposed
 * as data attributes for the browser test. */
export function Chart({
  testid,
  label,
  data,
  series,
  bands,
  axes,
  scales,
  height = 220,
  counted = [1],
}: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = `${series.map((s) => s.label).join("|")}#${bands?.length ?? 0}`;

  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 200),
      height,
      series: [timeSeries, ...series],
      bands,
      axes,
      scales: { x: { time: true }, ...scales },
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
    };
    const chart = new uPlot(options, data as uPlot.AlignedData, element);
    plot.current = chart;
    const observer = new ResizeObserver(() => {
      chart.setSize({ width: Math.max(element.clientWidth, 200), height });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
      plot.current = null;
    };
    // The plot is rebuilt only when its series change; data goes through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape, height]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  const attributes: Record<string, string> = {};
  for (const index of counted) attributes[`data-points-${index}`] = String(countPoints(data[index]));
  return (
    <figure className="chart" aria-label={label}>
      <div
        ref={box}
        data-testid={testid}
        data-points={String(countPoints(data[counted[0] ?? 1]))}
        {...attributes}
      />
    </figure>
  );
}
