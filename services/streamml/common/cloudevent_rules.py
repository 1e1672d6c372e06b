"""CloudEvents 1.0.2 rules that the cloudevents SDK leaves unchecked, as small reusable checks.

Each check returns the parsed value or raises `RuleError`, whose message names the
problem and the fix. `streamml.common.events` adds where the value came from and
raises InvalidEventError. Section references are to the CloudEvents spec v1.0.2
(`spec.md`, `json-format.md`, `http-protocol-binding.md`).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final
from urllib.parse import quote, unquote_to_bytes

from pydantic_core import PydanticSerializationError, TzInfo, from_json, to_json

SPECVERSION: Final = "1.0"
REQUIRED: Final = ("id", "source", "type")
JSON_MEDIA_TYPE: Final = "application/json"
#: Attributes whose type is String and whose value MUST NOT be empty.
NON_EMPTY_STRINGS: Final = frozenset({"id", "type", "subject"})
#: Core attributes whose type is String, URI-reference or URI: every one but `time`.
CORE_STRINGS: Final = frozenset({"id", "source", "type", "specversion", "subject", "datacontenttype", "dataschema"})
INTEGER_MIN: Final = -(2**31)
INTEGER_MAX: Final = 2**31 - 1


class RuleError(ValueError):
    """A value that breaks a CloudEvents rule. The message names the rule and how to comply."""


def json_kind(value: Any) -> str:
    """Return the JSON type of a parsed value with its article, such as `an array`, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def show(value: Any, limit: int = 60) -> str:
    """Return `repr(value)`, shortened to about `limit` characters for error messages."""
    return clip(repr(value), limit)


def clip(text: str, limit: int = 60) -> str:
    """Return `text` cut to `limit` characters, ending in `...` when cut, for error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Names ("Attribute Naming Convention") -----------------------------------------------------------

_NAME = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1024)
def is_attribute_name(name: str) -> bool:
    """Return whether `name` uses only lower-case a-z and 0-9, as every attribute name MUST."""
    return _NAME.fullmatch(name) is not None


def name_fix(name: str) -> str:
    """Return the advice for an invalid attribute name, with a compliant spelling when one exists."""
    suggestion = clip(re.sub(r"[^a-z0-9]", "", name.lower()), 40)
    hint = f", for example {suggestion!r}" if suggestion else ""
    return f"attribute names MUST use only lower-case a-z and 0-9; rename it{hint}"


# Strings (spec.md "Type System") ------------------------------------------------------------------

_NONCHARACTERS = "".join(f"\\U{plane:04x}fffe\\U{plane:04x}ffff" for plane in range(0x11))
_BAD_STRING_CHAR = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\ufdd0-\\ufdef\\ud800-\\udfff{_NONCHARACTERS}]")


def check_string(value: str) -> None:
    """Raise RuleError when `value` contains a control character, a noncharacter or a lone surrogate."""
    if value.isascii() and value.isprintable():
        return
    found = _BAD_STRING_CHAR.search(value)
    if found is not None:
        char = found.group()
        raise RuleError(
            f"contains U+{ord(char):04X} at index {found.start()}; CloudEvents Strings MUST NOT contain "
            "control characters, Unicode noncharacters or unpaired surrogates; remove it"
        )


def check_integer(value: int) -> None:
    """Raise RuleError when `value` is outside the signed 32-bit range of a CloudEvents Integer."""
    if not INTEGER_MIN <= value <= INTEGER_MAX:
        raise RuleError(
            f"is {value}, outside the CloudEvents Integer range {INTEGER_MIN}..{INTEGER_MAX}; "
            "send it as a string if it needs more range"
        )


# Timestamps (RFC 3339) ----------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_TIMESTAMP_FIX = "send a full RFC 3339 date-time with seconds and an offset, such as 2018-04-05T17:31:00Z"


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 `date-time` into an aware datetime, or raise RuleError.

    Fractions beyond microseconds are truncated. A leap second (:60) becomes the
    last microsecond of its minute, which Python can represent.
    """
    if _TIMESTAMP.fullmatch(text) is None:
        raise RuleError(f"is {show(text)}, not an RFC 3339 timestamp; {_TIMESTAMP_FIX}")
    if text[-6] in "+-" and (int(text[-5:-3]) > 23 or int(text[-2:]) > 59):
        raise RuleError(f"is {show(text)}, whose UTC offset is out of range (at most 23:59); {_TIMESTAMP_FIX}")
    try:
        # The pattern admits only RFC 3339 forms. fromisoformat reads all of them except leap seconds.
        value = datetime.fromisoformat(text.upper())
    except ValueError:
        return _parse_timestamp_fields(text)
    if _is_canonical(text, value):
        _remember_format(value, text)
    return value


