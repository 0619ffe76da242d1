// The dashboard's few interactive parts, over the same /v1 API the openai client uses.
// No framework, no CDN: the server runs offline. The session cookie (with an API key) goes along
// with every same-origin request.
"use strict";

async function api(path, options = {}) {
  const reply = await fetch(path, options);
  const text = await reply.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!reply.ok) {
    const message = body && body.error ? body.error.message : `${reply.status} ${reply.statusText}`;
    throw new Error(message);
  }
  return body;
}

function show(element, message) {
  element.textContent = message;
  element.hidden = !message;
}

function svgElement(name, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// ---- tuning jobs: start one -------------------------------------------------------------------
function setupJobForm() {
  const form = document.getElementById("job-form");
  if (!form) return;
  const error = document.getElementById("job-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(error, "");
    const button = document.getElementById("job-start");
    button.disabled = true;
    try {
      let fileId = document.getElementById("job-uploaded").value;
      const picked = document.getElementById("job-file").files[0];
      if (picked) {
        const upload = new FormData();
        upload.append("purpose", "fine-tune");
        upload.append("file", picked, picked.name);
        fileId = (await api("/v1/files", { method: "POST", body: upload })).id;
      }
      if (!fileId) throw new Error("Pick a JSONL file to upload, or one uploaded before.");
      const type = document.getElementById("job-method").value;
      const hyper = {
        n_epochs: Number(document.getElementById("job-epochs").value),
        batch_size: Number(document.getElementById("job-batch").value),
        learning_rate_multiplier: Number(document.getElementById("job-lr").value),
      };
      const body = { model: document.getElementById("job-model").value, training_file: fileId,
                     method: { type, [type]: { hyperparameters: hyper } } };
      const suffix = document.getElementById("job-suffix").value.trim();
      if (suffix) body.suffix = suffix;
      const job = await api("/v1/fine_tuning/jobs", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      window.location.href = `/jobs/${encodeURIComponent(job.id)}`;
    } catch (e) {
      show(error, e.message);
      button.disabled = false;
    }
  });
}

// ---- one job: live loss curve and events ------------------------------------------------------
const FINAL = new Set(["succeeded", "failed", "cancelled"]);

function drawLoss(svg, series) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height")), pad = 34;
  const all = series.flatMap((s) => s.points);
  svg.appendChild(svgElement("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }));
  svg.appendChild(svgElement("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: height - pad }));
  if (!all.length) return;
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (width - 2 * pad) / (x1 - x0 || 1), sy = (height - 2 * pad) / (y1 - y0 || 1);
  const label = (x, y, text) => { const t = svgElement("text", { class: "tick", x, y }); t.textContent = text; svg.appendChild(t); };
  label(2, pad + 4, y1.toPrecision(4)); label(2, height - pad, y0.toPrecision(4));
  label(pad, height - 10, `step ${x0}`); label(width - pad - 50, height - 10, `step ${x1}`);
  for (const s of series) {
    if (!s.points.length) continue;
    const points = s.points.map(([x, y]) => `${(pad + (x - x0) * sx).toFixed(1)},${(height - pad - (y - y0) * sy).toFixed(1)}`);
    svg.appendChild(svgElement("polyline", { class: `series ${s.name}`, points: points.join(" "), "data-points": s.points.length }));
  }
}

function setupJobPage() {
  const root = document.getElementById("job");
  if (!root) return;
  const id = root.dataset.id;
  const base = `/v1/fine_tuning/jobs/${encodeURIComponent(id)}`;
  const events = new Map();
  const cancel = document.getElementById("job-cancel");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try { await api(`${base}/cancel`, { method: "POST" }); } catch (e) { show(document.getElementById("job-error-text"), e.message); }
  });

  async function readEvents(all) {
    // Newest first, 100 a page: page back once at the start, then the newest page each poll.
    let after = null;
    for (let page = 0; page < (all ? 50 : 1); page++) {
      const query = after ? `?limit=100&after=${encodeURIComponent(after)}` : "?limit=100";
      const got = await api(`${base}/events${query}`);
      let seen = 0;
      for (const e of got.data) { if (events.has(e.id)) seen++; events.set(e.id, e); }
      if (!got.has_more || seen) break;
      after = got.last_id;
    }
  }

  function render(job) {
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    if (job.fine_tuned_model) {
      const link = document.getElementById("job-model");
      link.innerHTML = "";
      const a = document.createElement("a");
      a.href = `/models/${encodeURIComponent(job.fine_tuned_model)}`;
      a.textContent = job.fine_tuned_model;
      link.appendChild(a);
    }
    document.getElementById("job-error-text").textContent = job.error ? job.error.message : "";
    cancel.hidden = FINAL.has(job.status);
    const ordered = [...events.values()].sort((a, b) => a.created_at - b.created_at || (a.id < b.id ? -1 : 1));
    const metrics = ordered.filter((e) => e.type === "metrics" && e.data && Number.isInteger(e.data.step));
    const bySteps = (a, b) => a[0] - b[0];  // events of one second come in any order: plot by step
    const train = metrics.filter((e) => typeof e.data.train_loss === "number").map((e) => [e.data.step, e.data.train_loss]).sort(bySteps);
    const valid = metrics.filter((e) => typeof e.data.valid_loss === "number").map((e) => [e.data.step, e.data.valid_loss]).sort(bySteps);
    drawLoss(document.getElementById("loss-chart"), [{ name: "train", points: train }, { name: "valid", points: valid }]);
    const caption = document.getElementById("loss-caption");
    if (train.length) {
      const last = metrics.reduce((a, e) => (e.data.step > a.step ? e.data : a), metrics[0].data);
      caption.textContent = `training loss ${train[0][1].toFixed(4)} → ${train[train.length - 1][1].toFixed(4)} at step ${last.step}` +
        (last.total_steps ? ` of ${last.total_steps}` : "") + (valid.length ? `; validation loss ${valid[valid.length - 1][1].toFixed(4)}` : "");
    }
    const body = document.querySelector("#events tbody");
    body.innerHTML = "";
    for (const e of ordered.slice().reverse()) {
      const row = body.insertRow();
      row.className = e.level;
      row.insertCell().textContent = new Date(e.created_at * 1000).toLocaleTimeString();
      row.insertCell().textContent = e.level;
      row.insertCell().textContent = e.message;
    }
  }

  let first = true;
  async function poll() {
    try {
      const job = await api(base);
      await readEvents(first);
      first = false;
      render(job);
      if (FINAL.has(job.status)) { root.dataset.final = job.status; return; }
    } catch (e) {
      show(document.getElementById("job-error-text"), e.message);
    }
    setTimeout(poll, 1000);
  }
  poll();
}

// ---- chat playground ----------------------------------------------------------------------------
const CALCULATOR = { type: "function", function: { name: "calculator",
  description: "Evaluate an arithmetic expression such as 23 * 19 or (4 + 5) / 3 and return the result.",
  parameters: { type: "object", properties: { expression: { type: "string" } }, required: ["expression"] } } };

function setupPlayground() {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const log = document.getElementById("chat-log");
  const error = document.getElementById("chat-error");
  const baseSelect = document.getElementById("chat-base");
  const adapterSelect = document.getElementById("chat-adapter");
  const history = [];

  function filterAdapters() {
    for (const option of adapterSelect.options) {
      if (!option.value) continue;
      option.hidden = option.dataset.base !== baseSelect.value;
      if (option.hidden && option.selected) adapterSelect.value = "";
    }
  }
  baseSelect.addEventListener("change", filterAdapters);
  filterAdapters();

  function bubble(who, text) {
    const div = document.createElement("div");
    div.className = `msg ${who}`;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    div.append(label, body);
    log.appendChild(div);
    return body;
  }

  document.getElementById("chat-clear").addEventListener("click", () => { history.length = 0; log.innerHTML = ""; });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    show(error, "");
    const input = document.getElementById("chat-input");
    const text = input.value.trim();
    if (!text) return;
    const model = adapterSelect.value || baseSelect.value;
    history.push({ role: "user", content: text });
    bubble("user", text);
    input.value = "";
    const stream = document.getElementById("chat-stream").checked;
    const body = { model, messages: history.slice(), stream,
                   max_tokens: Number(document.getElementById("chat-max").value),
                   temperature: Number(document.getElementById("chat-temp").value) };
    if (document.getElementById("chat-tools").checked) body.tools = [CALCULATOR];
    const out = bubble(`assistant · ${model}`, "");
    out.parentElement.classList.add("assistant");
    const send = document.getElementById("chat-send");
    send.disabled = true;
    try {
      let content = "", calls = [];
      if (!stream) {
        const reply = await api("/v1/chat/completions", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const message = reply.choices[0].message;
        content = message.content || "";
        calls = (message.tool_calls || []).map((c) => ({ name: c.function.name, arguments: c.function.arguments }));
        out.textContent = content;
      } else {
        const reply = await fetch("/v1/chat/completions", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        if (!reply.ok) {
          const failure = await reply.json().catch(() => null);
          throw new Error(failure && failure.error ? failure.error.message : `${reply.status} ${reply.statusText}`);
        }
        const reader = reply.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (!data || data === "[DONE]") continue;
            const chunk = JSON.parse(data);
            if (chunk.error) throw new Error(chunk.error.message);
            const delta = chunk.choices && chunk.choices[0] ? chunk.choices[0].delta || {} : {};
            if (delta.content) { content += delta.content; out.textContent = content; }
            for (const c of delta.tool_calls || []) {
              const slot = calls[c.index] || (calls[c.index] = { name: "", arguments: "" });
              if (c.function && c.function.name) slot.name += c.function.name;
              if (c.function && c.function.arguments) slot.arguments += c.function.arguments;
            }
          }
        }
      }
      if (calls.length) {
        out.textContent = (content ? content + "\n" : "") + calls.map((c) => `tool call: ${c.name}(${c.arguments})`).join("\n");
        out.parentElement.classList.add("tool-call");
      }
      history.push({ role: "assistant", content });
      out.parentElement.dataset.done = "1";
    } catch (e) {
      history.pop();
      out.parentElement.remove();
      show(error, e.message);
    } finally {
      send.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupJobForm();
  setupJobPage();
  setupPlayground();
});
