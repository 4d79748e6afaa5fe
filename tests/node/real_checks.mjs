// Drives a live Earshot serving REAL Whisper weights with the official Node SDK, and prints what
// each call returned, as JSON (the Python side, tests/test_node_real_model.py, judges the words).
// Usage: node real_checks.mjs BASE_URL SPEECH.wav KEYWORDS_SPEECH.wav
import fs from "node:fs";
import OpenAI, { toFile } from "openai";
import { check, results } from "./harness.mjs";

const [baseURL, audioPath, keywordsPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
// A read stream has no known length: the SDK sends the multipart body chunked.
const audio = () => fs.createReadStream(audioPath);

const tr = client.audio.transcriptions;
const collect = async (stream) => {
  const events = [];
  for await (const ev of stream) events.push(ev);
  return events;
};

// Sent first and awaited last: the server loads its diarization pipeline on this first use (tens
// of seconds on a small CPU), while the transcription calls below go on.
const diarized = check("diarized_json", () =>
  tr.create({ file: audio(), model: "gpt-4o-transcribe-diarize", response_format: "diarized_json", chunking_strategy: "auto" }),
);

for (const format of ["json", "text", "srt", "vtt"]) {
  await check(`whisper-1/${format}`, () => tr.create({ file: audio(), model: "whisper-1", response_format: format }));
}
await check("whisper-1/verbose_json", () =>
  tr.create({ file: audio(), model: "whisper-1", response_format: "verbose_json", timestamp_granularities: ["word", "segment"] }),
);
for (const model of ["gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15"]) {
  await check(`${model}/json`, () => tr.create({ file: audio(), model }));
  await check(`${model}/text`, () => tr.create({ file: audio(), model, response_format: "text" }));
}
await check("logprobs", () => tr.create({ file: audio(), model: "gpt-4o-transcribe", include: ["logprobs"] }));
await check("to_file", async () =>
  tr.create({ file: await toFile(fs.readFileSync(audioPath), "clip.wav"), model: "gpt-4o-mini-transcribe" }),
);
await check("stream", async () => collect(await tr.create({ file: audio(), model: "gpt-4o-mini-transcribe", stream: true })));
await check("stream_auto", async () =>
  collect(await tr.create({ file: audio(), model: "gpt-4o-mini-transcribe", stream: true, chunking_strategy: "auto" })),
);
// The 2026 model: keywords and languages in, languages out (json and the stream's done event).
await check("gpt-transcribe/json", () =>
  tr.create({
    file: fs.createReadStream(keywordsPath), model: "gpt-transcribe", keywords: ["Earshot", "quick brown fox"], languages: ["en", "fr"],
  }),
);
await check("gpt-transcribe/stream", async () =>
  collect(await tr.create({ file: audio(), model: "gpt-transcribe", languages: ["en"], stream: true })),
);
await check("translation", () => client.audio.translations.create({ file: audio(), model: "whisper-1" }));
await diarized;

console.log(JSON.stringify(results));