def _is_canonical(text: str, value: datetime) -> bool:
    """Return whether `format_timestamp(value)` writes `text`, for text that matched the RFC 3339 pattern.

    That is: an upper-case T, no fraction or one of exactly six digits that are not all
    zero, and `Z` for a zero offset.
    """
    if text[10] != "T":
        return False
    zone = text[19:]
    if text[19] == ".":
        zone = text[26:]
        if not value.microsecond or zone[:1] not in ("Z", "+", "-"):
            return False
    return zone == "Z" or (zone[:1] in ("+", "-") and zone[1:] != "00:00")


def _parse_timestamp_fields(text: str) -> datetime:
    """Parse a timestamp that fromisoformat rejects: a leap second, or an out-of-range field to report."""
    date_part, time_part = text[:10], text[11:]
    year, month, day = (int(field) for field in date_part.split("-"))
    hour, minute, second = int(time_part[0:2]), int(time_part[3:5]), int(time_part[6:8])
    rest = time_part[8:]
    micro = 0
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("0123456789")) - 1
        micro = int(rest[1 : 1 + min(digits, 6)].ljust(6, "0"))
        rest = rest[1 + digits :]
    zone = timezone.utc
    if rest[0] in "+-":
        offset = timedelta(hours=int(rest[1:3]), minutes=int(rest[4:6]))
        zone = timezone(-offset if rest[0] == "-" else offset)
    if second == 60:
        second, micro = 59, 999_999
    try:
        return datetime(year, month, day, hour, minute, second, micro, zone)
    except ValueError as error:
        raise RuleError(f"is {show(text)}, which is not a real date and time ({error}); {_TIMESTAMP_FIX}") from None


# Formatted timestamps by (tzinfo, datetime, fold). Datetimes that share a tzinfo compare by
# their fields, which is quick, and with the same fold they have the same offset and text.
# Comparing datetimes of two tzinfo classes, such as pydantic's and `timezone.utc`, computes
# both offsets and took longer than formatting, so such a pair gets two entries. An event's
# time is often written twice, in its data and in its `time` attribute, and a service often
# writes the time it has just read: `parse_timestamp` keeps text that is already in this form.
_FORMATTED: dict[tuple[Any, datetime, int], str] = {}
_FORMATTED_LIMIT = 4096


def format_timestamp(value: datetime) -> str:
    """Return the RFC 3339 form of an aware datetime, with `Z` for UTC.

    Offsets with seconds, which RFC 3339 cannot express, are converted to UTC.
    """
    text = _FORMATTED.get((value.tzinfo, value, value.fold))
    if text is None:
        text = _format_timestamp(value)
        _remember_format(value, text)
    return text


def _remember_format(value: datetime, text: str) -> None:
    if len(_FORMATTED) >= _FORMATTED_LIMIT:
        _FORMATTED.clear()
    _FORMATTED[(value.tzinfo, value, value.fold)] = text


