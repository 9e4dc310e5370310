/** A dependency-free SVG bar chart of benchmark rows, grouped by scenario (used by `disref bench` and bench/). */

interface ChartRow {
  readonly scenario: string;
  readonly library: string;
  readonly opsPerSecond: number;
}

const COLORS = ['#1f6feb', '#d1242f', '#8250df', '#bf8700', '#1a7f37'];

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function barChart(
  title: string,
  sections: readonly { title: string; rows: readonly ChartRow[] }[],
): string {
  const libraries = [
    ...new Set(sections.flatMap((section) => section.rows.map((row) => row.library))),
  ];
  const color = (library: string): string =>
    COLORS[libraries.indexOf(library) % COLORS.length] ?? '#555';
  const barHeight = 16;
  const labelWidth = 230;
  const plotWidth = 520;
  const parts: string[] = [];
  let y = 40;
  for (const section of sections) {
    parts.push(`<text x="10" y="${String(y)}" font-weight="bold">${escape(section.title)}</text>`);
    y += 10;
    const max = Math.max(...section.rows.map((row) => row.opsPerSecond));
    for (const scenario of [...new Set(section.rows.map((row) => row.scenario))]) {
      y += 18;
      parts.push(`<text x="10" y="${String(y)}" font-style="italic">${escape(scenario)}</text>`);
      for (const row of section.rows.filter((candidate) => candidate.scenario === scenario)) {
        y += 4;
        const width = Math.max(1, (row.opsPerSecond / max) * plotWidth);
        parts.push(
          `<text x="${String(labelWidth - 8)}" y="${String(y + barHeight - 4)}" text-anchor="end">${escape(row.library)}</text>`,
          `<rect x="${String(labelWidth)}" y="${String(y)}" width="${width.toFixed(1)}" height="${String(barHeight)}" fill="${color(row.library)}"/>`,
          `<text x="${(labelWidth + width + 6).toFixed(1)}" y="${String(y + barHeight - 4)}">${Math.round(row.opsPerSecond).toLocaleString('en-US')}</text>`,
        );
        y += barHeight;
      }
    }
    y += 24;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${String(labelWidth + plotWidth + 120)}" height="${String(height)}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${escape(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
