"""Zero network: the server works with no network at all and never tries to reach one.

One run of tests/offline_session.py: the server under the socket guard and under strace (every
connect/sendto/sendmsg of every thread and child, native libraries included), inside a network
namespace whose only interface is loopback (`unshare -n`) where this machine allows one (else
under the guard alone, and the namespace tests are skipped with the reason). It loads the speech
and diarization models, chunks, diarizes with known speakers, streams, and sends every response format
of transcriptions and translations, a stream, and requests for models that are not on the host.
The guard's log must stay empty from start to shutdown; the controls below show that the guard
does see the traffic the hub client would make, and the trace the telemetry the switches stop.
The controls' servers run beside the main run's (they mostly wait), so they add little time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.render import timestamp
from tests.conftest import ROOT
from tests.offline_session import FORMATS, GUARD_DIR, MISSING_MODEL, UNCACHED_REPO, run
from tests.syscall_trace import nscd_running, outbound

ENVELOPE_KEYS = {"message", "type", "param", "code"}
# onnxruntime's telemetry, when on, made its first DNS queries 6-8 s after the first VAD run
# (measured here): the traced server runs on this long after its last request that ran the VAD.
LINGER = 10.0
# The control runs beside the main run (below), where its wait costs nothing: it waits longer, so
# that a busy machine cannot make it miss the queries it must see.
CONTROL_LINGER = 15.0


def _text(script, task: str) -> str:
    return script.text(task).strip()


def _unshare() -> tuple[list[str] | None, str]:
    """A command prefix that runs a program in a new network namespace, or why there is none here."""
    reasons = []
    for prefix in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=20)
        except FileNotFoundError:
            return None, "the unshare tool (util-linux) is not installed"
        if probe.returncode == 0:
            return prefix, ""
        reasons.append(f"`{' '.join(prefix)}`: {probe.stderr.strip()}")
    return None, "cannot create a network namespace here (needs root or unprivileged user namespaces): " + "; ".join(
        reasons
    )


def _session(prefix: list[str], work, **config) -> dict:
    path = work / "config.json"
    path.write_text(json.dumps({"work": str(work / "session"), **config}))
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "tests.offline_session", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def _traceable() -> str:
    """Why the syscall trace cannot be trusted here, or ''."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install strace)"
    if nscd_running():
        return "nscd runs on this host: it would answer host lookups without a DNS query the trace could see"
    return ""