def _format_timestamp(value: datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        raise RuleError(f"is {value.isoformat()}, a naive datetime; give it a timezone, such as timezone.utc")
    if offset.seconds % 60 or offset.microseconds:
        try:
            value, offset = value.astimezone(timezone.utc), timedelta(0)
        except OverflowError:
            raise RuleError(f"is {value.isoformat()}, which is out of range in UTC; send a time between years 1 and 9999") from None
    elif type(value.tzinfo) is TzInfo:
        # pydantic-core writes its own datetimes in this same form, about three times faster in a benchmark.
        return to_json(value)[1:-1].decode("ascii")
    text = value.isoformat()
    return text[:-6] + "Z" if not offset else text


# URI and URI-reference (RFC 3986) -----------------------------------------------------------------

_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]%]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


@lru_cache(maxsize=1024)
def check_uri(value: str, absolute: bool) -> None:
    """Raise RuleError unless `value` is an RFC 3986 URI-reference, or a URI with a scheme if `absolute`.

    Checks the character set, the `%XX` escapes, the scheme, a single `#` and
    that brackets appear only in the authority (an IP literal).
    """
    kind = "URI" if absolute else "URI-reference"
    if not _URI_CHARACTERS.fullmatch(value):
        bad = next(char for char in value if not _URI_CHARACTERS.fullmatch(char))
        raise RuleError(
            f"is {show(value)}, which contains {bad!r}; an RFC 3986 {kind} allows only unreserved and "
            "reserved ASCII characters, so percent-encode the rest as UTF-8 (%XX)"
        )
    if "%" in value and _BAD_PERCENT.search(value):
        raise RuleError(f"is {show(value)}, with a '%' that does not start a %XX escape; encode a literal '%' as %25")
    reference, _, fragment = value.partition("#")
    if "#" in fragment or "[" in fragment or "]" in fragment:
        raise RuleError(f"is {show(value)}, whose fragment contains '#', '[' or ']'; percent-encode them")
    colon = reference.find(":")
    delimiter = min((i for i in (reference.find("/"), reference.find("?")) if i >= 0), default=len(reference))
    rest = reference
    if 0 <= colon < delimiter:
        if not _SCHEME.fullmatch(reference[:colon]):
            raise RuleError(
                f"is {show(value)}; {reference[:colon]!r} is not a valid URI scheme, and a relative "
                "reference cannot have ':' in its first segment; start it with './' or fix the scheme"
            )
        rest = reference[colon + 1 :]
    elif absolute:
        raise RuleError(f"is {show(value)}, which has no scheme; send an absolute URI such as https://example.com/schema")
    authority = ""
    if rest.startswith("//"):
        end = min((i for i in (rest.find("/", 2), rest.find("?", 2)) if i >= 0), default=len(rest))
        authority, rest = rest[2:end], rest[end:]
    opens, closes = authority.count("["), authority.count("]")
    if "[" in rest or "]" in rest or opens != closes or opens > 1 or authority.find("[") > authority.find("]"):
        raise RuleError(f"is {show(value)}; '[' and ']' may only enclose an IP literal host; percent-encode them")


