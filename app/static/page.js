// Earshot's web page: a file or the microphone in, transcript out, on this server's own API.
// Plain script, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORE = "earshot.apiKey";
const LIVE_RATE = 24000; // what the realtime session is told the PCM runs at
const CHUNK = LIVE_RATE / 10; // samples per append: ~100 ms
const STOP_WAIT_MS = 10000;

// --- small helpers ---------------------------------------------------------------------------

function apiUrl(path) {
  // Relative to the page, so a proxy serving Earshot under /some/prefix/ still works.
  return new URL(path, document.baseURI);
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function clock(seconds) {
  const s = Math.max(0, seconds);
  const minutes = Math.floor(s / 60);
  const rest = (s - minutes * 60).toFixed(1).padStart(4, "0");
  return `${String(minutes).padStart(2, "0")}:${rest}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// An OpenAI error envelope, or whatever else a failed request left, as one readable line.
function describeError(status, body) {
  const error = body && typeof body === "object" ? body.error : null;
  if (!error) return `HTTP ${status}: ${typeof body === "string" && body ? body : "the server gave no details"}`;
  const details = [error.type, error.param && `param: ${error.param}`, error.code && `code: ${error.code}`]
    .filter(Boolean)
    .join(", ");
  return `${status ? `Error ${status}` : "Error"}${details ? ` (${details})` : ""}: ${error.message}`;
}

function showError(box, message) {
  box.hidden = !message;
  box.textContent = message || "";
}

async function readBody(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// --- models ----------------------------------------------------------------------------------

async function loadModels() {
  const select = $("model");
  const status = $("models-status");
  status.textContent = "Loading models…";
  try {
    const response = await fetch(apiUrl("v1/models"), { headers: authHeaders() });
    const body = await readBody(response);
    if (!response.ok) {
      status.textContent = describeError(response.status, body);
      return;
    }
    const previous = select.value;
    select.replaceChildren(...body.data.map((m) => new Option(m.id, m.id)));
    const ids = body.data.map((m) => m.id);
    select.value = ids.includes(previous) ? previous : ids.includes("whisper-1") ? "whisper-1" : ids[0] || "";
    status.textContent = ids.length ? "" : "The server has no models configured.";
  } catch (err) {
    status.textContent = `Could not reach the server: ${err.message}`;
  }
}

// --- file ------------------------------------------------------------------------------------

function formFor(file, model, format) {
  const form = new FormData();
  form.append("model", model);
  form.append("response_format", format);
  if (format === "verbose_json") form.append("timestamp_granularities[]", "segment");
  // The diarize model needs a chunking strategy for inputs over 30 s; "auto" suits any length.
  if (format === "diarized_json") form.append("chunking_strategy", "auto");
  form.append("file", file, file.name);
  return form;
}

async function transcribeFile(file) {
  const model = $("model").value;
  const status = $("file-status");
  const list = $("file-transcript");
  showError($("file-error"), "");
  list.replaceChildren();
  if (!model) {
    showError($("file-error"), "No model to use: the model list is empty.");
    return;
  }
  status.textContent = `Transcribing ${file.name} with ${model}…`;
  const started = performance.now();
  // The richest format this model may give; a server that refuses it names response_format.
  let format = model.includes("diarize") ? "diarized_json" : "verbose_json";
  try {
    for (;;) {
      const response = await fetch(apiUrl("v1/audio/transcriptions"), {
        method: "POST",
        headers: authHeaders(),
        body: formFor(file, model, format),
      });
      const body = await readBody(response);
      if (response.status === 400 && format !== "json" && body?.error?.param === "response_format") {
        format = "json";
        continue;
      }
      if (!response.ok) {
        status.textContent = "";
        showError($("file-error"), describeError(response.status, body));
        return;
      }
      renderFile(body, list);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      status.textContent = `${file.name}: done in ${seconds} s (${model}, ${format}).`;
      return;
    }
  } catch (err) {
    status.textContent = "";
    showError($("file-error"), `The request failed: ${err.message}`);
  }
}

function renderFile(body, list) {
  const segments = Array.isArray(body.segments) ? body.segments : null;
  if (!segments) {
    // json: the text alone, with no times to show.
    list.append(el("li", "segment untimed", body.text ?? ""));
    return;
  }
  for (const segment of segments) {
    const line = el("li", "segment");
    line.dataset.start = segment.start;
    line.dataset.end = segment.end;
    line.append(el("span", "time", `[${clock(segment.start)} → ${clock(segment.end)}]`), " ");
    if (segment.speaker !== undefined && segment.speaker !== null) {
      line.dataset.speaker = segment.speaker;
      line.append(el("span", "speaker", `(${segment.speaker})`), " ");
    }
    line.append(el("span", "text", segment.text.trim()));
    list.append(line);
  }
  if (!segments.length) list.append(el("li", "segment untimed", "(no speech recognised)"));
}

function setUpFile() {
  const zone = $("drop-zone");
  const input = $("file-input");
  input.addEventListener("change", () => {
    if (input.files.length) transcribeFile(input.files[0]);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) transcribeFile(file);
  });
}

// --- live: capture, resampling, PCM ------------------------------------------------------------

// Runs in the audio thread: hands the (already mono, see channelCount below) input to the page in
// blocks of 2048 frames rather than Web Audio's 128, so the page gets ~23 messages a second.
const TAP_WORKLET = `
class EarshotTap extends AudioWorkletProcessor {
  constructor() { super(); this.block = new Float32Array(2048); this.filled = 0; }
  process(inputs) {
    const channel = inputs[0][0];
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.block.length - this.filled);
        this.block.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block, [this.block.buffer]);
          this.block = new Float32Array(2048);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("earshot-tap", EarshotTap);
`;

// Streaming band-limited resampler: a Blackman-windowed sinc evaluated at each output instant,
// from a table of 256 fractional phases. Speech from a 44.1/48 kHz microphone is low-passed below
// 12 kHz before it is decimated to 24 kHz, so nothing folds back into the band Whisper hears.
class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;
    const cutoff = 0.5 * Math.min(1, 1 / this.step) * 0.95; // cycles per input sample
    this.half = Math.ceil(10 / (2 * cutoff)); // ten zero crossings each side
    this.phases = 256;
    this.table = [];
    for (let p = 0; p < this.phases; p++) {
      const frac = p / this.phases;
      const taps = new Float32Array(2 * this.half);
      let sum = 0;
      for (let j = -this.half + 1; j <= this.half; j++) {
        const u = j - frac;
        const x = 2 * cutoff * u;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const w = u / this.half;
        const window = Math.abs(w) >= 1 ? 0 : 0.42 + 0.5 * Math.cos(Math.PI * w) + 0.08 * Math.cos(2 * Math.PI * w);
        taps[j + this.half - 1] = sinc * window;
        sum += sinc * window;
      }
      for (let k = 0; k < taps.length; k++) taps[k] /= sum; // unity gain at DC
      this.table.push(taps);
    }
    this.buffer = new Float32Array(this.half); // zeros before the first sample
    this.t = this.half; // where the next output sample sits, in buffer indices
  }

  push(input) {
    const buffer = new Float32Array(this.buffer.length + input.length);
    buffer.set(this.buffer);
    buffer.set(input, this.buffer.length);
    const out = [];
    let t = this.t;
    while (Math.floor(t) + this.half < buffer.length) {
      const base = Math.floor(t);
      const taps = this.table[Math.min(this.phases - 1, Math.round((t - base) * this.phases))];
      const start = base - this.half + 1;
      let acc = 0;
      for (let k = 0; k < taps.length; k++) acc += buffer[start + k] * taps[k];
      out.push(acc);
      t += this.step;
    }
    const keep = Math.max(0, Math.floor(t) - this.half + 1);
    this.buffer = buffer.slice(keep);
    this.t = t - keep;
    return Float32Array.from(out);
  }

  flush() {
    return this.push(new Float32Array(this.half));
  }
}

function pcm16Base64(samples) {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(2 * i, Math.round(s < 0 ? s * 0x8000 : s * 0x7fff), true);
  }
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function openTap(context, source, onSamples) {
  // Mono by the Web Audio mixing rules: the tap takes one channel, explicitly.
  const options = { channelCount: 1, channelCountMode: "explicit", channelInterpretation: "speakers" };
  // A muted path to the destination keeps the graph pulling the tap without playing the mic back.
  const mute = context.createGain();
  mute.gain.value = 0;
  mute.connect(context.destination);
  if (context.audioWorklet && typeof AudioWorkletNode === "function") {
    const url = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
    try {
      await context.audioWorklet.addModule(url);
      const node = new AudioWorkletNode(context, "earshot-tap", { ...options, numberOfInputs: 1, numberOfOutputs: 1 });
      node.port.onmessage = (event) => onSamples(event.data);
      source.connect(node).connect(mute);
      return { node, kind: "AudioWorklet" };
    } catch (err) {
      console.warn("AudioWorklet unavailable, using ScriptProcessor:", err);
    } finally {
      URL.revokeObjectURL(url);
    }
  }
  const node = context.createScriptProcessor(4096, 1, 1);
  node.onaudioprocess = (event) => onSamples(new Float32Array(event.inputBuffer.getChannelData(0)));
  source.connect(node).connect(mute);
  return { node, kind: "ScriptProcessor" };
}

// --- live: the realtime session ------------------------------------------------------------------

const live = {
  state: "idle", // idle | starting | running | stopping
  socket: null,
  stream: null,
  context: null,
  tap: null,
  resampler: null,
  queued: [], // 24 kHz samples not yet sent, in order
  queuedLength: 0,
  items: new Map(), // item_id -> its <li>
  awaitingCommit: false,
  settle: null, // resolves when stopping has nothing left to wait for
};

function liveStatus(text) {
  $("live-status").textContent = text;
}

function liveError(message) {
  const box = $("live-error");
  box.hidden = false;
  box.append(el("p", null, message));
}

function setButton() {
  const button = $("live-button");
  button.textContent = live.state === "idle" ? "Start microphone" : "Stop";
  button.disabled = live.state === "starting" || live.state === "stopping";
}

function realtimeUrl() {
  const url = apiUrl("v1/realtime?intent=transcription");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function send(event) {
  if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify(event));
}

function enqueue(samples) {
  if (!samples.length) return;
  live.queued.push(samples);
  live.queuedLength += samples.length;
  sendQueued(false);
}

// Sends whole ~100 ms chunks as they fill up; `all` also sends the last partial one (on stop).
function sendQueued(all) {
  if (!live.socket || live.socket.readyState !== WebSocket.OPEN || live.state === "starting") return;
  while (live.queuedLength >= CHUNK || (all && live.queuedLength > 0)) {
    const n = Math.min(CHUNK, live.queuedLength);
    const chunk = new Float32Array(n);
    let filled = 0;
    while (filled < n) {
      const head = live.queued[0];
      const take = Math.min(head.length, n - filled);
      chunk.set(head.subarray(0, take), filled);
      filled += take;
      if (take === head.length) live.queued.shift();
      else live.queued[0] = head.subarray(take);
    }
    live.queuedLength -= n;
    send({ type: "input_audio_buffer.append", audio: pcm16Base64(chunk) });
  }
}

function itemLine(id) {
  let line = live.items.get(id);
  if (!line) {
    line = el("li", "item");
    line.dataset.itemId = id;
    line.append(el("span", "time"), el("span", "marker"), el("span", "text"));
    live.items.set(id, line);
    $("live-transcript").append(line);
  }
  return line;
}

function setLine(line, state, { marker, text, time } = {}) {
  line.classList.remove("listening", "transcribing", "in-progress", "completed", "failed");
  line.classList.add(state);
  if (marker !== undefined) line.querySelector(".marker").textContent = marker;
  if (text !== undefined) line.querySelector(".text").textContent = text;
  if (time !== undefined) line.querySelector(".time").textContent = time;
}

const isDone = (line) => line.classList.contains("completed") || line.classList.contains("failed");

function checkSettled() {
  if (live.state !== "stopping" || live.awaitingCommit) return;
  if ([...live.items.values()].some((line) => !isDone(line))) return;
  live.settle?.();
}

function onServerEvent(event) {
  switch (event.type) {
    case "session.created":
      liveStatus("Connected.");
      break;
    case "session.updated":
      if (live.state === "running") liveStatus("Listening to the microphone.");
      break;
    case "input_audio_buffer.speech_started": {
      const line = itemLine(event.item_id);
      line.dataset.start = event.audio_start_ms;
      setLine(line, "listening", { marker: "listening…", time: `[${clock(event.audio_start_ms / 1000)}] ` });
      break;
    }
    case "input_audio_buffer.speech_stopped": {
      const line = itemLine(event.item_id);
      line.dataset.end = event.audio_end_ms;
      if (!isDone(line)) setLine(line, "transcribing", { marker: "transcribing…" });
      break;
    }
    case "input_audio_buffer.committed": {
      live.awaitingCommit = false;
      const line = itemLine(event.item_id);
      if (!isDone(line) && !line.classList.contains("in-progress")) setLine(line, "transcribing", { marker: "transcribing…" });
      break;
    }
    case "conversation.item.added":
    case "conversation.item.done":
      if (event.item?.id) itemLine(event.item.id);
      break;
    case "conversation.item.input_audio_transcription.delta": {
      const line = itemLine(event.item_id);
      if (isDone(line)) break;
      const text = line.classList.contains("in-progress") ? line.querySelector(".text").textContent : "";
      setLine(line, "in-progress", { marker: "", text: text + event.delta });
      break;
    }
    case "conversation.item.input_audio_transcription.completed": {
      const line = itemLine(event.item_id);
      const transcript = (event.transcript || "").trim();
      setLine(line, "completed", { marker: transcript ? "" : "(nothing recognised)", text: transcript });
      break;
    }
    case "conversation.item.input_audio_transcription.failed": {
      const line = itemLine(event.item_id);
      setLine(line, "failed", { marker: "", text: `transcription failed: ${event.error?.message || "unknown error"}` });
      break;
    }
    case "error": {
      // Stop commits whatever is buffered; with nothing buffered the server says so with an
      // error, which is no news to the user.
      if (live.awaitingCommit && live.state === "stopping") {
        live.awaitingCommit = false;
        if (/commit_empty|buffer/i.test(`${event.error?.code} ${event.error?.message}`)) {
          console.info("Nothing left to commit:", event.error?.message);
          break;
        }
      }
      liveError(describeError(0, event));
      break;
    }
    default:
      break;
  }
  checkSettled();
}

async function startLive() {
  live.state = "starting";
  setButton();
  $("live-error").replaceChildren();
  $("live-error").hidden = true;
  $("live-transcript").replaceChildren();
  live.items.clear();
  live.queued = [];
  live.queuedLength = 0;
  const model = $("model").value;
  try {
    liveStatus("Asking for the microphone…");
    // Raw audio: echo cancellation, noise suppression and gain control are tuned for calls and
    // cost recognition accuracy.
    live.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
    live.context = new AudioContext();
    await live.context.resume();
    live.resampler = new Resampler(live.context.sampleRate, LIVE_RATE);
    const source = live.context.createMediaStreamSource(live.stream);
    live.tap = await openTap(live.context, source, (samples) => {
      // Blocks still in flight from the audio thread after Stop would land after the commit.
      if (live.state === "starting" || live.state === "running") enqueue(live.resampler.push(samples));
    });
    console.info(`microphone: ${live.context.sampleRate} Hz through ${live.tap.kind}, sent at ${LIVE_RATE} Hz`);
  } catch (err) {
    liveError(`Could not use the microphone: ${err.message}`);
    await teardown();
    return;
  }
  liveStatus("Connecting…");
  const key = $("api-key").value.trim();
  const socket = new WebSocket(realtimeUrl(), key ? ["realtime", `openai-insecure-api-key.${key}`] : ["realtime"]);
  live.socket = socket;
  socket.onopen = () => {
    send({
      type: "session.update",
      session: {
        type: "transcription",
        audio: {
          input: {
            format: { type: "audio/pcm", rate: LIVE_RATE },
            transcription: { model },
            turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
          },
        },
      },
    });
    live.state = "running";
    setButton();
    liveStatus("Listening to the microphone.");
    sendQueued(false);
  };
  socket.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      return;
    }
    onServerEvent(event);
  };
  socket.onclose = (close) => {
    if (live.socket !== socket) return;
    live.socket = null;
    if (live.state === "stopping") {
      live.settle?.();
    } else if (live.state === "starting") {
      // Browsers hide why an upgrade was refused (a wrong key is a 401 the page never sees).
      liveError("Could not open the realtime connection: the server refused it (check the API key) or is unreachable.");
      teardown();
    } else if (live.state !== "idle") {
      liveError(`The connection closed (code ${close.code}${close.reason ? `: ${close.reason}` : ""}).`);
      teardown();
    }
  };
}

async function stopLive() {
  live.state = "stopping";
  setButton();
  liveStatus("Finishing…");
  await stopCapture();
  if (live.resampler) enqueue(live.resampler.flush());
  live.resampler = null;
  sendQueued(true);
  const settled = new Promise((resolve) => {
    live.settle = resolve;
  });
  if (live.socket && live.socket.readyState === WebSocket.OPEN) {
    live.awaitingCommit = true;
    send({ type: "input_audio_buffer.commit" });
  }
  checkSettled();
  const timeout = new Promise((resolve) => setTimeout(() => resolve("timeout"), STOP_WAIT_MS));
  if ((await Promise.race([settled, timeout])) === "timeout") {
    liveError("Stopped before every transcript arrived (waited 10 s).");
  }
  await teardown();
}

async function stopCapture() {
  live.stream?.getTracks().forEach((track) => track.stop());
  live.tap?.node.disconnect();
  if (live.context && live.context.state !== "closed") await live.context.close();
  live.stream = live.tap = live.context = null;
}

async function teardown() {
  await stopCapture();
  const socket = live.socket;
  live.socket = null;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
  live.state = "idle";
  live.settle = null;
  live.awaitingCommit = false;
  setButton();
  liveStatus($("live-error").hidden ? "Stopped." : "");
}

function setUpLive() {
  const button = $("live-button");
  if (!navigator.mediaDevices?.getUserMedia) {
    button.disabled = true;
    liveStatus("This browser gives no microphone here (it needs https or localhost).");
    return;
  }
  button.addEventListener("click", () => {
    if (live.state === "idle") startLive();
    else if (live.state === "running") stopLive();
  });
}

// --- start -------------------------------------------------------------------------------------

function setUpKey() {
  // Enter in the key field would submit the form and reload the page.
  $("settings").addEventListener("submit", (event) => event.preventDefault());
  const input = $("api-key");
  input.value = localStorage.getItem(KEY_STORE) || "";
  input.addEventListener("change", () => {
    const key = input.value.trim();
    if (key) localStorage.setItem(KEY_STORE, key);
    else localStorage.removeItem(KEY_STORE);
    loadModels();
  });
}

setUpKey();
setUpFile();
setUpLive();
loadModels();
