// A small line chart as inline SVG: no library, no build step.

const SVG = "http://www.w3.org/2000/svg";

export function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e9) return (value / 1e9).toFixed(1) + "G";
  if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
  if (abs >= 1e4) return (value / 1e3).toFixed(1) + "k";
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// points: [{time (s), value}]; returns a <div class="chart"> with a title and the line.
export function lineChart(title, points, unit = "") {
  const box = document.createElement("div");
  box.className = "chart";
  const head = document.createElement("div");
  head.className = "title";
  const last = points.length ? points[points.length - 1].value : null;
  head.append(Object.assign(document.createElement("span"), { textContent: title }));
  head.append(Object.assign(document.createElement("span"), { textContent: formatNumber(last) + unit }));
  box.append(head);
  const width = 300, height = 90;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  if (points.length < 2) {
    const note = document.createElementNS(SVG, "text");
    note.setAttribute("x", 6);
    note.setAttribute("y", height / 2);
    note.setAttribute("fill", "#66707c");
    note.setAttribute("font-size", "12");
    note.textContent = "collecting samples…";
    svg.append(note);
  } else {
    const t0 = points[0].time, t1 = points[points.length - 1].time;
    const top = Math.max(...points.map((p) => p.value), 1);
    const x = (t) => ((t - t0) / (t1 - t0 || 1)) * (width - 4) + 2;
    const y = (v) => height - 4 - (v / top) * (height - 12);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#1f6feb");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    line.setAttribute("points", points.map((p) => `${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "));
    line.dataset.last = String(last);
    svg.append(line);
  }
  box.append(svg);
  return box;
}
