// plotly.js for the consoles that chart (Train, Models): served offline by the app from /vendor, loaded as a classic
// script (UMD, it sets window.Plotly) the first time a chart is drawn, so tabs that never chart never pay for it.

const PLOTLY_URL = "/vendor/plotly/plotly.min.js";
let loading = null;

/** window.Plotly, loading the script once (a failed load may be tried again). */
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  loading ??= new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = PLOTLY_URL;
    s.onload = () => resolve(window.Plotly);
    s.onerror = () => { loading = null; s.remove(); reject(new Error(`could not load ${PLOTLY_URL}`)); };
    document.head.append(s);
  });
  return loading;
}
