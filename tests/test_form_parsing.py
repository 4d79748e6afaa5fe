"""Form normalisation: every way the SDKs, curl and other clients spell fields."""

from app.multipart import normalise


def test_bracket_arrays_and_bare_repeats_become_lists():
    items = [
        ("timestamp_granularities[]", "word"),
        ("timestamp_granularities[]", "segment"),
        ("include", "logprobs"),
        ("known_speaker_names[]", "alice"),
    ]
    assert normalise(items) == {
        "timestamp_granularities": ["word", "segment"],
        "include": ["logprobs"],
        "known_speaker_names": ["alice"],
    }


def test_bare_repeated_field_is_a_list():
    assert normalise([("include", "logprobs"), ("include", "logprobs")]) == {"include": ["logprobs", "logprobs"]}


def test_bracket_object_and_nested_forms():
    items = [
        ("chunking_strategy[type]", "server_vad"),
        ("chunking_strategy[threshold]", "0.5"),
        ("a[b][]", "1"),
        ("a[b][]", "2"),
    ]
    assert normalise(items) == {
        "chunking_strategy": {"type": "server_vad", "threshold": "0.5"},
        "a": {"b": ["1", "2"]},
    }


def test_json_strings_for_lists_are_decoded():
    assert normalise([("timestamp_granularities", '["word", "segment"]')]) == {
        "timestamp_granularities": ["word", "segment"]
    }
    # A JSON-looking but broken value stays a single element, for the validator to reject.
    assert normalise([("include", "[logprobs")]) == {"include": ["[logprobs"]}


def test_scalar_fields_pass_through_untouched():
    assert normalise([("model", "whisper-1"), ("temperature", "0.0"), ("stream", "true")]) == {
        "model": "whisper-1",
        "temperature": "0.0",
        "stream": "true",
    }
