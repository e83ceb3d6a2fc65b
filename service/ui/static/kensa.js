// Kensa's operator page: Live, Review, Inspect, History, Yield and Model over the same /v1 API as
// any client.
// Plain JavaScript, no library and no build step. Every text that came from a client is put
// into the page with textContent (never innerHTML), so it shows as text and never runs.
"use strict";

const PAGE_HEADER = document.currentScript.dataset.pageHeader;
const $ = (id) => document.getElementById(id);

// Every call carries the page header: with KENSA_API_KEYS set the key travels in the HttpOnly
// cookie, and the server takes it for a state-changing call only when this header is there.
async function api(path, options = {}) {
  const headers = Object.assign({ [PAGE_HEADER]: "1" }, options.headers || {});
  const r = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (r.status === 401 && $("login") === null) { location.reload(); }
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${r.status}: ${detail}`);
  }
  return r;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c === null || c === undefined ? "" : c);
  return node;
}

const fmt = (x) => Number(x).toPrecision(3);
const when = (iso) => new Date(iso).toLocaleString();
const overlayUrl = (id) => `/v1/inspections/${encodeURIComponent(id)}/overlay`;
// Live's cards show a thumbnail, drawn by the server while a page is open and sent inline
// (refreshLive); Review and History show the full overlay, which the browser keeps and
// revalidates with its ETag.
const thumbUrl = (id) => `${overlayUrl(id)}?size=thumb`;
const imageUrl = (id) => `/v1/inspections/${encodeURIComponent(id)}/image`;

function verdict(rec) {
  return el("span", { class: `label ${rec.label}` }, rec.label);
}

function picture(rec, url) {
  return rec.image_kept === false ? el("div", { class: "no-image" }, "image not kept")
    : el("img", { src: url, alt: "overlay", loading: "lazy" });
}

// A Live card; b64: its thumbnail inline, if the server sent it (else it loads by URL).
function card(rec, b64) {
  const review = rec.review ? `reviewed: ${rec.review.label}` : "";
  return el("article", { class: `card ${rec.label}`, "data-id": rec.id },
    picture(rec, b64 ? `data:image/jpeg;base64,${b64}` : thumbUrl(rec.id)),
    el("div", {}, verdict(rec), " ", el("span", { class: "score" },
      `${fmt(rec.score)} / ${fmt(rec.threshold)}`)),
    el("div", { class: "source" }, rec.source || "—"),
    el("div", { class: "part" }, rec.part_id || ""),
    el("div", { class: "muted" }, when(rec.created_at), " ", review));
}

// ---- Live: the newest records and their thumbnails, one request every 1.5 s
// (GET /v1/inspections/live: the server shares one answer among all open pages for up to
// KENSA_LIVE_MAX_AGE_S, and the browser revalidates it with its ETag). Each card is built
// once and kept; a thumbnail the server did not hold loads by URL, once.
const live = { cards: new Map(), timer: null };

async function refreshLive() {
  const form = new FormData($("live-filters"));
  const q = new URLSearchParams({ limit: "24" });
  for (const name of ["source", "label"]) if (form.get(name)) q.set(name, form.get(name));
  try {
    const page = await (await api(`/v1/inspections/live?${q}`)).json();
    const grid = $("live-grid");
    const keep = [];
    for (const rec of page.items) {
      const key = `${rec.id}:${rec.review ? rec.review.at : ""}`;
      if (!live.cards.has(key)) live.cards.set(key, card(rec, page.thumbnails[rec.id]));
      keep.push(live.cards.get(key));
    }
    grid.replaceChildren(...keep);
    for (const key of live.cards.keys()) {
      if (!keep.includes(live.cards.get(key))) live.cards.delete(key);
    }
    $("live-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("live-status").textContent = e.message;
  }
}

// ---- Review: unreviewed abnormal parts and the normal ones closest to the threshold.
const NEAR = 0.8; // a normal part scoring at least this share of its threshold is queued
const queue = { items: [], at: 0, done: [], defects: [], drag: null, box: null, keep: false };

async function loadQueue() {
  const [abnormal, normal] = await Promise.all([
    api("/v1/inspections?reviewed=false&label=abnormal&limit=200").then((r) => r.json()),
    api("/v1/inspections?reviewed=false&label=normal&limit=200").then((r) => r.json())]);
  const near = normal.items.filter((r) => r.score >= NEAR * r.threshold);
  queue.items = abnormal.items.concat(near);
  queue.at = 0;
  showItem();
}

function leftCount() {
  const left = queue.items.filter((r) => !r.review).length;
  $("review-left").textContent = left ? `(${left})` : "";
  return left;
}

function showItem() {
  const rec = queue.items[queue.at];
  const left = leftCount();
  $("review-empty").hidden = rec !== undefined;
  $("review-box").hidden = true;
  queue.box = null;
  $("review-note").value = "";
  $("review-info").dataset.id = rec ? rec.id : "";
  if (rec === undefined) {
    $("review-info").replaceChildren();
    $("review-image").removeAttribute("src");
    $("review-overlay").removeAttribute("src");
    return;
  }
  $("review-info").replaceChildren(
    `${queue.at + 1} of ${queue.items.length} (${left} left) `, verdict(rec),
    ` score ${fmt(rec.score)} / ${fmt(rec.threshold)} · `,
    el("span", { class: "source" }, rec.source || "no source"), " · ",
    el("span", { class: "part" }, rec.part_id || "no part id"), ` · ${when(rec.created_at)}`,
    rec.review ? el("strong", {}, ` · reviewed: ${rec.review.label}`) : "");
  for (const [img, url] of [["review-image", imageUrl], ["review-overlay", overlayUrl]]) {
    if (rec.image_kept) $(img).src = url(rec.id); else $(img).removeAttribute("src");
  }
}

function setDefects(names) {
  queue.defects = names.slice(0, 9);
  $("defect-keys").replaceChildren(...queue.defects.map((d, i) =>
    el("span", {}, el("kbd", {}, String(i + 1)), " ", el("span", { class: "defect-name" }, d), " ")));
}

async function decide(label) {
  const rec = queue.items[queue.at];
  if (rec === undefined) return;
  const body = { label };
  const note = $("review-note").value.trim();
  if (note) body.note = note;
  if (queue.box) body.regions = [queue.box];
  try {
    const r = await api(`/v1/inspections/${encodeURIComponent(rec.id)}/review`, {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    queue.done.push({ at: queue.at, before: rec.review });
    queue.items[queue.at] = await r.json();
    $("review-status").textContent = `stored: ${label}`;
    if (label !== "good" && !queue.defects.includes(label) && queue.defects.length < 9) {
      setDefects(queue.defects.concat([label]));
    }
    move(1);
  } catch (e) {
    $("review-status").textContent = e.message;
  }
}

// Undo goes back to the last decision; where that record had an earlier review, it is put
// back (the API keeps every review; the newest one counts).
async function undo() {
  const last = queue.done.pop();
  if (last === undefined) return;
  queue.at = last.at;
  const rec = queue.items[last.at];
  if (last.before) {
    const r = await api(`/v1/inspections/${encodeURIComponent(rec.id)}/review`, {
      method: "PUT", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ label: last.before.label, note: last.before.note,
        regions: last.before.regions }) });
    queue.items[last.at] = await r.json();
    $("review-status").textContent = `undone: back to ${last.before.label}`;
  } else {
    $("review-status").textContent = "undone: back here; decide again to replace it";
  }
  showItem();
}

function move(step) {
  queue.at = Math.max(0, Math.min(queue.items.length, queue.at + step));
  showItem();
}

function onKey(event) {
  if (location.hash !== "#review" || event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (typing) {
    if (event.key === "Escape") document.activeElement.blur();
    return;
  }
  const k = event.key.toLowerCase();
  if (k === "g") decide("good");
  else if (k === "n") move(1);
  else if (k === "p") move(-1);
  else if (k === "u") undo();
  else if (/^[1-9]$/.test(k) && queue.defects[Number(k) - 1]) decide(queue.defects[Number(k) - 1]);
  else return;
  event.preventDefault();
}

// A mouse drag on the upload marks a box, kept in the image's own pixels. The picture is
// drawn with object-fit: contain, so it sits centred in its box at one scale.
function imagePoint(event) {
  const img = $("review-image");
  const r = img.getBoundingClientRect();
  const nw = img.naturalWidth, nh = img.naturalHeight;
  const s = Math.min(r.width / nw, r.height / nh);
  const ox = (r.width - nw * s) / 2, oy = (r.height - nh * s) / 2;
  const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
  return { x: clamp((event.clientX - r.left - ox) / s, nw),
    y: clamp((event.clientY - r.top - oy) / s, nh), s, ox, oy };
}

function setupDrawing() {
  const img = $("review-image"), box = $("review-box");
  img.addEventListener("dragstart", (e) => e.preventDefault());
  img.addEventListener("mousedown", (e) => { if (img.naturalWidth) queue.drag = imagePoint(e); });
  window.addEventListener("mousemove", (e) => {
    if (!queue.drag) return;
    const p = imagePoint(e), d = queue.drag;
    const x = Math.min(d.x, p.x), y = Math.min(d.y, p.y);
    const w = Math.abs(p.x - d.x), h = Math.abs(p.y - d.y);
    Object.assign(box.style, { left: `${p.ox + x * p.s}px`, top: `${p.oy + y * p.s}px`,
      width: `${w * p.s}px`, height: `${h * p.s}px` });
    box.hidden = false;
    const x0 = Math.floor(x), y0 = Math.floor(y);
    queue.box = w >= 1 && h >= 1 ? [x0, y0, Math.max(1, Math.min(Math.round(w), img.naturalWidth - x0)),
      Math.max(1, Math.min(Math.round(h), img.naturalHeight - y0))] : null;
  });
  window.addEventListener("mouseup", () => { queue.drag = null; });
}

// ---- Inspect: drop images, see each verdict and overlay at once.
async function inspectFiles(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    const slot = el("article", { class: "card" }, el("div", { class: "muted" }, file.name));
    $("inspect-results").prepend(slot);
    try {
      const rec = await (await api("/v1/inspect?include=overlay", { method: "POST", body: form })).json();
      slot.className = `card ${rec.label}`;
      slot.dataset.id = rec.id;
      slot.replaceChildren(el("img", { src: `data:image/jpeg;base64,${rec.overlay}`, alt: "overlay" }),
        el("div", {}, verdict(rec), " ", el("span", { class: "score" },
          `${fmt(rec.score)} / ${fmt(rec.threshold)}`)),
        el("div", { class: "muted" }, file.name, ` · ${rec.defects.length} defect region(s)`));
    } catch (e) {
      slot.append(el("div", { class: "error" }, e.message));
    }
  }
}

function setupInspect() {
  const drop = $("drop");
  $("inspect-files").addEventListener("change", (e) => inspectFiles([...e.target.files]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    inspectFiles([...e.dataTransfer.files]);
  });
}

// ---- History: the record filters of GET /v1/inspections, pages by cursor, a CSV link with
// the same filters; a row opens in the review view (and can be reviewed there).
const past = { items: [], next: null };

function historyQuery() {
  const q = new URLSearchParams();
  for (const [name, value] of new FormData($("history-filters"))) {
    if (!value) continue;
    q.set(name, ["since", "until"].includes(name) ? new Date(value).toISOString() : value);
  }
  return q;
}

function historyRow(rec, index) {
  const row = el("tr", { "data-id": rec.id, tabindex: "0" },
    el("td", {}, when(rec.created_at)), el("td", {}, verdict(rec)),
    el("td", { class: "score" }, `${fmt(rec.score)} / ${fmt(rec.threshold)}`),
    el("td", { class: "source" }, rec.source || ""), el("td", { class: "part" }, rec.part_id || ""),
    el("td", {}, rec.review ? rec.review.label : ""), el("td", { class: "muted" }, rec.model_version.slice(0, 12)));
  row.addEventListener("click", () => openInReview(index));
  return row;
}

async function loadHistory(more = false) {
  const q = historyQuery();
  $("history-csv").href = `/v1/inspections/export?format=csv&${q}`;
  q.set("limit", "50");
  if (more && past.next) q.set("cursor", past.next);
  try {
    const page = await (await api(`/v1/inspections?${q}`)).json();
    const start = more ? past.items.length : 0;
    past.items = (more ? past.items : []).concat(page.items);
    past.next = page.next;
    const rows = page.items.map((rec, i) => historyRow(rec, start + i));
    if (more) $("history-rows").append(...rows); else $("history-rows").replaceChildren(...rows);
    $("history-more").hidden = !page.next;
    $("history-status").textContent = `${past.items.length} shown`;
  } catch (e) {
    $("history-status").textContent = e.message;
  }
}

function openInReview(index) {
  queue.items = past.items.slice();
  queue.at = index;
  queue.keep = true; // the review view shows these instead of loading its own queue
  location.hash = "#review";
}

// ---- Yield: counts per hour (24 h) or day (30 days) and source, from GET /v1/stats.
const COUNTS = ["total", "normal", "abnormal", "yield", "reviewed", "false_alarms", "misses"];
const SPANS = { hour: 24 * 3600e3, day: 30 * 24 * 3600e3 };

function yieldCell(value) {
  if (value === null || value === undefined) return el("td", {}, "–");
  const pct = 100 * value;
  const bar = el("span", { class: "bar" });
  bar.style.width = `${pct}%`;
  return el("td", { class: "yield-cell" }, bar, `${pct.toFixed(1)} %`);
}

function yieldRow(first, source, counts) {
  return el("tr", {}, el("td", {}, first), el("td", { class: "source" }, source),
    ...COUNTS.map((k) => k === "yield" ? yieldCell(counts[k])
      : el("td", { "data-count": k }, String(counts[k]))));
}

async function refreshYield() {
  const form = new FormData($("yield-filters"));
  const bucket = form.get("span");
  const since = new Date(Date.now() - SPANS[bucket]).toISOString();
  const q = new URLSearchParams({ bucket, since });
  if (form.get("source")) q.set("source", form.get("source"));
  try {
    const stats = await (await api(`/v1/stats?${q}`)).json();
    const items = stats.items.slice().reverse();
    const total = Object.fromEntries(COUNTS.map((k) => [k, 0]));
    for (const it of items) for (const k of COUNTS) if (k !== "yield") total[k] += it[k];
    total.yield = total.total ? total.normal / total.total : null;
    $("yield-rows").replaceChildren(...items.map((it) => yieldRow(
      bucket === "hour" ? new Date(it.bucket).toLocaleString() : new Date(it.bucket).toLocaleDateString(),
      it.source || "—", it)));
    $("yield-total").replaceChildren(...yieldRow("All", "", total).children);
    $("yield-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("yield-status").textContent = e.message;
  }
}

// ---- Model: the parts and their versions (GET /v1/models), the active version's thresholds,
// evaluation and training data (GET /v1/model?model=), activation and challenger buttons, the
// challenger's report, and a threshold what-if over the active version's latest records.
const WHATIF_N = 500; // records the what-if looks at (newest first)
const model = { part: null, info: null, scores: [], labels: [], reviews: [], slider: null };

const evaluation = (m) => (m && m.evaluation) || m || {};
const num = (x) => (x === null || x === undefined || x === "" ? "–"
  : Number.isInteger(x) ? String(x) : typeof x === "number" ? fmt(x) : String(x));
const pct = (n, d) => (d ? `${(100 * n / d).toFixed(1)} %` : "–");

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

async function loadModels() {
  try {
    const list = await (await api("/v1/models")).json();
    const names = list.models.map((p) => p.model);
    if (!names.includes(model.part)) model.part = list.default || names[0] || null;
    $("model-part").replaceChildren(...names.map((n) => {
      const option = el("option", { value: n }, n);
      option.selected = n === model.part;
      return option;
    }));
    const part = list.models.find((p) => p.model === model.part);
    if (part) await showPart(part);
    $("model-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("model-status").textContent = e.message;
  }
}

async function showPart(part) {
  const q = new URLSearchParams({ model: part.model });
  const info = await (await api(`/v1/model?${q}`)).json();
  model.info = info;
  facts($("model-active"), [["Part", part.model], ["Version", info.version],
    ["Created", when(info.created)], ["Previous (rollback)", part.previous || "–"],
    ["Device", info.device], ["Image size", `${info.image_size} px`],
    ["Fusion", `${info.fusion.rule}${info.fusion.weight === undefined ? ""
      : `, weight ${num(info.fusion.weight)}`}${info.fusion.chosen_by ? ` (${info.fusion.chosen_by})` : ""}`],
    ["Test-time flips", info.flips.length ? info.flips.join(", ") : "none"]]);
  facts($("model-thresholds"), [["Image (in use)", num(info.default_threshold)],
    ...Object.entries(info.thresholds).map(([k, v]) => [k, num(v)])]);
  const data = info.data || {};
  const labeled = data.labeled_images ? `${data.labeled_images} labeled` : "no labels";
  facts($("model-data"), [
    ["Training images", `${num(data.used_train_images)} of ${num(data.train_images)} (${num(data.holdout_images)} held out)`],
    ["Operator labels", labeled],
    ["Evaluated on", data.test_images ? `${data.test_images} test images` : "not evaluated"],
    ["Image / pixel AUROC", `${num(evaluation(info.metrics).image_auroc)} / ${num(evaluation(info.metrics).pixel_auroc)}`]]);
  $("model-versions").replaceChildren(...part.versions.slice().reverse().map((v) => versionRow(part, v)));
  await showChallenger(part);
  await loadWhatIf(info);
}

function versionRow(part, v) {
  const m = evaluation(v.metrics);
  const state = v.active ? "active" : v.version === part.challenger ? "challenger"
    : v.version === part.previous ? "previous" : "";
  const actions = el("td", {});
  if (!v.active) {
    const activate = el("button", { type: "button", "data-action": "activate" }, "Activate");
    activate.addEventListener("click", () => changeModel(part.model, "activate", v.version));
    actions.append(activate);
    if (v.version !== part.challenger) {
      const challenge = el("button", { type: "button", "data-action": "challenge" }, "Challenge");
      challenge.addEventListener("click", () => changeModel(part.model, "challenger", v.version));
      actions.append(" ", challenge);
    }
  }
  return el("tr", { "data-version": v.version }, el("td", { class: "score" }, v.version),
    el("td", {}, when(v.created)), el("td", {}, state), el("td", {}, num(m.image_auroc)),
    el("td", {}, num(m.pixel_auroc)), el("td", {}, num(m.aupro)), actions);
}

// Activation swaps the model every camera's answers come from: the operator confirms it.
async function changeModel(part, action, version) {
  const what = action === "activate" ? `Activate ${version} for ${part}? New answers will come from it.`
    : `Score every ${part} image with ${version} too, as a challenger? Answers do not change.`;
  if (!window.confirm(what)) return;
  try {
    await api(`/v1/models/${encodeURIComponent(part)}/${action}`, { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version }) });
    await loadModels();
  } catch (e) {
    $("model-status").textContent = e.message;
  }
}

async function showChallenger(part) {
  if (!part.challenger) {
    facts($("model-challenger"), [["Challenger", "none: “Challenge” a version to score it beside the active one"]]);
    return;
  }
  const r = await (await api(`/v1/models/${encodeURIComponent(part.model)}/challenger`)).json();
  const counts = (c) => Object.entries(c).map(([k, n]) => `${k} ${n}`).join(", ") || "–";
  facts($("model-challenger"), [["Version", r.version], ["Since", when(r.since)],
    ["Scored", `${r.scored} (skipped ${r.dropped}, failed ${r.failed}, waiting ${r.waiting})`],
    ["Agreement", r.agreement === null ? "–" : `${(100 * r.agreement).toFixed(1)} %`],
    ["Active's labels", counts(r.active_labels)], ["Challenger's labels", counts(r.challenger_labels)],
    ["Reviewed", `${r.reviewed}: accuracy active ${num(r.active_accuracy)}, challenger ${num(r.challenger_accuracy)}`],
    ["Disagreements", r.disagreements.length ? r.disagreements.slice(0, 10).join(" ") : "none"]]);
}

// The what-if looks at the active version's own records only: another version's scores are
// on another scale. A record is abnormal at threshold t when its score is at least t.
async function loadWhatIf(info) {
  const scores = [], labels = [], reviews = [];
  let cursor = null;
  while (scores.length < WHATIF_N) {
    const q = new URLSearchParams({ model_version: info.version, limit: "200" });
    if (cursor) q.set("cursor", cursor);
    let page;
    try {
      page = await (await api(`/v1/inspections?${q}`)).json();
    } catch (e) {
      break; // recording off: the what-if has nothing to count
    }
    for (const rec of page.items.slice(0, WHATIF_N - scores.length)) {
      scores.push(rec.score);
      labels.push(rec.label);
      reviews.push(rec.review ? rec.review.label : null);
    }
    cursor = page.next;
    if (!cursor) break;
  }
  Object.assign(model, { scores, labels, reviews });
  $("whatif-n").textContent = String(scores.length);
  const slider = $("whatif-slider");
  const t = info.default_threshold;
  slider.min = "0";
  slider.max = String(Math.max(t * 2, ...scores) * 1.05);
  slider.value = String(t);
  whatIf();
}

function whatIf() {
  const t = Number($("whatif-slider").value);
  $("whatif-value").textContent = fmt(t);
  let abnormal = 0, toAbnormal = 0, toNormal = 0, reviewed = 0, falseAlarms = 0, misses = 0;
  model.scores.forEach((score, i) => {
    const now = score >= t ? "abnormal" : "normal";
    if (now === "abnormal") abnormal += 1;
    if (now !== model.labels[i]) { if (now === "abnormal") toAbnormal += 1; else toNormal += 1; }
    const review = model.reviews[i];
    if (review !== null) {
      reviewed += 1;
      if (review === "good" && now === "abnormal") falseAlarms += 1;
      if (review !== "good" && now === "normal") misses += 1;
    }
  });
  const n = model.scores.length;
  const row = (name, value, key) => el("tr", {}, el("th", {}, name), el("td", { "data-whatif": key }, value));
  $("whatif-rows").replaceChildren(
    row("Abnormal at this threshold", `${abnormal} of ${n} (${pct(abnormal, n)})`, "abnormal"),
    row("Would change label", String(toAbnormal + toNormal), "changed"),
    row("normal → abnormal", String(toAbnormal), "to_abnormal"),
    row("abnormal → normal", String(toNormal), "to_normal"),
    row("Reviewed among them", String(reviewed), "reviewed"),
    row("False alarms (reviewed good, abnormal)", String(falseAlarms), "false_alarms"),
    row("Misses (reviewed defect, normal)", String(misses), "misses"));
}

// ---- Views, by the address's #hash.
function showView() {
  const name = (location.hash || "#live").slice(1);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== name;
  for (const a of document.querySelectorAll(".tabs a")) {
    a.classList.toggle("active", a.dataset.view === name);
  }
  clearInterval(live.timer);
  if (name === "live") { refreshLive(); live.timer = setInterval(refreshLive, 1500); }
  if (name === "yield") { refreshYield(); live.timer = setInterval(refreshYield, 10000); }
  if (name === "review" && queue.keep) { queue.keep = false; showItem(); } else if (name === "review") {
    loadQueue().catch((e) => { $("review-status").textContent = e.message; });
  }
  if (name === "history") loadHistory();
  if (name === "model") loadModels();
}

function setupLogin() {
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/ui/session", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key: $("login-key").value }) });
      location.reload();
    } catch (err) {
      $("login-error").textContent = err.message;
    }
  });
}

function setupPage() {
  setDefects(JSON.parse($("defects").textContent));
  $("live-filters").addEventListener("input", () => { live.cards.clear(); refreshLive(); });
  $("yield-filters").addEventListener("input", refreshYield);
  $("history-filters").addEventListener("change", () => loadHistory());
  $("history-more").addEventListener("click", () => loadHistory(true));
  $("model-part").addEventListener("change", (e) => { model.part = e.target.value; loadModels(); });
  $("whatif-slider").addEventListener("input", whatIf);
  $("whatif-reset").addEventListener("click", () => {
    if (model.info) { $("whatif-slider").value = String(model.info.default_threshold); whatIf(); }
  });
  $("new-defect").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.checkValidity() && e.target.value) {
      const name = e.target.value;
      e.target.value = "";
      e.target.blur();
      decide(name);
    }
  });
  const out = $("sign-out");
  if (out) out.addEventListener("click", () => api("/ui/session", { method: "DELETE" }).then(() => location.reload()));
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", showView);
  setupDrawing();
  setupInspect();
  showView();
}

if ($("login")) setupLogin(); else setupPage();
