// What every Node SDK check script shares: run a call, record what the SDK returned or threw.
import fs from "node:fs";
import OpenAI from "openai";

export const results = {
  version: JSON.parse(fs.readFileSync(new URL("./node_modules/openai/package.json", import.meta.url))).version,
};

export async function check(name, call) {
  try {
    const value = await call();
    results[name] = { ok: { type: typeof value, value } };
  } catch (err) {
    if (err instanceof OpenAI.APIError) {
      results[name] = {
        error: err.constructor.name,
        status: err.status ?? null,
        message: err.message,
        code: err.code ?? null,
        param: err.param ?? null,
        type: err.type ?? null,
      };
    } else {
      results[name] = { exception: String(err && err.stack ? err.stack : err) };
    }
  }
}
