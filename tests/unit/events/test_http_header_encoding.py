"""Percent-encoding of HTTP binary-mode header values (HTTP binding §3.1.3.2)."""

from __future__ import annotations

import pytest

from streamml.common import cloudevent_rules as rules
from streamml.common.errors import InvalidEventError
from streamml.common.events import from_http, new_event, to_http_binary

BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/tests", "ce-type": "io.test", "content-type": "application/json"}


def subject_of(value: str) -> str:
    [event] = from_http(BINARY | {"ce-subject": value}, b"{}")
    return event.get_subject()


def test_spec_example_is_encoded_exactly():
    assert rules.percent_encode("Euro \u20ac \U0001f600") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


@pytest.mark.parametrize("char", [" ", '"', "%", "\u00e9", "\u007f", "\u0085", "\t"])
def test_reserved_characters_are_encoded(char):
    encoded = rules.percent_encode(f"a{char}b")
    assert encoded.startswith("a%")
    assert encoded.endswith("b")


def test_other_printable_ascii_is_left_alone():
    printable = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')
    assert rules.percent_encode(printable) == printable


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        ("Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro \u20ac \U0001f600"),
        ("Euro%20%e2%82%ac", "Euro \u20ac"),  # decoding MUST accept lower-case hex
        ("%41bc", "Abc"),  # unnecessarily encoded values MUST be accepted
        ('"quoted \\"value\\" %25"', 'quoted "value" %'),  # double-quoted strings MUST be supported
        ("plain value", "plain value"),  # older senders did not encode spaces
        ("  padded  ", "padded"),  # optional whitespace around a header value is not part of it
    ],
)
def test_header_values_are_decoded(header, subject):
    assert subject_of(header) == subject


@pytest.mark.parametrize(
    ("header", "mention"),
    [
        ("%C0%A0", "not valid UTF-8"),  # overlong encoding of U+0020, which MUST be rejected
        ("%FF", "not valid UTF-8"),
        ("%ED%A0%80", "not valid UTF-8"),  # an encoded surrogate
        ("100%", "does not start a %XX escape"),
        ("%zz", "does not start a %XX escape"),
        ("caf\u00e9", "U+00E9"),  # a raw non-ASCII character (a latin-1 decoded header)
        ("a\u0000b", "U+0000"),
        ('"unterminated', "unterminated quoted-string"),
        ("a%0Ab", "U+000A"),  # decodes to a control character, which a String MUST NOT hold
    ],
)
def test_bad_header_values_are_rejected(header, mention):
    with pytest.raises(InvalidEventError) as raised:
        subject_of(header)
    assert "ce-subject" in raised.value.message
    assert mention in raised.value.message


@pytest.mark.parametrize("subject", ["Z\u00fcrich", "\u6771\u4eac", "a b\"c%d", "\U0001f600 emoji", "100% sure"])
def test_non_ascii_subject_round_trips(subject):
    event = new_event(type="io.test", source="/tests", subject=subject, data={"x": 1}, id="\u00e9v\u00e9nement 1")
    headers, body = to_http_binary(event)
    assert all(value.isascii() and value.isprintable() and " " not in value for value in headers.values())
    [decoded] = from_http(headers, body)
    assert decoded.get_subject() == subject
    assert decoded.get_id() == "\u00e9v\u00e9nement 1"
    assert decoded.get_extension("partitionkey") == subject


def test_header_names_are_case_insensitive():
    [event] = from_http({"CE-SpecVersion": "1.0", "Ce-Id": "1", "ce-SOURCE": "/x", "ce-type": "t", "ce-MyExt": "v"}, b"")
    assert event.get_attributes() == {"specversion": "1.0", "id": "1", "source": "/x", "type": "t", "myext": "v"}
