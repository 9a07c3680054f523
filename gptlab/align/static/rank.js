// The gptlab ranking page: plain JS, no build step, no network beyond this server.
// The list on screen IS the ranking (best first): keys and drag-and-drop only reorder it, Enter
// posts it. The server appends it to the rankings file and tells us what to show next, so a
// reload (or another day) resumes at the first item this rater has not ranked.
"use strict";

const RATER = "gptlab.rater";
const LETTERS = "abcdefghijklmnopqrstuvwxyz";
const $ = (id) => document.getElementById(id);

let item = null;     // {id, prompt, responses}
let order = [];      // answer indices in screen order, best first
let focus = 0;       // position of the focused answer
let picked = 0;      // positions 0..picked-1 were chosen by letter keys
let dragFrom = null; // position being dragged
let busy = false;    // a save is in flight: ignore Enter until it returns

function rater() { return $("rater").value.trim(); }
function showError(text) { $("error").textContent = text || ""; $("error").hidden = !text; }

async function api(path, options) {
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ? `${body.error.field}: ${body.error.message}` : `HTTP ${r.status}`);
  return body;
}

// ---------------------------------------------------------------- rendering
function contentText(c) {
  return typeof c === "string" ? c : (c || []).map((p) => p.text ?? "").join("");
}

function renderItem() {
  $("item").hidden = !item;
  if (!item) return;
  $("item-id").textContent = `#${item.id}`;
  const prompt = $("prompt");
  prompt.replaceChildren();
  for (const m of item.prompt) {
    const div = document.createElement("div");
    div.className = `turn ${m.role}`;
    const role = document.createElement("span");
    role.className = "role"; role.textContent = m.role;
    div.append(role, contentText(m.content));
    prompt.append(div);
  }
  renderAnswers();
}

function renderAnswers() {
  const ol = $("answers");
  ol.replaceChildren();
  order.forEach((j, pos) => {
    const li = document.createElement("li");
    li.className = "answer" + (pos === focus ? " focused" : "") + (pos < picked ? " picked" : "");
    li.draggable = true;
    li.tabIndex = -1;
    li.dataset.index = j;
    li.dataset.letter = LETTERS[j];
    const rank = document.createElement("span");
    rank.className = "rank"; rank.textContent = `${pos + 1}.`;
    const letter = document.createElement("span");
    letter.className = "letter"; letter.textContent = LETTERS[j];
    const text = document.createElement("span");
    text.className = "text"; text.textContent = item.responses[j];
    li.append(rank, letter, text);
    li.onclick = () => { focus = pos; renderAnswers(); };
    addDrag(li, pos);
    ol.append(li);
  });
}

function setProgress(p) {
  $("progress").textContent = `${p.done} of ${p.total} ranked`;
}

// ---------------------------------------------------------------- moving answers
function move(from, to) {
  if (to < 0 || to >= order.length || from === to) return;
  const [j] = order.splice(from, 1);
  order.splice(to, 0, j);
  focus = to;
  renderAnswers();
}

function pick(j) {  // the letter's answer goes to the next free rank, as typed in the terminal labeler
  const pos = order.indexOf(j);
  if (pos < 0 || pos < picked) return;
  move(pos, picked);
  picked += 1;
  if (picked === order.length - 1) picked = order.length;  // the last one is implied
  focus = picked - 1;
  renderAnswers();
}

function reset() {
  if (!item) return;
  order = item.responses.map((_, j) => j);
  focus = 0; picked = 0;
  renderAnswers();
}

function addDrag(li, pos) {
  li.addEventListener("dragstart", (e) => {
    dragFrom = pos;
    li.classList.add("dragging");
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", String(pos));
  });
  li.addEventListener("dragend", () => { dragFrom = null; li.classList.remove("dragging"); });
  li.addEventListener("dragover", (e) => { e.preventDefault(); li.classList.add("drop-target"); });
  li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
  li.addEventListener("drop", (e) => {
    e.preventDefault();
    const from = dragFrom ?? Number(e.dataTransfer.getData("text/plain"));
    dragFrom = null;
    picked = 0;  // a hand-made order: letter picks start over
    move(from, pos);
  });
}

