"""Parsers on messy LLM answers, each with its known reading."""

from __future__ import annotations

import pytest

from harness.llm import parse_ratings, parse_string_list

LIST_CASES = [
    # (answer, items, dropped, ok)
    ('["a cat", "a dog"]', ["a cat", "a dog"], 0, True),
    ("['a cat', \"it's a dog\"]", ["a cat", "it's a dog"], 0, True),
    ('Sure! Here are the sequences:\n["one", "two"]\nHope this helps.', ["one", "two"], 0, True),
    ('```python\n["fenced", "list"]\n```', ["fenced", "list"], 0, True),
    ('```\n[\n  "multi",\n  "line",\n]\n```', ["multi", "line"], 0, True),
    ('Text before ```json\n["j1", "j2"]\n``` and after [not this]', ["j1", "j2"], 0, True),
    ('["ok", 3, null, "", ["nested"], "fine"]', ["ok", "fine"], 4, True),
    ("['ok', None, True, 'fine']", ["ok", "fine"], 2, True),
    ('{"sequences": ["wrapped", "list"]}', ["wrapped", "list"], 0, True),
    ('["He said \\"hi\\"", "tab\\there"]', ['He said "hi"', "tab\there"], 0, True),
    ('["complete one", "complete two", "cut in the mid', ["complete one", "complete two"], 1, False),
    ('Here: ["first", "second",', ["first", "second"], 0, False),
    ("[\"it's truncated", [], 1, False),
    ("- bullet one\n- bullet two\n* star three", ["bullet one", "bullet two", "star three"], 0, False),
    ('1. "numbered one"\n2) numbered two', ["numbered one", "numbered two"], 0, False),
    ("I cannot help with that.", [], 0, False),
    ("", [], 0, False),
    ('{"results": oops, [unclosed', [], 1, False),
    ("[]", [], 0, True),
    ("[1, 2, 3]", [], 3, True),
]


@pytest.mark.parametrize(("answer", "items", "dropped", "ok"), LIST_CASES)
def test_parse_string_list_known_answers(answer, items, dropped, ok):
    parsed = parse_string_list(answer)
    assert (parsed.items, parsed.dropped, parsed.ok) == (items, dropped, ok)


RATING_CASES = [
    # (answer, expected ids, ratings, invalid, unexpected, ok)
    ('{"1": 0, "2": 2, "3": 1}', [1, 2, 3], {1: 0, 2: 2, 3: 1}, 0, 0, True),
    ("{1: 0, 2: 2}", [1, 2], {1: 0, 2: 2}, 0, 0, True),
    ("{'1': '2', '2': '0'}", [1, 2], {1: 2, 2: 0}, 0, 0, True),
    ('{"1": 2.0, "2": 1}', [1, 2], {1: 2, 2: 1}, 0, 0, True),
    ('Here are my ratings:\n```python\n{"14": 0, "15": 2}\n```', [14, 15], {14: 0, 15: 2}, 0, 0, True),
    ('Sure thing! {"7": 2, "8": 0} Let me know if you need more.', [7, 8], {7: 2, 8: 0}, 0, 0, True),
    ('{"ratings": {"1": 1, "2": 2}}', [1, 2], {1: 1, 2: 2}, 0, 0, True),
    ('{"1": 2, "2": 5, "3": -1, "4": 1.5, "5": "high"}', [1, 2, 3, 4, 5], {1: 2}, 4, 0, False),
    ('{"1": 2, "2": 0, "99": 2, "abc": 1}', [1, 2], {1: 2, 2: 0}, 0, 2, True),
    ('{"1": 2, "99": 0}', [1, 2], {1: 2}, 0, 1, False),
    ('{"1": 2, "2": 0, "3"', [1, 2, 3], {1: 2, 2: 0}, 0, 0, False),
    ('{"1": 2, "2": 0, "3": 1', [1, 2, 3], {1: 2, 2: 0, 3: 1}, 0, 0, False),
    ("{'Sequence ID 4': 2, 'Sequence ID 5': 0}", [4, 5], {4: 2, 5: 0}, 0, 0, True),
    ('{"10": 2, "11": 0,}', [10, 11], {10: 2, 11: 0}, 0, 0, True),  # a Python literal may end in a comma
    ('{\n  "1": 0, // none\n  "2": 2\n}', [1, 2], {1: 0, 2: 2}, 0, 0, False),
    ("The concept is absent everywhere.", [1, 2], {}, 0, 0, False),
    ('{"results": oops, [unclosed', [1], {}, 0, 0, False),
    ("", [1], {}, 0, 0, False),
    ('{"1": true, "2": 2}', [1, 2], {2: 2}, 1, 0, False),
    ("{}", [], {}, 0, 0, True),
]


@pytest.mark.parametrize(("answer", "ids", "ratings", "invalid", "unexpected", "ok"), RATING_CASES)
def test_parse_ratings_known_answers(answer, ids, ratings, invalid, unexpected, ok):
    parsed = parse_ratings(answer, ids)
    assert (parsed.ratings, parsed.invalid, parsed.unexpected, parsed.ok) == (ratings, invalid, unexpected, ok)


def test_parse_ratings_allowed_scale_is_configurable():
    parsed = parse_ratings('{"1": 3, "2": 1}', [1, 2], allowed=range(1, 6))
    assert parsed.ratings == {1: 3, 2: 1} and parsed.ok


@pytest.mark.parametrize("junk", [None, 42, b'["bytes"]', "[" * 5000, "{" * 5000 + "}" * 5000, "'" * 999])
def test_parsers_never_raise(junk):
    assert parse_string_list(junk).items == []
    assert parse_ratings(junk, [1]).ratings == {}
