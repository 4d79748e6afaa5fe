"""What every SDK check script shares: run a call, record what the SDK returned or raised."""

import traceback

import openai

results: dict = {"version": openai.__version__}


def dump(value):
    if hasattr(value, "model_dump"):
        return {"type": type(value).__name__, "value": value.model_dump(exclude_unset=True)}
    return {"type": type(value).__name__, "value": value}


def check(name, call):
    try:
        results[name] = {"ok": dump(call())}
    except openai.APIStatusError as exc:
        results[name] = {
            "error": type(exc).__name__,
            "status": exc.status_code,
            "message": exc.message,
            "code": exc.code,
            "param": exc.param,
            "type": exc.type,
        }
    except Exception as exc:  # report, don't crash: the test decides
        results[name] = {"exception": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
