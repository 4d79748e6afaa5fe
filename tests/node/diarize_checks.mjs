// Drives a live Earshot's diarization with the official Node SDK and prints the results, as JSON.
// Usage: node diarize_checks.mjs BASE_URL MEETING_AUDIO KNOWN_SPEAKERS.json   ({"names": [...], "references": [...]})
// Node has no extra_body: known speakers go at the top level of the request, as its users pass them.
import fs from "node:fs";
import OpenAI from "openai";
import { check, results } from "./harness.mjs";

const [baseURL, audioPath, knownPath] = process.argv.slice(2);
const { names, references } = JSON.parse(fs.readFileSync(knownPath, "utf8"));
const client = new OpenAI({ baseURL, apiKey: "sk-test-1234", maxRetries: 0 });
const audio = () => fs.createReadStream(audioPath);

const tr = client.audio.transcriptions;
const diarize = { model: "gpt-4o-transcribe-diarize", response_format: "diarized_json", chunking_strategy: "auto" };
await check("diarized_known", () =>
  tr.create({ file: audio(), ...diarize, known_speaker_names: names, known_speaker_references: references }),
);
await check("text", () => tr.create({ file: audio(), model: "gpt-4o-transcribe-diarize", response_format: "text" }));
await check("stream", async () => {
  const events = [];
  const stream = await tr.create({ file: audio(), ...diarize, stream: true });
  for await (const ev of stream) events.push(ev);
  return events;
});
await check("err_granularities", () => tr.create({ file: audio(), ...diarize, timestamp_granularities: ["word"] }));
await check("err_mismatch", () =>
  tr.create({ file: audio(), ...diarize, known_speaker_names: names, known_speaker_references: references.slice(1) }),
);

console.log(JSON.stringify(results));
