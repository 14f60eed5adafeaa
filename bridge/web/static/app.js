// the control room's script: an OSCQuery client of the daemon that served this page.
// it knows no address by name: every widget carries its OSC address and type tags (data-osc,
// data-tags), written by the server from the schema. values go out as OSC binary over the
// OSCQuery WebSocket and come back through LISTEN, so several pages and controllers stay in step.
"use strict";

const config = JSON.parse(document.body.dataset.config || "{}");
const statusBadge = document.getElementById("status");

// -- OSC 1.0 messages (only what the schema uses: i f s T F, plus d h N when decoding) --------

const osc = {
  encode(address, tags, values) {
    const parts = [osc.string(address), osc.string("," + tags)];
    [...tags].forEach((tag, i) => {
      const value = values[i];
      if (tag === "i") { const b = new DataView(new ArrayBuffer(4)); b.setInt32(0, value); parts.push(new Uint8Array(b.buffer)); }
      else if (tag === "f") { const b = new DataView(new ArrayBuffer(4)); b.setFloat32(0, value); parts.push(new Uint8Array(b.buffer)); }
      else if (tag === "s") parts.push(osc.string(value));
    });
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out.buffer;
  },
  string(text) {
    const bytes = new TextEncoder().encode(text);
    const out = new Uint8Array((bytes.length + 4) & ~3);
    out.set(bytes);
    return out;
  },
  decode(buffer) {
    const view = new DataView(buffer);
    const bytes = new Uint8Array(buffer);
    let at = 0;
    const readString = () => {
      let end = at;
      while (end < bytes.length && bytes[end] !== 0) end++;
      const text = new TextDecoder().decode(bytes.subarray(at, end));
      at = (end + 4) & ~3;
      return text;
    };
    const address = readString();
    if (address === "#bundle") return null; // the server sends plain messages only
    const tags = at < bytes.length ? readString().slice(1) : "";
    const args = [];
    for (const tag of tags) {
      if (tag === "i") { args.push(view.getInt32(at)); at += 4; }
      else if (tag === "f") { args.push(view.getFloat32(at)); at += 4; }
      else if (tag === "d") { args.push(view.getFloat64(at)); at += 8; }
      else if (tag === "h") { args.push(Number(view.getBigInt64(at))); at += 8; }
      else if (tag === "s") args.push(readString());
      else if (tag === "T") args.push(true);
      else if (tag === "F") args.push(false);
      else if (tag === "N") args.push(null);
      else return null; // a tag this page cannot read: ignore the message
    }
    return { address, args };
  },
};

// -- the connection ------------------------------------------------------------------------------

let socket = null;
let retry = 500;
const handlers = new Map(); // address -> [fn(args)]

function on(address, fn) {
  if (!handlers.has(address)) handlers.set(address, []);
  handlers.get(address).push(fn);
}

function send(address, tags, values) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(osc.encode(address, tags, values));
}

