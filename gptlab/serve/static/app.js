// The gptlab chat page: plain JS, no build step. Conversations live in localStorage; answers
// stream from /v1/chat/completions as server-sent events; Stop aborts the fetch, which closes
// the connection, which makes the server cancel the request and free its engine slot.
"use strict";

const STORE = "gptlab.conversations";
const SETTINGS = "gptlab.settings";
const $ = (id) => document.getElementById(id);

let conversations = load(STORE, []);   // [{id, title, messages: [{role, content, parts?, citations?, status?}]}]
let current = null;                      // id of the open conversation
let controller = null;                   // AbortController of the answer being streamed
let serverHasRag = false;
let servedModel = null;                  // the server's model name (from /health); null: not known yet

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch { return fallback; }
}
function save() { localStorage.setItem(STORE, JSON.stringify(conversations)); }
function conv() { return conversations.find((c) => c.id === current); }

function saveSettings() {
  localStorage.setItem(SETTINGS, JSON.stringify({
    temperature: $("temperature").value, maxTokens: $("max-tokens").value,
    rag: $("rag").checked, apiKey: $("api-key").value,
  }));
}
function loadSettings() {
  const s = load(SETTINGS, {});
  if (s.temperature !== undefined) $("temperature").value = s.temperature;
  if (s.maxTokens !== undefined) $("max-tokens").value = s.maxTokens;
  if (s.apiKey !== undefined) $("api-key").value = s.apiKey;
  if (s.rag !== undefined) $("rag").checked = s.rag;
  $("temperature-value").textContent = $("temperature").value;
}

// ---------------------------------------------------------------- rendering
function renderList() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c.id === current ? "active" : "";
    li.dataset.id = c.id;
    const title = document.createElement("span");
    title.textContent = c.title || "New chat";
    const del = document.createElement("button");
    del.type = "button"; del.textContent = "×"; del.title = "Delete"; del.className = "delete";
    del.onclick = (e) => { e.stopPropagation(); remove(c.id); };
    li.append(title, del);
    li.onclick = () => { if (!controller) { current = c.id; render(); } };
    ul.append(li);
  }
}

function renderMessage(m) {
  const div = document.createElement("div");
  div.className = `msg ${m.role}`;
  const role = document.createElement("div");
  role.className = "role"; role.textContent = m.role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  const parts = m.parts || [{ type: "text", text: m.content }];
  for (const p of parts) {
    const span = document.createElement("span");
    span.className = `part ${p.type}`;
    span.textContent = p.type === "tool_call" ? `🔧 ${p.text}` : p.type === "tool_result" ? `→ ${p.text}` : p.text;
    body.append(span);
  }
  div.append(role, body);
  if (m.citations && m.citations.length) {
    const src = document.createElement("div");
    src.className = "sources";
    src.append("Sources:");
    const ol = document.createElement("ol");
    for (const c of m.citations) {
      const li = document.createElement("li");
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = `${c.file}${c.page != null ? ":p" + c.page : ""}:${c.line}`;
      const snip = document.createElement("span");
      snip.className = "snippet"; snip.textContent = ` ${c.snippet || ""}`;
      li.append(where, snip);
      ol.append(li);
    }
    src.append(ol);
    div.append(src);
  }
  if (m.status) {
    const st = document.createElement("div");
    st.className = "status"; st.textContent = m.status;
    div.append(st);
  }
  return div;
}

function render() {
  renderList();
  const box = $("messages");
  box.replaceChildren(...(conv()?.messages || []).map(renderMessage));
  box.scrollTop = box.scrollHeight;
}

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

