// imageport console, images area: the live progress of jobs on the images list and the image
// page. It reads the console's JSON routes (the documents of GET /v1/cloudimages/job/{id} and
// GET /v2/images/{id}) every few seconds while a job runs, and stops when every job it watches
// has ended. No framework, no build step.
"use strict";
(function () {
  const table = document.querySelector("table[data-poll-ms]");
  if (!table || !window.imageport) return;
  const texts = JSON.parse(table.dataset.texts || "{}");
  const jobUrl = table.dataset.jobUrl;
  const imageUrl = table.dataset.imageUrl;
  const onImagePage = table.dataset.page === "image";
  // the interval is the server's, kept within 1-10 s; after failed reads it doubles, up to 10x
  const base = Math.min(10000, Math.max(1000, Number(table.dataset.pollMs) || 1500));
  const MAX_WATCHED = 50;
  const MAX_FAILURES = 10;
  const live = document.getElementById("images-live");

  let watched = Array.from(table.querySelectorAll(".job-progress[data-job-id]"))
    .filter((el) => el.dataset.ended !== "true")
    .slice(0, MAX_WATCHED);
  let failures = 0;
  const phases = new Map();

  function fill(template, fields) {
    return String(template || "").replace(/\{(\w+)\}/g, (whole, key) =>
      Object.prototype.hasOwnProperty.call(fields, key) ? String(fields[key]) : whole);
  }

  function announce(text) {
    if (live) live.textContent = text;
  }

  // The same text as image_models.progress_text on the server.
  function progress(doc) {
    const e = (doc && doc.entities) || {};
    const phase = (texts.phases && texts.phases[e.current_task]) || e.current_task || texts.none;
    const fraction = Number(e.process_percent) || 0;
    const percent = Math.max(0, Math.min(100, Math.floor(fraction * 100)));
    const done = e.bytes_done, total = e.bytes_total;
    if (Number.isInteger(total) && total > 0 && Number.isInteger(done)) {
      const bytes = window.imageport.bytes;
      return { phase, percent, text: fill(texts.bytes, { phase, percent, done: bytes(done), total: bytes(total) }) };
    }
    return { phase, percent, text: fill(texts.percent, { phase, percent }) };
  }

  function show(el, doc) {
    const now = progress(doc);
    const bar = el.querySelector("progress");
    if (bar) {
      bar.value = now.percent;
      bar.textContent = now.percent + " %";
    }
    const text = el.querySelector("[data-job-text]");
    if (text) text.textContent = now.text;
    const row = el.closest("tr");
    const status = row && row.querySelector("[data-job-status]");
    if (status && doc.status) {
      status.textContent = (texts.job_statuses && texts.job_statuses[doc.status]) || doc.status;
      status.className = "status status-" + doc.status;
    }
    if (phases.get(el) !== now.phase) {
      phases.set(el, now.phase);
      announce(fill(texts.now, { name: el.dataset.imageName || "", text: now.text }));
    }
  }

  async function ended(el) {
    el.dataset.ended = "true";
    let image = null;
    try {
      image = await window.imageport.api(imageUrl + encodeURIComponent(el.dataset.imageId) + "/document");
    } catch (err) {
      image = null;  // the image may be gone (a failed copy's source, a deleted image)
    }
    const scope = onImagePage ? document : el.closest("tr");
    const badge = scope && scope.querySelector("[data-image-status]");
    if (image && badge) {
      badge.textContent = (texts.statuses && texts.statuses[image.status]) || image.status;
      badge.className = "status status-" + image.status;
      announce(fill(texts.ended, { name: el.dataset.imageName || image.name, status: badge.textContent }));
    }
    if (onImagePage) {
      const notice = document.getElementById("jobs-ended");
      if (notice) notice.hidden = false;
    } else if (image && image.status !== "queued" && image.status !== "saving") {
      el.remove();
    }
  }

  async function tick() {
    const still = [];
    let failed = false;
    for (const el of watched) {
      try {
        const doc = await window.imageport.api(jobUrl + encodeURIComponent(el.dataset.jobId));
        show(el, doc);
        if (doc.status === "SUCCESS" || doc.status === "FAIL") {
          await ended(el);
        } else {
          still.push(el);
        }
      } catch (err) {
        failed = true;
        // a job that is gone (404) or a session that ended (401) will not come back
        if (err.status !== 404 && err.status !== 401) still.push(el);
        if (err.status === 401 || failures + 1 >= MAX_FAILURES) {
          announce(fill(texts.lost, { code: err.code || err.status || "" }));
        }
      }
    }
    failures = failed ? failures + 1 : 0;
    watched = still;
    if (!watched.length || failures >= MAX_FAILURES) return;
    const delay = failures ? Math.min(base * 10, base * 2 ** failures) : base;
    window.setTimeout(tick, delay);
  }

  if (watched.length) window.setTimeout(tick, base);
})();