# Media types (RFC 2046 / RFC 2045 section 5.1) ----------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})((?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*)[ \t]*")
_PARAMETER = re.compile(rf"[ \t]*;[ \t]*({_TOKEN})=({_TOKEN}|{_QUOTED})")


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: `essence` is `type/subtype` and `charset` is the charset or None, both lower case."""

    essence: str
    charset: str | None

    @property
    def is_json(self) -> bool:
        """Return whether the type declares JSON content: `*/json` or `*/*+json` (JSON format §3.1.1)."""
        subtype = self.essence.partition("/")[2]
        return subtype == "json" or subtype.endswith("+json")

    @property
    def is_utf8(self) -> bool:
        """Return whether text of this type is UTF-8: no charset, `utf-8` or its subset `us-ascii`."""
        return self.charset in (None, "utf-8", "utf8", "us-ascii")


@lru_cache(maxsize=256)
def parse_media_type(value: str) -> MediaType:
    """Parse an RFC 2046 media type such as `application/json; charset=utf-8`, or raise RuleError."""
    match = _MEDIA_TYPE.fullmatch(value)
    if match is None:
        raise RuleError(
            f"is {show(value)}, not an RFC 2046 media type; send type/subtype with optional "
            "';name=value' parameters, such as application/json"
        )
    charset = None
    for name, parameter in _PARAMETER.findall(match.group(3)):
        if name.lower() == "charset":
            charset = parameter.strip('"').lower()
    return MediaType(f"{match.group(1)}/{match.group(2)}".lower(), charset)


# JSON (RFC 8259) ----------------------------------------------------------------------------------


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_flat(value: Any) -> bool:
    """Return whether `value` is a JSON scalar, or a list or object of scalars and lists of scalars.

    pydantic-core writes such values as the json module does, apart from the spelling of
    some floats. Deeper values and other types go to the json module.
    """
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        members = value.values()
    elif kind is list:
        members = value
    else:
        return False
    for member in members:
        member_kind = type(member)
        if member_kind in _SCALARS:
            continue
        if member_kind is not list or not set(map(type, member)) <= _SCALARS:
            return False
    return kind is list or all(type(key) is str for key in value)


def has_non_finite(value: Any) -> bool:
    """Return whether `value` contains a NaN or infinite float anywhere."""
    return find_non_finite(value) is not None


def find_non_finite(value: Any) -> list[Any] | None:
    """Return the path of the first NaN or infinite float inside `value`, or None when there is none.

    The quick probe runs first, and the walk that builds the path runs only when the probe may have found one.
    """
    return non_finite_path(value) if may_be_non_finite(value) else None


def may_be_non_finite(value: Any) -> bool:
    """Return False when `value` has no NaN or infinity, and True when the caller should look closer.

    The members of a dict or list are checked in place, lists of numbers by their sum,
    which any NaN or infinity makes non-finite (a sum that overflows only costs a
    closer look). Anything deeper goes to pydantic-core, which writes it in Rust with
    non-finite floats as bare constants.
    """
    kind = type(value)
    if kind is dict:
        members: Any = value.values()
    elif kind is list:
        members = value
    elif kind is float:
        return value - value != 0.0
    elif kind in _SCALARS:
        return False
    else:
        return _written_non_finite(value)
    for member in members:
        member_kind = type(member)
        if member_kind is float:
            if member - member != 0.0:
                return True
        elif member_kind is list:
            try:
                total = sum(member, 0.0)
            except (TypeError, OverflowError):
                if _written_non_finite(member):
                    return True
                continue
            if total - total != 0.0:
                return True
        elif member_kind not in _SCALARS and _written_non_finite(member):
            return True
    return False


def _written_non_finite(value: Any) -> bool:
    try:
        written = to_json(value, inf_nan_mode="constants")
    except (PydanticSerializationError, RecursionError, ValueError):
        return True
    return b"NaN" in written or b"Infinity" in written


def loads_json(text: str | bytes) -> Any:
    """Parse strict RFC 8259 JSON: no NaN or Infinity, no numbers that overflow, bounded nesting.

    Raises RuleError for any problem, including nesting too deep for the parser.
    pydantic-core's parser reads the text in Rust, several times faster than the json
    module, and rejects NaN, Infinity and unpaired surrogate escapes itself. A number
    beyond a float's range still comes back as an infinity, which the probe after it finds.
    Text it rejects is parsed again by the json module.
    """
    try:
        value = from_json(text, allow_inf_nan=False)
    except ValueError:
        value = _json_module_loads(text)
    path = find_non_finite(value)
    if path is not None:
        where = "at " + "".join(f"[{step!r}]" for step in path) if path else "given"
        raise RuleError(f"the number {where} is too large for a 64-bit float; send a smaller value or a string")
    return value


def _reject_constant(name: str) -> Any:
    raise RuleError(f"{name} is not a JSON number; send finite numbers, or null for a missing value")


_JSON_MODULE_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _json_module_loads(text: str | bytes) -> Any:
    """Parse text that pydantic-core rejected with the json module, which names more problems.

    It also reads a few documents that pydantic-core refuses, such as strings with
    unpaired surrogate escapes, which later checks then name precisely.
    """
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RuleError(f"it is not UTF-8 ({error})") from None
    try:
        return _JSON_MODULE_DECODER.decode(text)
    except RuleError:
        raise
    except RecursionError:
        raise RuleError("the JSON is nested too deeply to parse; flatten it") from None
    except ValueError as error:
        raise RuleError(f"it is not valid JSON ({error})") from None


def _encode_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value) if value.utcoffset() is not None else value.isoformat()
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_encode_default)


def dumps_json(value: Any) -> bytes:
    """Write `value` as UTF-8 JSON, with datetimes as RFC 3339 strings, or raise RuleError.

    Flat values of JSON types, such as feature vectors and predictions, are written by
    pydantic-core, which formats floats several times faster than the json module.
    """
    if _is_flat(value) and not may_be_non_finite(value):
        try:
            return to_json(value)
        except PydanticSerializationError:
            pass  # an unpaired surrogate, which the json module names below
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except RecursionError:
        raise RuleError("it is nested too deeply to write as JSON; flatten it") from None
    except UnicodeEncodeError as error:
        raise RuleError(f"it contains an unpaired surrogate at index {error.start}; remove it") from None
    except (TypeError, ValueError) as error:
        raise RuleError(f"it cannot be written as JSON ({error}); send finite numbers, strings, lists and objects") from None


def non_finite_path(value: Any) -> list[Any] | None:
    """Return the path of the first NaN or infinite float inside `value`, or None when there is none."""
    if isinstance(value, float):
        return None if math.isfinite(value) else []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(item, (float, dict, list, tuple)):
            found = non_finite_path(item)
            if found is not None:
                return [key, *found]
    return None


# HTTP header values (HTTP binding §3.1.3.2) -------------------------------------------------------

_HEADER_TEXT = re.compile(r"[\t\x20-\x7e]*")
_QUOTED_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_UNENCODED = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in ' "%')


def percent_decode(value: str) -> str:
    """Decode an HTTP `ce-` header value: unquote a quoted-string, then decode %XX escapes once.

    Raises RuleError for characters outside printable US-ASCII, malformed escapes
    and escapes that are not valid UTF-8 (such as the overlong `%C0%A0`).
    """
    if not _HEADER_TEXT.fullmatch(value):
        bad = next(char for char in value if not _HEADER_TEXT.fullmatch(char))
        raise RuleError(
            f"contains U+{ord(bad):04X}, but HTTP header values MUST be printable US-ASCII; "
            "percent-encode the UTF-8 bytes of the value (HTTP binding §3.1.3.2)"
        )
    value = value.strip(" \t")
    if value.startswith('"'):
        quoted = _QUOTED_STRING.fullmatch(value)
        if quoted is None:
            raise RuleError(f"is {show(value)}, an unterminated quoted-string; close the quotes or percent-encode '\"' as %22")
        value = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
    if "%" not in value:
        return value
    if _BAD_PERCENT.search(value):
        raise RuleError(f"is {show(value)}, with a '%' that does not start a %XX escape; encode a literal '%' as %25")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError(
            f"is {show(value)}, whose %XX escapes are not valid UTF-8; percent-encode the UTF-8 bytes of the text"
        ) from None


def percent_encode(value: str) -> str:
    """Encode a string for an HTTP `ce-` header: space, `"`, `%` and all but printable ASCII become %XX."""
    try:
        return quote(value, safe=_UNENCODED)
    except UnicodeEncodeError as error:
        raise RuleError(f"contains an unpaired surrogate at index {error.start}; remove it") from None


# Attribute values (spec.md "Type System") ---------------------------------------------------------


def check_attribute(name: str, value: Any) -> Any:
    """Check one attribute value against the rules for its name, and return it with `time` as a datetime.

    Accepts the JSON-format types (string, integer, boolean) and, from code, aware
    datetimes and bytes for extensions. Raises RuleError otherwise.
    """
    if name == "time":
        if isinstance(value, str):
            return parse_timestamp(value)
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                raise RuleError(f"is {value.isoformat()}, a naive datetime; give it a timezone, such as timezone.utc")
            return value
        raise RuleError(f"is {show(value)}; send an RFC 3339 timestamp string or an aware datetime")
    if isinstance(value, str):
        if name == "source" or name == "dataschema":
            if not value:
                raise RuleError("is empty; send a non-empty URI")
            check_uri(value, absolute=name == "dataschema")
        elif name == "datacontenttype":
            parse_media_type(value)
        elif name != "specversion":
            if not value and name in NON_EMPTY_STRINGS:
                advice = "send a non-empty string" if name in REQUIRED else "send a non-empty string or leave it out"
                raise RuleError(f"is empty; {advice}")
            check_string(value)
        return value
    if name in CORE_STRINGS:
        raise RuleError(f"is {show(value)} ({json_kind(value)}); it MUST be a string")
    if isinstance(value, (bool, bytes, bytearray)):
        return value
    if isinstance(value, int):
        check_integer(value)
        return value
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    if isinstance(value, float):
        raise RuleError(f"is {value!r}, which has a fraction; CloudEvents Integers are whole numbers, so send an integer or a string")
    raise RuleError(f"is {show(value)}; attribute values MUST be a string, an integer or a boolean")


def canonical_string(value: Any) -> str:
    """Return an attribute value's canonical string encoding: `true`, `42`, RFC 3339, base64."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise RuleError(f"is {show(value)}, which has no CloudEvents string encoding")