// ---------------------------------------------------------------- talking to the server
async function loadNext(after) {
  showError("");
  if (!rater()) { item = null; renderItem(); showError("rater: type your name to start"); return; }
  try {
    const q = new URLSearchParams({ rater: rater() });
    if (after !== undefined) q.set("after", after);
    const r = await api(`/api/next?${q}`);
    setProgress(r);
    item = r.item;
    $("all-done").hidden = !!item;
    reset();
    renderItem();
  } catch (e) { showError(e.message); }
}

async function save() {
  if (!item || busy) return;
  busy = true;
  try {
    const r = await api("/api/rankings", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater: rater(), item: item.id, order }),
    });
    setProgress(r);
    $("status").textContent = `saved #${r.saved.item}: ${r.saved.order.map((j) => LETTERS[j]).join(" > ")}`;
    await loadNext(item.id);
  } catch (e) { showError(e.message); }
  finally { busy = false; }
}

function fmt(x, ci) {
  if (x === null || x === undefined) return "—";
  const s = x.toFixed(2);
  return ci ? `${s} <span class="ci">[${ci[0].toFixed(2)}, ${ci[1].toFixed(2)}]</span>` : s;
}

function cell(tr, html) { const td = document.createElement("td"); td.innerHTML = html; tr.append(td); }
function textCell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }

async function loadSummary() {
  showError("");
  try {
    const s = await api("/api/summary");
    $("summary-file").textContent = `${s.out}: ${s.total} items`;
    const raters = $("raters").tBodies[0];
    raters.replaceChildren();
    for (const [name, n] of Object.entries(s.raters)) {
      const tr = document.createElement("tr");
      textCell(tr, name); textCell(tr, `${n} of ${s.total}`);
      raters.append(tr);
    }
    const body = $("agreement").tBodies[0];
    body.replaceChildren();
    for (const a of s.agreement) {
      const tr = document.createElement("tr");
      const p = a.pairs, w = a.rankings;
      textCell(tr, `${a.a} · ${a.b}`); textCell(tr, String(a.items)); textCell(tr, String(p.n));
      cell(tr, fmt(p.agreement, p.agreement_ci95)); cell(tr, fmt(p.kappa, p.kappa_ci95));
      cell(tr, fmt(w.kendall_tau, w.kendall_tau_ci95)); cell(tr, fmt(w.top1, w.top1_ci95));
      body.append(tr);
    }
    $("no-agreement").hidden = s.agreement.length > 0;
  } catch (e) { showError(e.message); }
}

function showView(summary) {
  $("rank-view").hidden = summary; $("summary-view").hidden = !summary;
  $("show-rank").classList.toggle("active", !summary);
  $("show-summary").classList.toggle("active", summary);
  if (summary) loadSummary();
}

// ---------------------------------------------------------------- keys
function onKey(e) {
  if (e.target === $("rater") || e.ctrlKey || e.metaKey || !item || $("rank-view").hidden) return;
  const k = e.key;
  if (k === "Enter") save();
  else if (k === "Escape") reset();
  else if (k === "Backspace") { picked = Math.max(0, Math.min(picked, order.length - 1) - 1); renderAnswers(); }
  else if (k === "ArrowUp" || k === "ArrowDown") {
    const step = k === "ArrowUp" ? -1 : 1;
    if (e.shiftKey || e.altKey) { picked = 0; move(focus, focus + step); }
    else { focus = Math.min(order.length - 1, Math.max(0, focus + step)); renderAnswers(); }
  } else if (/^[1-9]$/.test(k) && Number(k) <= order.length) { picked = 0; move(focus, Number(k) - 1); }
  else if (k.length === 1 && LETTERS.indexOf(k) >= 0 && LETTERS.indexOf(k) < order.length) pick(LETTERS.indexOf(k));
  else return;
  e.preventDefault();
}

// ---------------------------------------------------------------- start
document.addEventListener("keydown", onKey);
$("save").onclick = save;
$("skip").onclick = () => item && loadNext(item.id);
$("reset").onclick = reset;
$("show-rank").onclick = () => showView(false);
$("show-summary").onclick = () => showView(true);
$("rater").addEventListener("change", () => { localStorage.setItem(RATER, rater()); loadNext(); });
$("rater").addEventListener("keydown", (e) => { if (e.key === "Enter") e.target.blur(); });

api("/api/info").then((info) => {
  $("rater").value = localStorage.getItem(RATER) || info.default_rater;
  loadNext();
}).catch((e) => showError(e.message));