function setStatus(text, connected) {
  statusBadge.textContent = text;
  document.body.dataset.connected = String(connected);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/`);
  socket.binaryType = "arraybuffer";
  socket.onopen = async () => {
    retry = 500;
    for (const address of config.listen || []) {
      socket.send(JSON.stringify({ COMMAND: "LISTEN", DATA: address }));
    }
    await loadValues();
    setStatus("live", true);
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") return; // PATH_CHANGED: the page is made from the schema
    const message = osc.decode(event.data);
    if (!message) return;
    for (const fn of handlers.get(message.address) || []) fn(message.args);
  };
  socket.onclose = () => {
    setStatus("reconnecting…", false);
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

// the current values: OSCQuery's namespace (VALUE of every readable node)
async function loadValues() {
  try {
    const response = await fetch("/", { cache: "no-store" });
    const walk = (node) => {
      if (node.VALUE && node.FULL_PATH) for (const fn of handlers.get(node.FULL_PATH) || []) fn(node.VALUE);
      for (const child of Object.values(node.CONTENTS || {})) walk(child);
    };
    walk(await response.json());
  } catch (error) {
    console.warn("hamba: could not read the namespace", error);
  }
}

// -- controls ------------------------------------------------------------------------------------

function showValue(element, text) {
  const section = element.closest(".control");
  const output = section && section.querySelector(".head .value");
  if (output) output.textContent = text;
}

function formatNumber(value, tags) {
  return tags === "i" ? String(value) : Number(value).toFixed(3).replace(/0+$/, "").replace(/\.$/, "");
}

function bindSlider(input) {
  const { osc: address, tags } = input.dataset;
  let dragging = false;
  let queued = false;
  input.addEventListener("pointerdown", () => { dragging = true; });
  window.addEventListener("pointerup", () => { dragging = false; });
  input.addEventListener("input", () => {
    showValue(input, formatNumber(input.value, tags));
    if (queued) return; // at most one message per animation frame while dragging
    queued = true;
    requestAnimationFrame(() => { queued = false; send(address, tags, [Number(input.value)]); });
  });
  on(address, ([value]) => {
    if (!dragging) input.value = value;
    showValue(input, formatNumber(value, tags));
  });
  showValue(input, formatNumber(input.value, tags));
}

function bindNumber(input) {
  const { osc: address, tags } = input.dataset;
  input.addEventListener("change", () => {
    if (input.value !== "" && input.checkValidity()) send(address, tags, [Number(input.value)]);
  });
  on(address, ([value]) => { if (document.activeElement !== input) input.value = value; });
}

function bindToggle(input) {
  const { osc: address } = input.dataset;
  input.addEventListener("change", () => send(address, input.checked ? "T" : "F", []));
  on(address, ([value]) => { input.checked = Boolean(value); showValue(input, value ? "on" : "off"); });
  showValue(input, input.checked ? "on" : "off");
}

function bindChoices(group) {
  const { osc: address } = group.dataset;
  const mark = (value) => {
    for (const button of group.querySelectorAll("button")) button.classList.toggle("on", button.dataset.value === value);
    showValue(group, value);
  };
  group.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) send(address, "s", [button.dataset.value]);
  });
  on(address, ([value]) => mark(value));
}

function bindText(area) {
  const { osc: address } = area.dataset;
  let sent = area.value;
  const commit = () => {
    if (area.value !== sent) { sent = area.value; send(address, "s", [area.value]); }
    area.classList.remove("pending");
  };
  area.addEventListener("input", () => area.classList.toggle("pending", area.value !== sent));
  area.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); commit(); area.blur(); }
    if (event.key === "Escape") { area.value = sent; area.classList.remove("pending"); area.blur(); }
  });
  area.addEventListener("blur", commit);
  on(address, ([value]) => {
    sent = value;
    if (document.activeElement !== area) { area.value = value; area.classList.remove("pending"); }
  });
}

const binders = {
  range: bindSlider,
  number: bindNumber,
  checkbox: bindToggle,
};

for (const element of document.querySelectorAll(".controls [data-osc][data-tags]")) {
  if (element.tagName === "INPUT") binders[element.type](element);
  else if (element.tagName === "TEXTAREA") bindText(element);
  else if (element.classList.contains("choices")) bindChoices(element);
}

// -- meters --------------------------------------------------------------------------------------

function bindMeter(meter) {
  const { osc: address, kind } = meter.dataset;
  const output = meter.querySelector(".value");
  if (kind === "bar") {
    const fill = meter.querySelector(".bar i");
    on(address, ([value]) => { fill.style.width = `${Math.round(value * 100)}%`; output.textContent = value.toFixed(2); });
  } else if (kind === "bars") {
    const fills = [...meter.querySelectorAll(".bar i")];
    on(address, (values) => values.forEach((v, i) => { if (fills[i]) fills[i].style.height = `${Math.round(v * 100)}%`; }));
  } else if (kind === "flash") {
    let timer = 0;
    let last = null;
    on(address, ([count]) => {
      output.textContent = String(count);
      if (last !== null && count !== last) {
        meter.dataset.beats = String(Number(meter.dataset.beats) + 1);
        meter.classList.add("on");
        clearTimeout(timer);
        timer = setTimeout(() => meter.classList.remove("on"), 120);
      }
      last = count;
    });
  } else {
    on(address, (values) => {
      output.textContent = values.map((v) => (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : String(v))).join(": ");
    });
  }
}

document.querySelectorAll(".meters [data-osc]").forEach(bindMeter);

connect();