# Event data (JSON format §3.1) --------------------------------------------------------------------


def encode_data(data: Any, content_type: str | None) -> tuple[str | None, bytes]:
    """Return the content type and bytes that carry `data` in binary mode.

    Bytes travel as they are. JSON content types get JSON text, and so does a missing
    content type, which implies `application/json`. Other content types take str only.
    """
    if data is None:
        return content_type, b""
    if isinstance(data, (bytes, bytearray)):
        return content_type, bytes(data)
    if content_type is None:
        return JSON_MEDIA_TYPE, dumps_json(data)
    if parse_media_type(content_type).is_json:
        return content_type, dumps_json(data)
    if isinstance(data, str):
        try:
            return content_type, data.encode("utf-8")
        except UnicodeEncodeError as error:
            raise RuleError(f"it contains an unpaired surrogate at index {error.start}; remove it") from None
    raise RuleError(f"it is a {type(data).__name__}, but datacontenttype {content_type!r} is not JSON; send str or bytes")


def decode_data(body: bytes, content_type: str | None) -> Any:
    """Return binary-mode data: a JSON value for JSON types, str for UTF-8 text, bytes otherwise.

    Raises RuleError when a JSON content type carries a body that is not JSON.
    """
    if not body:
        return None
    if content_type is None:
        return bytes(body)
    media = parse_media_type(content_type)
    if media.is_json:
        return loads_json(bytes(body))
    if media.essence.startswith("text/") and media.is_utf8:
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(body)
    return bytes(body)


def json_members(attributes: dict[str, Any], data: Any, content_type: str | None) -> dict[str, Any]:
    """Return the JSON-format object of an event: attributes, then `data` or `data_base64`."""
    members: dict[str, Any] = {}
    for name, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (datetime, bytes, bytearray)):
            value = canonical_string(value)
        elif isinstance(value, int) and not isinstance(value, bool) and not INTEGER_MIN <= value <= INTEGER_MAX:
            raise RuleError(f"attribute {name!r} is {value}, outside the CloudEvents Integer range; send a string")
        elif not isinstance(value, (str, bool, int)):
            raise RuleError(f"attribute {name!r} is {show(value)}, which has no CloudEvents type; send a string")
        members[name] = value
    if isinstance(data, (bytes, bytearray)):
        members["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        if content_type is not None and not isinstance(data, str) and not parse_media_type(content_type).is_json:
            raise RuleError(f"it is a {type(data).__name__}, but datacontenttype {content_type!r} is not JSON; send str or bytes")
        members["data"] = data
    return members