@pytest.fixture(scope="module")
def controls(whisper_model_dir, tmp_path_factory):
    """The two control runs, each its own server (telemetry switches undone, traced in a namespace
    of its own; downloads allowed, under the guard), started before the main run and left to run
    beside it: they spend most of their time waiting, while the main run's server mostly imports
    torch and pyannote on one core. Each test below takes its run's result."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            "telemetry": pool.submit(
                _telemetry_control, whisper_model_dir, tmp_path_factory.mktemp("telemetry-control")
            ),
            "downloads": pool.submit(
                run, whisper_model_dir, tmp_path_factory.mktemp("downloads-control"),
                {"EARSHOT_ALLOW_DOWNLOADS": "1"}, False,
            ),
        }


@pytest.fixture(scope="module")
def offline_run(controls, whisper_model_dir, diarization_pipeline_dir, tmp_path_factory) -> dict:
    """The session inside a loopback-only network namespace where one can be made, else under the guard alone."""
    work = tmp_path_factory.mktemp("offline")
    prefix, reason = _unshare()
    if prefix is None:
        return {**run(whisper_model_dir, work / "session"), "no_namespace": reason}
    untraceable = _traceable()
    # Traced, the Python guard is left out: the trace sees all it sees, and more.
    home = work / "home"
    report = _session(
        prefix, work, model_dir=str(whisper_model_dir), chunked=True, diarization_dir=str(diarization_pipeline_dir),
        trace=not untraceable, linger=LINGER, env=_fresh_home(home), **({"site_dir": None} if not untraceable else {}),
    )
    return {**report, "untraceable": untraceable, "home": str(home)}


def _fresh_home(home) -> dict[str, str]:
    """onnxruntime's telemetry keeps a queue and its retry state in ~/.cache/Microsoft/…: each run
    starts without one, so what it does does not depend on earlier runs."""
    home.mkdir(parents=True, exist_ok=True)
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}


def check_every_format(report: dict, script) -> None:
    answers = report["answers"]
    assert not report["guard"], "network attempts:\n" + "\n".join(
        f"{g['event']} {g['target']}\n{g['stack']}" for g in report["guard"]
    )
    for task in ("transcriptions", "translations"):
        expected = _text(script, "transcribe" if task == "transcriptions" else "translate")
        segments = script.segments("transcribe" if task == "transcriptions" else "translate")
        got = {fmt: answers[f"{task}/{fmt}"] for fmt in FORMATS}
        for fmt, answer in got.items():
            assert answer["status"] == 200, (task, fmt, answer)
        assert json.loads(got["json"]["body"])["text"] == expected
        assert got["text"]["body"] == expected + "\n"
        first = segments[0]
        assert got["srt"]["body"].startswith(
            f"1\n{timestamp(first.start, ',')} --> {timestamp(first.end, ',')}\n{first.text.strip()}\n"
        )
        assert got["vtt"]["body"].startswith(
            f"WEBVTT\n\n{timestamp(first.start, '.')} --> {timestamp(first.end, '.')}\n{first.text.strip()}\n"
        )
        verbose = json.loads(got["verbose_json"]["body"])
        assert verbose["text"] == expected
        assert [s["text"] for s in verbose["segments"]] == [s.text for s in segments]
    assert json.loads(answers["transcriptions/verbose_json"]["body"])["words"]

    stream = answers["transcriptions/stream"]
    assert stream["status"] == 200 and stream["content_type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: ") :]) for line in stream["body"].splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "transcript.text.done" and events[-1]["text"] == _text(script, "transcribe")

    assert {m["id"] for m in json.loads(answers["models"]["body"])["data"]} >= {"whisper-1", "missing-model"}


def check_missing_models(report: dict) -> None:
    """A model that is not on the host is a clear 404 naming it and how to bring it in, not a hub attempt."""
    for key, name in (("missing-model", MISSING_MODEL), ("hub-model", UNCACHED_REPO)):
        answer = report["answers"][key]
        assert answer["status"] == 404, answer
        assert answer["content_type"] == "application/json"
        error = json.loads(answer["body"])["error"]
        assert set(error) == ENVELOPE_KEYS
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert repr(name) in error["message"]
        assert "earshot models pull" in error["message"] and "earshot models import" in error["message"]
    hub_error = json.loads(report["answers"]["hub-model"]["body"])["error"]["message"]
    assert f"earshot models pull {UNCACHED_REPO}" in hub_error and "downloads are off" in hub_error
    assert "Traceback" not in report["server_log"]


def test_every_format_with_no_network_and_no_attempt_to_reach_one(offline_run, script):
    check_every_format(offline_run, script)
    check_missing_models(offline_run)


def test_no_thread_or_library_tried_to_reach_a_network(offline_run):
    """Not one connect/send outside loopback, and no DNS query, from start-up to shutdown."""
    if "no_namespace" in offline_run:
        pytest.skip(offline_run["no_namespace"])
    if offline_run["untraceable"]:
        pytest.skip(offline_run["untraceable"])
    answers = offline_run["answers"]
    for key in ("chunked/auto", "chunked/server_vad", "diarized/known", "diarized/stream"):
        assert answers[key]["status"] == 200, (key, answers[key])
    known = json.loads(answers["diarized/known"]["body"])
    assert {s["speaker"] for s in known["segments"]} & {"Ann", "Bo"}, known
    assert offline_run["outbound"] == [], "\n".join(offline_run["outbound"])
    # Nor did onnxruntime's telemetry queue anything to send later.
    assert not (Path(offline_run["home"]) / ".cache" / "Microsoft").exists()


def _telemetry_control(model_dir, work) -> dict:
    """The same server with engines/telemetry.py undone (tests/telemetry_on), traced in a namespace
    of its own; {"skip": why} where that cannot be."""
    prefix, reason = _unshare()
    if prefix is None:
        return {"skip": reason}  # outside a namespace the queries would really leave the machine
    if untraceable := _traceable():
        return {"skip": untraceable}
    report = _session(
        prefix, work, model_dir=str(model_dir), trace=True, every_format=False, chunked=True,
        site_dir=str(ROOT / "tests" / "telemetry_on"), linger=CONTROL_LINGER, env=_fresh_home(work / "home"),
    )
    return {**report, "home": str(work / "home")}


def test_the_trace_sees_the_telemetry_that_the_switches_stop(controls):
    """Control: the same server with engines/telemetry.py undone (tests/telemetry_on) makes DNS
    queries (onnxruntime's 1DS telemetry, for mobile.events.data.microsoft.com), and the trace
    reports them: the empty result above is the switches' doing, not a blind trace."""
    report = controls["telemetry"].result()
    if "skip" in report:
        pytest.skip(report["skip"])
    assert report["answers"]["chunked/auto"]["status"] == 200
    assert (Path(report["home"]) / ".cache" / "Microsoft").exists()  # its event queue
    assert any(line.startswith("DNS query") for line in report["outbound"]), report["outbound"]


def test_the_run_had_only_loopback(offline_run):
    if "no_namespace" in offline_run:
        pytest.skip(offline_run["no_namespace"])
    assert offline_run["interfaces"] == ["lo"]
    assert offline_run["netns"] != os.readlink("/proc/self/ns/net")


@pytest.mark.parametrize("switched_off", [False, True])
def test_offline_switches_stop_the_hub_client_that_the_guard_would_catch(tmp_path, switched_off):
    """Without the switches the guard records the hub client going out (so an empty log means
    something); with them, set after huggingface_hub was imported, the client refuses by itself."""
    log = tmp_path / "guard.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(ROOT)]), "EARSHOT_NET_GUARD_LOG": str(log)}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "PYANNOTE_METRICS_ENABLED"):
        env.pop(var, None)
    code = (
        "import os\n"
        "from huggingface_hub import HfApi\n"
        "from engines.store import offline_switches\n"
        f"if {switched_off}:\n"
        "    offline_switches(allow_downloads=False)\n"
        "try:\n"
        f"    HfApi().model_info({UNCACHED_REPO!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, os.environ.get('PYANNOTE_METRICS_ENABLED'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if switched_off:
        assert done.stdout.split() == ["OfflineModeIsEnabled", "0"]
        assert entries == []
    else:
        assert done.stdout.split()[0] == "ConnectError"
        assert any(e["target"] == "'huggingface.co'" and e["refused"] for e in entries), entries


def test_guard_sees_the_server_go_online_when_downloads_are_allowed(controls):
    """Control: the same server with EARSHOT_ALLOW_DOWNLOADS=1 does try the hub, and the guard catches it."""
    report = controls["downloads"].result()
    assert any("huggingface.co" in g["target"] and g["refused"] for g in report["guard"]), report["guard"]
    answer = report["answers"]["hub-model"]
    assert answer["status"] == 404, answer
    message = json.loads(answer["body"])["error"]["message"]
    assert "could not be downloaded" in message and f"earshot models pull {UNCACHED_REPO}" in message


@pytest.mark.parametrize(
    "line,attempt",
    [
        ('17535 connect(19, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16)'
         " = -1 ENETUNREACH (Network is unreachable)", True),
        ('9 sendto(3, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), sin6_flowinfo=htonl(0), '
         'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 1', True),
        ('9 connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0', True),
        ('9 connect(3, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("20.42.65.92")}, 16) = -1', True),
        ('9 connect(3, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
         'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1', True),
        ('9 sendmsg(5, {msg_name={sa_family=AF_INET, sin_port=htons(123), sin_addr=inet_addr("10.0.0.1")}, '
         "msg_namelen=16}, 0) = 48", True),
        ('9 connect(4, {sa_family=AF_UNIX, sun_path="/run/systemd/resolve/io.systemd.Resolve"}, 42) = 0', True),
        ('[pid  77] connect(4, {sa_family=AF_PACKET, sll_protocol=htons(ETH_P_ALL)}, 20) = 0', True),
        ('9 connect(7, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0', False),
        ('9 connect(15, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT', False),
        ("9 sendto(4, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, "
         "nl_groups=00000000}, 12) = 20", False),
        ("9 connect(19, {sa_family=AF_UNSPEC, sa_data=\"\"}, 16) = 0", False),
        ('9 sendto(7, "GET / HTTP/1.1", 14, MSG_NOSIGNAL, NULL, 0) = 14', False),
    ],
)
def test_the_trace_reader_flags_exactly_the_attempts(line, attempt):
    assert bool(outbound(line)) is attempt
