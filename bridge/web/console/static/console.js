// The console's only script: a bulk replay's page follows its progress by itself. Every page
// works without it (the progress page then refreshes itself through <noscript>).
"use strict";

(function () {
  const panel = document.querySelector("[data-progress-url]");
  if (!panel) return;
  const url = panel.getAttribute("data-progress-url");
  const done = panel.querySelector("[data-done]");
  const total = panel.querySelector("[data-total]");
  const bar = panel.querySelector("progress");
  const state = panel.querySelector("[data-state]");
  const outcomes = panel.querySelector("[data-outcomes]");

  function show(progress) {
    done.textContent = String(progress.done);
    total.textContent = String(progress.total);
    bar.max = Math.max(progress.total, 1);
    bar.value = progress.done;
    bar.textContent = progress.done + " / " + progress.total;
    state.textContent = progress.finished ? "Finished." : "Replaying…";
    outcomes.replaceChildren();
    for (const [word, count] of Object.entries(progress.outcomes)) {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "outcome outcome-" + word.replace(/[^a-z_]/g, "");
      label.textContent = word;
      item.append(label, " " + count);
      outcomes.append(item);
    }
  }

  async function poll() {
    try {
      const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (answer.ok) {
        const progress = await answer.json();
        show(progress);
        if (progress.finished) return;
      }
    } catch (error) {
      // A dropped request is tried again on the next tick.
    }
    window.setTimeout(poll, 700);
  }

  window.setTimeout(poll, 300);
})();
