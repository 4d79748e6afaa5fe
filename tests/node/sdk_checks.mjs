// Drives a live Earshot with the official Node SDK and prints what it returned, as JSON.
// Usage: node sdk_checks.mjs BASE_URL AUDIO.wav SPEECH.ogg
import fs from "node:fs";
import OpenAI, { toFile } from "openai";
import { check, results } from "./harness.mjs";

const [baseURL, audioPath, speechPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "sk-test-1234", maxRetries: 0 });
const audio = () => fs.createReadStream(audioPath);

const tr = client.audio.transcriptions;
await check("json", () => tr.create({ file: audio(), model: "whisper-1" }));
await check("text", () => tr.create({ file: audio(), model: "whisper-1", response_format: "text" }));
await check("srt", () => tr.create({ file: audio(), model: "whisper-1", response_format: "srt" }));
await check("vtt", () => tr.create({ file: audio(), model: "whisper-1", response_format: "vtt" }));
await check("verbose", () =>
  tr.create({ file: audio(), model: "whisper-1", response_format: "verbose_json", timestamp_granularities: ["word", "segment"] }),
);
await check("logprobs", () => tr.create({ file: audio(), model: "gpt-4o-transcribe", include: ["logprobs"], temperature: 0 }));
await check("to_file", async () =>
  tr.create({ file: await toFile(fs.readFileSync(audioPath), "speech.wav"), model: "gpt-4o-mini-transcribe" }),
);
await check("chunking_object", () =>
  tr.create({ file: fs.createReadStream(speechPath), model: "whisper-1", chunking_strategy: { type: "server_vad", threshold: 0.4 } }),
);
await check("stream", async () => {
  const events = [];
  const stream = await tr.create({ file: audio(), model: "gpt-4o-transcribe", stream: true, include: ["logprobs"] });
  for await (const ev of stream) events.push(ev);
  return events;
});
await check("stream_whisper1", async () => {
  const events = [];
  const stream = await tr.create({ file: audio(), model: "whisper-1", stream: true });
  for await (const ev of stream) events.push(ev);
  return events;
});
await check("translation", () => client.audio.translations.create({ file: audio(), model: "whisper-1" }));
await check("translation_text", () =>
  client.audio.translations.create({ file: audio(), model: "whisper-1", response_format: "text" }),
);
await check("models", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return ids;
});
await check("model", () => client.models.retrieve("whisper-1"));
await check("err_missing_model", () => client.models.retrieve("no-such-model"));
await check("err_unknown_model", () => tr.create({ file: audio(), model: "whisper-9" }));
await check("err_verbose_gpt4o", () => tr.create({ file: audio(), model: "gpt-4o-transcribe", response_format: "verbose_json" }));
await check("err_format", async () => tr.create({ file: await toFile(Buffer.from("hello"), "notes.txt"), model: "whisper-1" }));
await check("err_undecodable_gpt4o", async () =>
  tr.create({ file: await toFile(Buffer.alloc(2000), "a.wav"), model: "gpt-4o-transcribe" }),
);
await check("err_too_large", async () =>
  tr.create({ file: await toFile(Buffer.alloc(26214400 + 1000), "big.wav"), model: "whisper-1" }),
);

console.log(JSON.stringify(results));
