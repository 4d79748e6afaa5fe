"""Broken multipart bodies, made in the tests: a well-formed body written part by part, then
damaged the ways clients and attackers damage them (cut short, boundary missing or wrong, parts
with absurd names, sizes and counts, bytes that are not UTF-8, names nested or JSON-encoded until
parsers recurse).

`body(parts)` writes exact bytes (no HTTP library normalises anything); `mutations(...)` and the
Hypothesis strategy `broken_bodies()` derive the broken variants from a valid request.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

BOUNDARY = b"hostile-boundary"


@dataclass(frozen=True)
class Part:
    name: bytes
    value: bytes
    filename: bytes | None = None
    headers: bytes = b""


def body(parts: list[Part], boundary: bytes = BOUNDARY, close: bool = True) -> bytes:
    out = bytearray()
    for part in parts:
        disposition = b'form-data; name="' + part.name + b'"'
        if part.filename is not None:
            disposition += b'; filename="' + part.filename + b'"'
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n" + part.headers + b"\r\n"
        out += part.value + b"\r\n"
    if close:
        out += b"--" + boundary + b"--\r\n"
    return bytes(out)


def content_type(boundary: bytes = BOUNDARY) -> str:
    return "multipart/form-data; boundary=" + boundary.decode("latin-1")


def request_parts(audio: bytes, filename: bytes = b"a.wav", **fields: bytes) -> list[Part]:
    extra = [Part(name.encode(), value) for name, value in fields.items()]
    return [Part(b"model", b"whisper-1"), *extra, Part(b"file", audio, filename)]


def cases(audio: bytes) -> list[tuple[str, str, bytes]]:
    """(id, content type, body): every malformation of a valid one-file request with `audio`."""
    ok = request_parts(audio)
    valid = body(ok)
    ct = content_type()
    deep = 5000
    return [
        ("empty-body", ct, b""),
        ("cut-in-first-header", ct, valid[:30]),
        ("cut-in-file", ct, valid[: len(valid) // 2]),
        ("cut-before-closing-boundary", ct, valid[: -len(BOUNDARY) - 6]),
        ("no-closing-boundary", ct, body(ok, close=False)),
        ("garbage", ct, b"\x00\xff" * 500),
        ("boundary-missing-from-header", "multipart/form-data", valid),
        ("boundary-empty", "multipart/form-data; boundary=", valid),
        ("boundary-wrong", content_type(b"other"), valid),
        ("boundary-300-bytes", content_type(b"b" * 300), body(ok, b"b" * 300)),
        ("boundary-quoted", 'multipart/form-data; boundary="hostile boundary"', valid),
        ("charset-unknown", ct + "; charset=no-such-charset", valid),
        ("part-without-name", ct, body([Part(b"", b"x"), *ok]).replace(b'name=""', b"")),
        ("part-without-disposition", ct, valid.replace(b"Content-Disposition", b"Content-Dispositiom", 1)),
        ("header-4k-name", ct, body([Part(b"n" * 5000, b"x"), *ok])),
        ("header-many", ct, body([Part(b"x", b"y", headers=b"X-A: b\r\n" * 50), *ok])),
        ("field-2mb", ct, body([Part(b"prompt", b"p" * (2 << 20)), *ok])),
        ("fields-6x1mb", ct, body([*(Part(b"f%d" % i, b"v" * 1_000_000) for i in range(6)), *ok])),
        ("fields-5000", ct, body([*(Part(b"f%d" % i, b"") for i in range(5000)), *ok])),
        ("files-50", ct, body([*(Part(b"f%d" % i, b"x", b"a.wav") for i in range(50)), *ok])),
        ("name-not-utf8", ct, body([Part(b"mod\xff\xfeel", b"whisper-1"), Part(b"file", audio, b"a.wav")])),
        ("value-not-utf8", ct, body([Part(b"model", b"\xff\xfe\xfd"), Part(b"file", audio, b"a.wav")])),
        ("filename-not-utf8", ct, body(request_parts(audio, b"\xff\xfe.wav"))),
        ("name-nested-1000", ct, body([Part(b"model" + b"[a]" * 1000, b"x"), *ok])),
        ("name-brackets-only", ct, body([Part(b"[]", b"x"), Part(b"[a][b]", b"x"), Part(b"]", b"x"), *ok])),
        ("json-list-deep", ct, body(request_parts(audio, include=b"[" * deep + b"]" * deep))),
        ("json-list-unclosed", ct, body(request_parts(audio, timestamp_granularities=b"[" * deep))),
        ("json-object-deep", ct, body(request_parts(audio, chunking_strategy=b'{"a":' * deep + b"1" + b"}" * deep))),
        ("vad-ms-huge", ct, body(request_parts(audio, **{"chunking_strategy[type]": b"server_vad",
                                                          "chunking_strategy[silence_duration_ms]": b"9" * 400}))),
        ("vad-threshold-nan", ct, body(request_parts(audio, **{"chunking_strategy[type]": b"server_vad",
                                                                "chunking_strategy[threshold]": b"nan"}))),
        ("temperature-inf", ct, body(request_parts(audio, temperature=b"inf"))),
        ("temperature-4000-digits", ct, body(request_parts(audio, temperature=b"9" * 4000))),
        ("file-twice", ct, body([*ok, Part(b"file", audio, b"b.wav")])),
        ("file-as-list", ct, body([Part(b"model", b"whisper-1"), Part(b"file[]", audio, b"a.wav")])),
        ("file-as-object", ct, body([Part(b"model", b"whisper-1"), Part(b"file[x]", audio, b"a.wav")])),
        ("model-as-file", ct, body([Part(b"model", b"whisper-1", b"m.txt"), Part(b"file", audio, b"a.wav")])),
        ("file-empty", ct, body(request_parts(b""))),
        ("urlencoded-many-fields", "application/x-www-form-urlencoded", b"include=a&" * 200_000),
        ("urlencoded-nested", "application/x-www-form-urlencoded", b"model" + b"[a]" * 20_000 + b"=x"),
        ("urlencoded-not-utf8", "application/x-www-form-urlencoded", b"model=\xff\xfe&\xff=\x00"),
    ]


# --- Hypothesis: random damage to a valid body -------------------------------------------------

@st.composite
def broken_bodies(draw, audio: bytes) -> tuple[str, bytes]:
    """A valid request, then one to three random cuts, splices, byte flips or repeats."""
    data = bytearray(body(request_parts(audio, response_format=draw(st.sampled_from([b"json", b"text", b"srt"])))))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete", "repeat", "boundary"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "cut":
            del data[at:]
        elif kind == "flip":
            for offset in draw(st.lists(st.integers(0, 64), min_size=1, max_size=8)):
                if at + offset < len(data):
                    data[at + offset] = draw(st.integers(0, 255))
        elif kind == "insert":
            token = draw(st.sampled_from([b"\r\n", b"--", b"--" + BOUNDARY, b"\r\n\r\n", b'"', b"\x00", b";"]))
            data[at:at] = token * draw(st.integers(1, 50))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 2000))] * draw(st.integers(2, 20))
        else:
            data = data.replace(BOUNDARY, draw(st.binary(min_size=0, max_size=12)), draw(st.integers(1, 3)))
    ct = draw(st.sampled_from([content_type(), content_type() + "; charset=latin-1", "multipart/form-data"]))
    return ct, bytes(data)