// ---------------------------------------------------------------- conversations
function newConversation() {
  const c = { id: `${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, title: "", messages: [] };
  conversations.unshift(c);
  current = c.id;
  save(); render();
  return c;
}
function remove(id) {
  if (controller && id === current) return;
  conversations = conversations.filter((c) => c.id !== id);
  if (current === id) current = conversations[0]?.id ?? null;
  save(); render();
}

// What the API takes: assistant turns with tool use go back as parts (the chat contract).
function apiMessages(messages) {
  return messages.filter((m) => m.content || m.parts).map((m) =>
    m.parts && m.parts.some((p) => p.type !== "text")
      ? { role: m.role, content: m.parts } : { role: m.role, content: m.content });
}

// ---------------------------------------------------------------- sending and streaming
async function send(text) {
  const c = conv() || newConversation();
  if (!c.title) c.title = text.slice(0, 40);
  c.messages.push({ role: "user", content: text });
  const history = apiMessages(c.messages);
  const answer = { role: "assistant", content: "", parts: [] };
  c.messages.push(answer);
  save(); render();
  const ref = { node: $("messages").lastElementChild };

  const body = {
    messages: history, stream: true,
    temperature: parseFloat($("temperature").value),
    max_tokens: parseInt($("max-tokens").value, 10) || 256,
  };
  if (servedModel) body.model = servedModel;  // the server answers any other name with 404
  if (serverHasRag) body.rag = $("rag").checked;
  const headers = { "Content-Type": "application/json" };
  if ($("api-key").value) headers.Authorization = `Bearer ${$("api-key").value}`;

  controller = new AbortController();
  setBusy(true); showError("");
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({}));
      throw new Error(err.error?.message || `HTTP ${r.status}`);
    }
    await readStream(r.body, (chunk) => onChunk(answer, chunk, ref));
    if (!answer.status && !answer.content && !answer.parts.length) answer.status = "(empty answer)";
  } catch (e) {
    if (e.name === "AbortError") answer.status = "stopped";
    else { answer.status = `error: ${e.message}`; showError(e.message); }
  } finally {
    controller = null;
    setBusy(false);
    save(); render();
  }
}

// Apply one streamed chunk to the answer; redraw its bubble at most once per animation frame
// (a redraw per token would keep the page too busy to take a click on Stop).
let redrawPending = false;
function onChunk(answer, chunk, ref) {
  if (chunk.error) throw new Error(chunk.error.message);
  if (chunk.citations) answer.citations = chunk.citations;
  const choice = chunk.choices && chunk.choices[0];
  const d = (choice && choice.delta) || {};
  if (d.content) {
    answer.content += d.content;
    const last = answer.parts[answer.parts.length - 1];
    if (last && last.type === "text") last.text += d.content;
    else answer.parts.push({ type: "text", text: d.content });
  }
  if (d.tool) answer.parts.push({ type: d.tool.type, text: d.tool.text });
  if (choice && choice.finish_reason === "length") answer.status = "(stopped at max tokens)";
  if (!redrawPending) {
    redrawPending = true;
    requestAnimationFrame(() => {
      redrawPending = false;
      const fresh = renderMessage(answer);
      ref.node.replaceWith(fresh);
      ref.node = fresh;
      const box = $("messages");
      box.scrollTop = box.scrollHeight;
    });
  }
}

// Server-sent events: "data: {json}" lines separated by blank lines, ending with "data: [DONE]".
async function readStream(stream, onEvent) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("input").disabled = busy;
  if (!busy) $("input").focus();
}

// ---------------------------------------------------------------- wiring
function init() {
  loadSettings();
  $("temperature").oninput = () => { $("temperature-value").textContent = $("temperature").value; saveSettings(); };
  for (const id of ["max-tokens", "rag", "api-key"]) $(id).onchange = saveSettings;
  $("new-chat").onclick = () => { if (!controller) newConversation(); };
  $("stop").onclick = () => controller && controller.abort();
  $("composer").onsubmit = (e) => {
    e.preventDefault();
    const text = $("input").value.trim();
    if (!text || controller) return;
    $("input").value = "";
    send(text);
  };
  $("input").onkeydown = (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  };
  current = conversations[0]?.id ?? null;
  render();
  fetch("/health").then((r) => r.json()).then((h) => {
    serverHasRag = !!h.rag;
    servedModel = h.model || null;
    $("rag").disabled = !serverHasRag;
    if (serverHasRag && load(SETTINGS, {}).rag === undefined) $("rag").checked = true;
    $("model-name").textContent = `model: ${h.model}`;
  }).catch(() => {});
}

init();
