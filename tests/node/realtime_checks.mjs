// Holds two realtime transcription sessions against a live Earshot (REAL Whisper weights) with the
// official Node SDK's `OpenAIRealtimeWS`, and prints every server event each session received, as
// JSON (the Python side, tests/test_node_realtime.py, judges them).
// Usage: node realtime_checks.mjs BASE_URL PCM24_FILE TURNS MULAW_FILE
//   PCM24_FILE: raw 16-bit little-endian mono PCM at 24 kHz, spoken in TURNS turns (server VAD);
//   MULAW_FILE: raw G.711 μ-law at 8 kHz, committed by hand as one item.
//
// The SDK always connects with TLS: it turns the client's base URL into `wss://…/realtime` and
// refuses any other scheme. So BASE_URL is an Earshot serving HTTPS (EARSHOT_SSL_CERTFILE), whose
// certificate Node is told to trust (NODE_EXTRA_CA_CERTS); the SDK is used as it comes.
import fs from "node:fs";
import OpenAI from "openai";
import { OpenAIRealtimeWS } from "openai/realtime/ws";

const [baseURL, pcmPath, turns, mulawPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const pkg = (name) => JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
const results = { version: pkg("openai"), ws: pkg("ws"), sessions: {} };

// ~100 ms of audio per append: 4800 bytes of PCM16 at 24 kHz, 800 bytes of μ-law at 8 kHz.
const CHUNK = { "audio/pcm": 4800, "audio/pcmu": 800 };
const TIMEOUT_MS = 60_000;
// After the last expected `completed`, how long to go on listening for anything unexpected.
const GRACE_MS = 500;

async function session(name, { update, audio, commit, completions }) {
  const t0 = performance.now();
  const record = {
    url: null, events: [], at_ms: [], errors: [], closed: null, timed_out: false, exception: null,
  };
  results.sessions[name] = record;
  const since = () => Math.round(performance.now() - t0);
  let rt;
  try {
    rt = new OpenAIRealtimeWS(
      { intent: "transcription" },
      client,
    );
  } catch (err) {
    record.exception = String(err && err.stack ? err.stack : err);
    return;
  }
  record.url = rt.url.href;
  const waiters = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  rt.on("event", (event) => {
    record.events.push(event);
    record.at_ms.push(since());
    wake();
  });
  // API `error` events and transport failures alike: recorded, never thrown.
  rt.on("error", (err) => {
    record.errors.push({ message: err.message, error: err.error ?? null, event_id: err.event_id ?? null });
    wake();
  });
  const closed = new Promise((resolve) => rt.socket.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
  closed.then((c) => {
    record.closed = c;
    wake();
  });
  const deadline = performance.now() + TIMEOUT_MS;
  // Resolves once `done()` holds; false on timeout, on a closed socket, or on an SDK error.
  const until = async (done) => {
    while (!done()) {
      if (record.closed || record.errors.length || performance.now() > deadline) {
        if (performance.now() > deadline) record.timed_out = true;
        return false;
      }
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - performance.now() + 1));
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  };
  const count = (type) => record.events.filter((e) => e.type === type).length;
  try {
    if (!(await until(() => count("session.created") === 1))) return;
    rt.send({ type: "session.update", session: update });
    if (!(await until(() => count("session.updated") === 1))) return;
    const step = CHUNK[update.audio.input.format.type];
    for (let i = 0; i < audio.length; i += step) {
      rt.send({ type: "input_audio_buffer.append", audio: audio.subarray(i, i + step).toString("base64") });
    }
    if (commit) rt.send({ type: "input_audio_buffer.commit" });
    record.sent_ms = since();
    const finished = () =>
      count("conversation.item.input_audio_transcription.completed") + count("conversation.item.input_audio_transcription.failed");
    if (!(await until(() => finished() >= completions))) return;
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS));
  } finally {
    record.finished_ms = since();
    rt.close();
    let timer;
    await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
    clearTimeout(timer);
  }
}

await session("vad", {
  update: {
    type: "transcription",
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        transcription: { model: "gpt-4o-transcribe" },
        turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
      },
    },
    include: ["item.input_audio_transcription.logprobs"],
  },
  audio: fs.readFileSync(pcmPath),
  commit: false,
  completions: Number(turns),
});
await session("manual", {
  update: {
    type: "transcription",
    audio: { input: { format: { type: "audio/pcmu" }, transcription: { model: "gpt-4o-transcribe" }, turn_detection: null } },
  },
  audio: fs.readFileSync(mulawPath),
  commit: true,
  completions: 1,
});

console.log(JSON.stringify(results));
