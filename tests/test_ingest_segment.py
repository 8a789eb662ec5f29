"""Segment messages -> touchpoints, without Kafka: the mapping contract of
orchestrator/ingest/segment.py, on the Segment spec's own examples (examples/segment/)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from orchestrator.ingest import payload, segment
from orchestrator.ingest.writekeys import Source, WriteKeyError, WriteKeys
from orchestrator.records import Context, Touchpoint, parse_time
from orchestrator.wire import decode_touchpoint, encode_touchpoint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "segment"
SERVER = Source(name="http:crm", channel="crm")
RECEIVED = parse_time("2012-12-02T00:31:00Z")


def example(name: str) -> dict:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def convert(message: dict, kind: str | None, **kw) -> Touchpoint:
    tp = segment.to_touchpoint(message, kind=kind, received_at=RECEIVED, source=SERVER, **kw)
    assert tp is not None
    assert decode_touchpoint(encode_touchpoint(tp)) == tp  # always encodable, lossless
    return tp


def test_track_example_keeps_event_name_properties_and_time():
    tp = convert(example("track"), "track")
    assert (tp.type, tp.name, tp.customer_id, tp.anonymous_id) == (
        "track",
        "Item Purchased",
        "019mr8mf4r",
        None,
    )
    assert tp.properties == {"name": "Leap to Conclusions Mat", "revenue": 14.99}
    assert tp.occurred_at == parse_time("2012-12-02T00:30:12.984Z")  # no sentAt: as sent
    assert tp.received_at == RECEIVED
    assert tp.channel == "crm" and tp.source == "http:crm"  # no library: the key's channel
    assert tp.context == Context()  # context.ip is not kept


def test_identify_example_carries_traits_into_the_profile():
    tp = convert(example("identify"), "identify")
    assert (tp.type, tp.name) == ("identify", "Identified")
    assert tp.traits == {
        "email": "pgibbons@example.com",
        "name": "Peter Gibbons",
        "industry": "Technology",
    }
    assert tp.properties == {}


@pytest.mark.parametrize(("kind", "name"), [("page", "Page Viewed"), ("screen", "Screen Viewed")])
def test_page_and_screen_examples_are_viewed_events_with_the_name_property(kind, name):
    tp = convert(example(kind), kind)
    assert (tp.type, tp.name) == (kind, name)
    assert tp.properties == {"name": "Tracking HTTP API"}


def test_group_example_keeps_group_traits_as_properties_not_customer_traits():
    tp = convert(example("group"), "group")
    assert (tp.type, tp.name) == ("group", "Group Joined")
    assert tp.traits == {}  # the group's name is not the customer's name
    assert tp.properties == {
        "group_id": "8e9df332ac",
        "name": "Initech",
        "industry": "Technology",
        "employees": 420,
    }


def test_alias_example_keeps_previous_id_for_identity_stitching():
    tp = convert(example("alias"), "alias")
    assert (tp.type, tp.name, tp.customer_id) == ("alias", "Aliased", "019mr8mf4r")
    assert tp.properties == {"previous_id": "39239-239239-239239-23923"}


def test_batch_example_messages_take_the_envelope_context():
    body = example("batch")
    tps = [convert(m, None, context=body["context"], index=i) for i, m in enumerate(body["batch"])]
    assert [(t.type, t.name, t.customer_id) for t in tps] == [
        ("identify", "Identified", "019mr8mf4r"),
        ("track", "Song Played", "019mr8mf4r"),
        ("identify", "Identified", "971mj8mk7p"),
        ("track", "Song Played", "971mj8mk7p"),
    ]
    assert all(t.context.device_type == "mobile" for t in tps)
    assert tps[0].traits["age"] == 26


def test_ecommerce_order_completed_passes_total_revenue_and_products_through():
    tp = convert(example("order_completed"), "track")
    assert tp.name == "Order Completed"
    assert tp.event_id == "ajs-next-1b2f6ae3c2a94f3b9c1d0e6f7a8b9c0d"  # messageId
    assert tp.properties["total"] == 27.5 and tp.properties["revenue"] == 25.0
    products = json.loads(str(tp.properties["products"]))
    assert [p["sku"] for p in products] == ["45790-32", "46493-32"]
    assert tp.properties["utm_campaign"] == "spring_sale"
    assert tp.properties["utm_medium"] == "email"
    assert tp.channel == "web"  # analytics.js
    assert (tp.context.locale, tp.context.timezone) == ("en-US", "America/New_York")


def test_nested_values_become_json_strings_like_the_json_form_of_touchpoints():
    props = {"products": [{"b": 1, "a": [1, 2]}], "address": {"city": "Paris"}, "ok": True}
    tp = convert({"userId": "u", "event": "E", "properties": props}, "track")
    via_json = Touchpoint.from_json(
        {**tp.to_json(), "properties": props}
    ).properties  # the project's one rule for nested values
    assert tp.properties == via_json


def test_integers_beyond_avro_long_travel_as_strings():
    tp = convert({"userId": "u", "event": "E", "properties": {"big": 2**64 - 1}}, "track")
    assert tp.properties == {"big": str(2**64 - 1)}


def test_clock_skew_is_corrected_with_sent_at():
    # The device clock is 1 h fast: it stamped the event at 11:00:00 and sent it at
    # 11:00:05 by its clock; the server received it at 10:00:06 (true time).
    msg = {
        "anonymousId": "a1",
        "event": "Clicked",
        "timestamp": "2024-01-01T11:00:00Z",
        "sentAt": "2024-01-01T11:00:05Z",
    }
    received = parse_time("2024-01-01T10:00:06Z")
    tp = segment.to_touchpoint(msg, kind="track", received_at=received, source=SERVER)
    assert tp is not None and tp.occurred_at == parse_time("2024-01-01T10:00:01Z")
    assert tp.subject == "anon:a1"


def test_batch_sent_at_applies_to_messages_without_their_own():
    msg = {"userId": "u", "type": "track", "event": "E", "timestamp": "2024-01-01T00:00:00Z"}
    tp = segment.to_touchpoint(
        msg,
        kind=None,
        received_at=parse_time("2024-01-01T00:00:10Z"),
        source=SERVER,
        sent_at="2024-01-01T00:00:02Z",
    )
    assert tp is not None and tp.occurred_at == parse_time("2024-01-01T00:00:08Z")


def test_without_timestamp_the_event_happened_when_received():
    tp = convert({"userId": "u", "event": "E"}, "track")
    assert tp.occurred_at == RECEIVED
    assert len(tp.event_id) == 36  # no messageId: a fresh UUID


@pytest.mark.parametrize(
    ("context", "extra", "channel"),
    [
        ({"library": {"name": "analytics.js"}}, {}, "web"),
        ({"library": {"name": "analytics-ios"}}, {}, "app"),
        ({"library": {"name": "com.rudderstack.android.sdk.core"}}, {}, "app"),
        ({"library": {"name": "@segment/analytics-react-native"}}, {}, "app"),
        ({"library": {"name": "RudderLabs JavaScript SDK"}}, {}, "web"),
        ({"library": {"name": "analytics-python"}, "os": {"name": "iOS"}}, {}, "crm"),
        ({"os": {"name": "Android"}}, {}, "app"),
        ({"device": {"type": "ios"}}, {}, "app"),
        ({}, {"channel": "mobile"}, "app"),
        ({}, {"channel": "server"}, "crm"),
        ({}, {}, "crm"),
    ],
)
def test_channel_comes_from_the_sdk_then_the_device_then_the_write_key(context, extra, channel):
    tp = convert({"userId": "u", "event": "E", "context": context, **extra}, "track")
    assert tp.channel == channel


def test_context_maps_device_os_app_locale_and_timezone():
    ctx = {
        "device": {"id": "dev-1", "type": "android", "advertisingId": "x"},
        "os": {"name": "Android", "version": "14"},
        "app": {"name": "Shop", "version": "2.3.1"},
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
        "ip": "10.0.0.1",
        "userAgent": "Mozilla/5.0",
    }
    tp = convert({"userId": "u", "event": "E", "context": ctx}, "track")
    assert tp.context == Context(
        locale="fr-FR",
        timezone="Europe/Paris",
        device_id="dev-1",
        device_type="mobile",
        os="Android",
        app="Shop 2.3.1",
    )


def test_integrations_rota_false_skips_the_message():
    msg = {"userId": "u", "event": "E", "integrations": {"Rota": False}}
    assert segment.to_touchpoint(msg, kind="track", received_at=1, source=SERVER) is None


@pytest.mark.parametrize(
    ("message", "kind", "fragment"),
    [
        ({"event": "E"}, "track", "userId or anonymousId"),
        ({"userId": "u"}, "track", "event name"),
        ({"userId": "u", "event": ""}, "track", "event name"),
        ({"userId": "u"}, "group", "groupId"),
        ({"userId": "u"}, "alias", "previousId"),
        ({"previousId": "p", "anonymousId": "a"}, "alias", "previousId and userId"),
        ({"userId": "u", "type": "purchase"}, None, "type must be one of"),
        ({"userId": "u", "event": "E", "properties": [1]}, "track", "properties must be"),
        ({"userId": {"id": 1}, "event": "E"}, "track", "userId must be a string"),
        ({"userId": "u", "event": "E", "timestamp": "yesterday"}, "track", "ISO-8601"),
        ({"userId": "u", "event": "E", "timestamp": 1700000000}, "track", "ISO-8601"),
        ([], "track", "JSON object"),
    ],
)
def test_messages_the_spec_does_not_allow_are_refused_with_the_reason(message, kind, fragment):
    with pytest.raises(segment.InvalidMessage, match=fragment):
        segment.to_touchpoint(message, kind=kind, received_at=1, source=SERVER)


def test_invalid_message_in_a_batch_names_its_index():
    with pytest.raises(segment.InvalidMessage, match=r"batch\[3\]"):
        segment.to_touchpoint({"type": "track"}, kind=None, received_at=1, source=SERVER, index=3)


def test_gzip_bodies_are_inflated_up_to_the_limit_only():
    body = json.dumps({"userId": "u", "event": "E"}).encode()
    assert payload.decode(gzip.compress(body), encoding="gzip", limit=100) == {
        "userId": "u",
        "event": "E",
    }
    bomb = gzip.compress(b" " * 10_000_000)  # ~10 KB compressed, 10 MB inflated
    with pytest.raises(payload.PayloadError) as err:
        payload.decode(bomb, encoding="gzip", limit=payload.CALL_LIMIT)
    assert err.value.code == "payload_too_large"
    with pytest.raises(payload.PayloadError) as err:
        payload.decode(b"not gzip", encoding="gzip", limit=100)
    assert err.value.code == "invalid_encoding"
    with pytest.raises(payload.PayloadError) as err:
        payload.decode(body, encoding="br", limit=100)
    assert err.value.code == "unsupported_encoding"


def test_write_keys_parse_channels_and_sources_and_never_show_keys():
    keys = WriteKeys.parse("k1:web, k2:app:ios-app")
    assert keys.lookup("k1") == Source("http:web", "web")
    assert keys.lookup("k2") == Source("ios-app", "app")
    assert keys.lookup("k3") is None and keys.lookup("") is None
    assert "k1" not in repr(keys)
    with pytest.raises(WriteKeyError, match="entry 2") as err:
        WriteKeys.parse("k1:web,secret-key-only")
    assert "secret-key-only" not in str(err.value)
    with pytest.raises(WriteKeyError, match="no write keys"):
        WriteKeys.from_env({})


def test_write_keys_file_takes_whitespace_separated_lines_and_comments(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# production sources\nkey-web web\nkey-pos store pos-system  # tills\n")
    keys = WriteKeys.from_env({"ROTA_INGEST_WRITE_KEYS_FILE": str(f)})
    assert keys.lookup("key-pos") == Source("pos-system", "store")
    assert len(keys) == 2
