// imageport console: upload a file from the browser straight to the bucket API, in parts.
//
// The console's JSON routes start the multipart upload, hand out a presigned URL per part
// (signed for the part's SHA-256, so it uploads those bytes only), list the parts already on
// the server and complete the upload; the bytes themselves go to the bucket API, four parts at
// a time. Resumable: the upload id is remembered in localStorage per (bucket, key, file size,
// file lastModified), and when the same file is chosen again only the parts the server does not
// hold with the planned size are sent. No framework, no build step.
"use strict";
(function () {
  const root = document.getElementById("upload");
  if (!root) return;
  const { api, bytes } = window.imageport;
  const $ = (id) => document.getElementById(id);
  const texts = $("upload-texts").dataset;
  const form = $("upload-form");
  const fileInput = $("upload-file");
  const keyInput = $("upload-key");
  const bitmapInput = $("upload-bitmap");
  const bitmapKeyText = $("upload-bitmap-key");
  const partInput = $("upload-part-size");
  const buttons = {
    start: $("upload-start"), pause: $("upload-pause"),
    resume: $("upload-resume"), abort: $("upload-abort"),
  };
  const bar = $("upload-progress");
  const progressText = $("upload-progress-text");
  const statusLine = $("upload-status");
  const errorLine = $("upload-error");
  const doneLinks = $("upload-done");
  const bucket = root.dataset.bucket;
  const routes = root.dataset.routes;
  const prefix = root.dataset.prefix || "";

  const PARALLEL = 4;
  const BACKOFF_SECONDS = [1, 2, 4, 8, 16, 30];
  const STORE = "imageport.uploads.v1";
  const KEEP_MS = 7 * 24 * 3600 * 1000;
  const MiB = 1024 * 1024;
  const PAUSED = "paused";

  const say = (template, fields) =>
    template.replace(/\{(\w+)\}/g, (whole, name) => (fields && name in fields ? String(fields[name]) : whole));
  const status = (text) => { statusLine.textContent = text; };
  const complain = (text) => { errorLine.textContent = text; };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // -- uploads remembered in this browser ----------------------------------------------------
  function records() {
    try {
      const all = JSON.parse(localStorage.getItem(STORE) || "{}");
      return all && typeof all === "object" ? all : {};
    } catch (e) { return {}; }
  }
  function store(all) {
    try { localStorage.setItem(STORE, JSON.stringify(all)); } catch (e) { /* no storage: no resume after a reload */ }
  }
  const recordId = (key, file) => JSON.stringify([bucket, key, file.size, file.lastModified]);
  const recall = (key, file) => records()[recordId(key, file)] || null;
  function remember(key, file, value) {
    const all = records();
    const oldest = Date.now() - KEEP_MS;
    for (const [id, entry] of Object.entries(all)) if (!entry || !(entry.at > oldest)) delete all[id];
    all[recordId(key, file)] = { ...value, at: Date.now(), size: file.size };
    store(all);
  }
  function forget(key, file) { const all = records(); delete all[recordId(key, file)]; store(all); }

  // -- the bitmap's key: as src/imageport/fastimport/naming.py (the server decides; this shows it)
  function bitmapKeyFor(key) {
    const slash = key.lastIndexOf("/");
    const name = key.slice(slash + 1);
    if (!name || name.toLowerCase().endsWith(".mf")) return "";
    const dot = name.lastIndexOf(".");
    const hasExtension = dot > 0 && /[^.]/.test(name.slice(0, dot));
    return (hasExtension ? key.slice(0, slash + 1 + dot) : key) + ".mf";
  }

  // -- SHA-256: WebCrypto where the page is a secure context, else this (plain HTTP hosts) -----
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  function sha256Script(data) {
    const H = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const W = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    function block(b, at) {
      for (let i = 0; i < 16; i++) {
        const j = at + 4 * i;
        W[i] = (b[j] << 24) | (b[j + 1] << 16) | (b[j + 2] << 8) | b[j + 3];
      }
      for (let i = 16; i < 64; i++) {
        const x = W[i - 15], y = W[i - 2];
        const s0 = rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3);
        const s1 = rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }
      let a = H[0], b2 = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
      for (let i = 0; i < 64; i++) {
        const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b2) ^ (a & c) ^ (b2 & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b2; b2 = a; a = (t1 + t2) | 0;
      }
      H[0] += a; H[1] += b2; H[2] += c; H[3] += d; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    }
    const whole = data.length - (data.length % 64);
    for (let at = 0; at < whole; at += 64) block(data, at);
    const rest = data.length - whole;
    const tail = new Uint8Array(rest + 9 > 64 ? 128 : 64);
    tail.set(data.subarray(whole));
    tail[rest] = 0x80;
    const bits = data.length * 8;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(tail.length - 4, bits >>> 0);
    for (let at = 0; at < tail.length; at += 64) block(tail, at);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(4 * i, H[i]);
    return out;
  }
  async function sha256(buffer) {
    if (window.crypto && window.crypto.subtle) {
      return new Uint8Array(await window.crypto.subtle.digest("SHA-256", buffer));
    }
    return sha256Script(new Uint8Array(buffer));
  }
  function base64(data) {
    let text = "";
    for (let i = 0; i < data.length; i++) text += String.fromCharCode(data[i]);
    return btoa(text);
  }
  window.imageport.sha256Script = (text) => base64(sha256Script(new TextEncoder().encode(text)));

  // -- one file's upload ---------------------------------------------------------------------
  function plan(size, partSize) {
    if (size === 0) return [{ number: 1, offset: 0, size: 0 }];
    const parts = [];
    for (let offset = 0, number = 1; offset < size; offset += partSize, number++) {
      parts.push({ number, offset, size: Math.min(partSize, size - offset) });
    }
    return parts;
  }

  function newJob(file, key, forImage) {
    return {
      file, key, forImage, uploadId: "", partSize: 0, parts: [], held: new Set(), queue: [],
      inflight: new Map(), doneBytes: 0, sentBytes: 0, samples: [], paused: false, error: null,
      shownAt: 0,
    };
  }

  const partsRoute = (job, what) => `${routes}/${encodeURIComponent(job.uploadId)}/${what}`;

  function reasonOf(error) {
    if (!error) return "";
    if (error.code) return error.code + (error.message ? ": " + error.message : "");
    return error.message || String(error);
  }

  async function listHeld(job) {
    const answer = await patient(job, () =>
      api(partsRoute(job, "parts") + "?key=" + encodeURIComponent(job.key)));
    return answer.parts;
  }

  // A console request that outlasts a dropped connection: retried (waiting for the browser to
  // be online again) while the failure is the network's or the server's, not a refusal.
  async function patient(job, request) {
    for (let attempt = 0; ; attempt++) {
      if (job.paused) throw new Error(PAUSED);
      await waitOnline(job);
      try {
        return await request();
      } catch (error) {
        if (job.paused) throw new Error(PAUSED);
        if (!retryable(error) || attempt >= BACKOFF_SECONDS.length) throw error;
        await pauseable(job, BACKOFF_SECONDS[attempt] * 1000);
      }
    }
  }

  // Start the upload, or take over the one remembered for this file; plan its parts and note
  // those the server already holds with the planned size (any other is sent again).
  async function prepare(job) {
    let held = [];
    const remembered = recall(job.key, job.file);
    if (remembered && !job.uploadId) {
      job.uploadId = remembered.uploadId;
      job.partSize = remembered.partSize;
    }
    if (job.uploadId) {
      try {
        held = await listHeld(job);
      } catch (error) {
        if (error.code !== "NoSuchUpload") throw error;
        forget(job.key, job.file);
        job.uploadId = "";
      }
    }
    if (!job.uploadId) {
      status(texts.starting);
      const body = { size: job.file.size, part_size: Math.round(Number(partInput.value) || 16) * MiB };
      if (job.forImage) body.for_image = job.forImage; else body.key = job.key;
      const started = await patient(job, () => api(routes, { method: "POST", body }));
      job.uploadId = started.upload_id;
      job.key = started.key;
      job.partSize = started.part_size;
      remember(job.key, job.file, { uploadId: job.uploadId, partSize: job.partSize });
    }
    job.parts = plan(job.file.size, job.partSize);
    const planned = new Map(job.parts.map((part) => [part.number, part.size]));
    job.held = new Set(held.filter((p) => planned.get(p.number) === p.size).map((p) => p.number));
    job.doneBytes = job.parts.filter((p) => job.held.has(p.number)).reduce((sum, p) => sum + p.size, 0);
    job.queue = job.parts.filter((part) => !job.held.has(part.number));
    const total = job.parts.length;
    if (job.held.size) {
      status(say(texts.resuming, { done: job.held.size, total, left: total - job.held.size }));
    } else if (job.forImage) {
      status(say(texts.bitmap, { key: job.key }));
    } else {
      status(say(texts.uploading, { key: job.key, total }));
    }
    show(job, true);
  }

  function s3Error(xhr) {
    const text = xhr.responseText || "";
    const code = (/<Code>([^<]*)<\/Code>/.exec(text) || [])[1] || String(xhr.status);
    const message = (/<Message>([^<]*)<\/Message>/.exec(text) || [])[1] || "";
    const error = new Error(code + (message ? ": " + message : ""));
    error.code = code;
    error.status = xhr.status;
    return error;
  }

  function put(job, part, url, body, digest) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      const flight = { xhr, loaded: 0 };
      job.inflight.set(part.number, flight);
      const land = () => { job.inflight.delete(part.number); };
      xhr.open("PUT", url);
      xhr.setRequestHeader("x-amz-checksum-sha256", digest);
      xhr.upload.onprogress = (event) => {
        job.sentBytes += event.loaded - flight.loaded;
        flight.loaded = event.loaded;
        show(job, false);
      };
      xhr.onload = () => {
        land();
        if (xhr.status === 200) resolve(); else reject(s3Error(xhr));
      };
      xhr.onerror = () => { land(); reject(new Error("the connection failed")); };
      xhr.onabort = () => { land(); reject(new Error(PAUSED)); };
      xhr.send(body);
    });
  }

  function retryable(error) {
    if (!error.status) return true; // the network: the connection dropped or was refused
    return error.status >= 500 || error.status === 408 || error.status === 429 ||
      error.code === "AccessDenied" || error.code === "RequestTimeTooSkewed";
  }

  async function waitOnline(job) {
    if (navigator.onLine !== false) return;
    status(texts.offline);
    while (navigator.onLine === false && !job.paused) await sleep(500);
  }

  async function pauseable(job, ms) {
    const until = Date.now() + ms;
    while (Date.now() < until && !job.paused) await sleep(Math.min(250, until - Date.now()));
  }

  async function sendPart(job, part) {
    // Hashed from a copy in memory, sent as the file's own slice: Chromium streams a Blob
    // body from the file, while an ArrayBuffer body is copied across slowly (16 MiB: 0.3 s
    // against 3 s measured on loopback).
    const slice = job.file.slice(part.offset, part.offset + part.size);
    const digest = base64(await sha256(await slice.arrayBuffer()));
    for (let attempt = 0; ; attempt++) {
      if (job.paused) throw new Error(PAUSED);
      await waitOnline(job);
      try {
        const answer = await api(partsRoute(job, "urls"), {
          method: "POST", body: { key: job.key, parts: [{ number: part.number, sha256: digest }] },
        });
        await put(job, part, answer.urls[String(part.number)], slice, digest);
        return;
      } catch (error) {
        // paused, or another part failed for good (its worker stopped the others)
        if (job.paused || job.error || error.message === PAUSED) throw new Error(PAUSED);
        if (!retryable(error) || attempt >= BACKOFF_SECONDS.length) throw error;
        const seconds = BACKOFF_SECONDS[attempt];
        status(say(texts.retrying, { number: part.number, reason: reasonOf(error), seconds }));
        await pauseable(job, seconds * 1000);
      }
    }
  }

  async function worker(job) {
    while (!job.paused && !job.error && job.queue.length) {
      const part = job.queue.shift();
      try {
        await sendPart(job, part);
        job.held.add(part.number);
        job.doneBytes += part.size;
        show(job, false);
      } catch (error) {
        if (job.paused || job.error) return;
        job.error = error;
        stopFlights(job);
        return;
      }
    }
  }

  async function sendAll(job) {
    job.error = null;
    const workers = [];
    for (let i = 0; i < Math.min(PARALLEL, job.queue.length); i++) workers.push(worker(job));
    await Promise.all(workers);
    if (job.error) throw job.error;
  }

  async function complete(job) {
    for (let round = 0; ; round++) {
      try {
        return await patient(job, () => api(partsRoute(job, "complete"), {
          method: "POST", body: { key: job.key, size: job.file.size, part_size: job.partSize },
        }));
      } catch (error) {
        // a part the server lacks (or holds with another size): send it again, once
        if (error.code !== "InvalidPart" || round > 0) throw error;
        await prepare(job);
        await sendAll(job);
        if (job.paused) throw new Error(PAUSED);
      }
    }
  }

  function stopFlights(job) {
    for (const flight of job.inflight.values()) flight.xhr.abort();
  }

  // -- progress ------------------------------------------------------------------------------
  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return say(texts.seconds, { s });
    if (s < 3600) return say(texts.minutes, { m: Math.floor(s / 60), s: s % 60 });
    return say(texts.hours, { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  }

  function show(job, now) {
    const stamp = Date.now();
    job.samples.push([stamp, job.sentBytes]);
    while (job.samples.length > 2 && stamp - job.samples[0][0] > 10000) job.samples.shift();
    if (!now && stamp - job.shownAt < 1000) return;
    job.shownAt = stamp;
    let flying = 0;
    for (const flight of job.inflight.values()) flying += flight.loaded;
    const total = job.file.size;
    const sent = Math.min(total, job.doneBytes + flying);
    const percent = total ? Math.floor((100 * sent) / total) : (job.held.size ? 100 : 0);
    bar.value = percent;
    bar.textContent = percent + "%";
    const [first, last] = [job.samples[0], job.samples[job.samples.length - 1]];
    const seconds = (last[0] - first[0]) / 1000;
    const fields = { sent: bytes(sent), total: bytes(total), percent };
    if (seconds >= 1 && last[1] > first[1] && !job.paused) {
      const speed = (last[1] - first[1]) / seconds;
      fields.speed = bytes(Math.round(speed));
      fields.left = duration((total - sent) / speed);
      progressText.textContent = say(texts.progress, fields);
    } else {
      progressText.textContent = say(texts.progressShort, fields);
    }
  }

  // -- the page's controls -------------------------------------------------------------------
  let job = null;
  let imageResult = null;

  function mode(name) {
    const running = name === "running";
    buttons.start.disabled = running;
    buttons.pause.disabled = !running;
    buttons.resume.disabled = name !== "paused";
    buttons.abort.disabled = !(running || name === "paused");
    for (const input of [fileInput, keyInput, bitmapInput, partInput]) input.disabled = running;
  }

  async function run() {
    const current = job;
    current.paused = false;
    complain("");
    mode("running");
    const ticking = setInterval(() => show(current, true), 1000); // time left counts down
    try {
      await prepare(current);
      await sendAll(current);
      if (current.paused) return;
      status(texts.completing);
      const result = await complete(current);
      forget(current.key, current.file);
      show(current, true);
      if (!current.forImage) {
        imageResult = result;
        const bitmap = bitmapInput.files[0];
        if (bitmap) {
          job = newJob(bitmap, bitmapKeyFor(result.key), result.key);
          return run();
        }
        status(say(texts.done, { key: result.key, size: result.size_text }));
      } else {
        status(say(texts.bitmapDone, {
          key: imageResult.key, size: imageResult.size_text, bitmap: result.key,
        }));
      }
      finished(imageResult);
    } catch (error) {
      if (current.paused || error.message === PAUSED) return;
      stopFlights(current);
      current.paused = true;
      mode("paused");
      complain(say(texts.failed, { reason: reasonOf(error) }));
      if (error.code === "NoSuchUpload") forget(current.key, current.file);
    } finally {
      clearInterval(ticking);
    }
  }

  function finished(result) {
    $("upload-link-bucket").href = result.bucket;
    $("upload-link-check").href = result.check;
    $("upload-link-register").href = result.register;
    doneLinks.hidden = false;
    mode("idle");
    listInterrupted();
  }

  function chosenKey() {
    const file = fileInput.files[0];
    return keyInput.value.trim() || (file ? prefix + file.name : "");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files[0];
    if (!file) { status(texts.needFile); fileInput.focus(); return; }
    doneLinks.hidden = true;
    imageResult = null;
    job = newJob(file, chosenKey(), "");
    run();
  });

  buttons.pause.addEventListener("click", () => {
    if (!job) return;
    job.paused = true;
    stopFlights(job);
    mode("paused");
    status(say(texts.paused, { done: job.held.size, total: job.parts.length }));
    show(job, true);
    buttons.resume.focus();
  });

  buttons.resume.addEventListener("click", () => { if (job) run(); });

  buttons.abort.addEventListener("click", async () => {
    if (!job || !job.uploadId) return;
    if (!window.confirm(say(texts.confirmAbort, { key: job.key }))) return;
    const current = job;
    current.paused = true;
    stopFlights(current);
    try {
      await api(partsRoute(current, "abort"), { method: "POST", body: { key: current.key } });
    } catch (error) {
      if (error.code !== "NoSuchUpload") { complain(say(texts.failed, { reason: reasonOf(error) })); return; }
    }
    forget(current.key, current.file);
    job = null;
    mode("idle");
    bar.value = 0;
    progressText.textContent = "";
    status(texts.aborted);
    listInterrupted();
  });

  // Choosing a file: propose its key, and say whether an earlier upload of it can be resumed.
  let keyEdited = false;
  keyInput.addEventListener("input", () => { keyEdited = true; showBitmapKey(); });
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files[0];
    if (!file) return;
    if (!keyEdited) keyInput.value = prefix + file.name;
    showBitmapKey();
    complain("");
    const remembered = recall(chosenKey(), file);
    if (!remembered) { status(texts.ready); return; }
    status(texts.checking);
    const probe = newJob(file, chosenKey(), "");
    probe.uploadId = remembered.uploadId;
    try {
      const held = await listHeld(probe);
      const planned = new Map(plan(file.size, remembered.partSize).map((p) => [p.number, p.size]));
      const done = held.filter((p) => planned.get(p.number) === p.size).length;
      status(say(texts.resumable, { done, total: planned.size }));
    } catch (error) {
      if (error.code === "NoSuchUpload") forget(chosenKey(), file);
      status(texts.ready);
    }
  });

  function showBitmapKey() {
    const key = bitmapKeyFor(chosenKey());
    bitmapKeyText.textContent = bitmapInput.files[0] && key ? say(texts.bitmapKey, { key }) : "";
  }
  bitmapInput.addEventListener("change", showBitmapKey);

  function listInterrupted() {
    const list = $("upload-interrupted");
    list.replaceChildren();
    for (const [id, entry] of Object.entries(records())) {
      let named;
      try { named = JSON.parse(id); } catch (e) { continue; }
      if (!Array.isArray(named) || named[0] !== bucket || !entry) continue;
      const item = document.createElement("li");
      item.textContent = say(texts.interrupted, { key: named[1], size: bytes(Number(named[2]) || 0) });
      list.append(item);
    }
  }

  mode("idle");
  listInterrupted();
})();
