// How a console gets onto the page. Gradio renders each tab's gr.HTML container after the page's modules have run,
// and may render it again (a fresh element); so each console polls for its container by id, builds itself into
// every new one, and hears when its tab is shown or hidden.

/** Whether the console's container is built and on screen (its tab is the selected one). */
export function showing(id) {
  const root = document.getElementById(id);
  return !!(root && root.dataset.ready && root.offsetParent !== null);
}

/**
 * Build the console into `#id` whenever Gradio renders one, and call `shown` / `hidden` when its tab comes and goes.
 * @param {string} id the container's id (the gr.HTML in webapp/ui.py)
 * @param {{build: (root: HTMLElement) => void, shown?: () => void, hidden?: () => void}} hooks
 */
export function mount(id, { build, shown = () => {}, hidden = () => {} }, everyMs = 250) {
  let wasShowing = false;
  const check = () => {
    const root = document.getElementById(id);
    if (root && !root.dataset.ready) {
      root.textContent = "";
      root.dataset.ready = "1";
      build(root);
      wasShowing = false; // a new container: a shown tab counts as newly shown
    }
    const now = showing(id);
    if (now !== wasShowing) (now ? shown : hidden)();
    wasShowing = now;
  };
  check();
  setInterval(check, everyMs);
}
