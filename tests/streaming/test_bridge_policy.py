"""The input policy and the service's refusals through the bridge as users run it
(`python -m streaming.bridge`), on the real broker and a served bento.

Expected scores are computed here: `predictor.churn_probability` (the served model) on the
canonical twin's matrix, built by `canonical_matrix` from the record's own fields.
"""

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from models.samples import event
from tests.conftest import AS_OF
from tests.streaming.support import (
    PARTITIONS,
    canonical_matrix,
    metric,
    read_until,
    stop,
    unique,
)
from tests.support import start_bento, wait_until

pytestmark = pytest.mark.slow
EVENT_S = 1_782_820_800  # 2026-06-30T12:00:00Z in epoch seconds
FALLBACK = "churn_stream_event_time_fallback_total"
IGNORED = "churn_stream_ignored_fields_total"
TOKEN = "t-bridge"


def by_customer(records: list[dict]) -> dict:
    return {r["customer_id"]: r for r in records}


def test_epoch_second_and_millisecond_timestamps_are_scored_as_event_times(
    kafka, bento, launch, readers, predictor
):
    """300 events, half of them with an epoch timestamp (seconds or ms): none dead-lettered."""
    inputs, expected_time = [], {}
    for i in range(300):
        value = event(i, nested=i % 3 == 0)
        if i % 4 == 1:
            value["timestamp"] = EVENT_S + i
            expected_time[i] = datetime.fromtimestamp(EVENT_S, UTC) + timedelta(seconds=i)
        elif i % 4 == 3:
            value["timestamp"] = (EVENT_S + i) * 1000 + 250
            expected_time[i] = datetime.fromtimestamp(EVENT_S, UTC) + timedelta(
                seconds=i, milliseconds=250
            )
        inputs.append(value)
    assert len(expected_time) == 150
    topic, group = kafka.topic("epoch"), unique("g")
    produced_from = datetime.now(UTC).replace(microsecond=0)
    sent = kafka.send(topic, inputs)
    produced_to = datetime.now(UTC)
    bridge = launch(topic, group, "--service-url", bento.url)
    out, err = readers(topic)
    read_until([out, err], len(inputs), 60, bridge)

    assert err.poll() == []
    assert sorted(out.sources()) == sorted(sent)
    expected = predictor.churn_probability(canonical_matrix(event(i) for i in range(300)))
    results = by_customer(out.records)
    for i in range(300):
        result = results[f"c-{i:05d}"]
        assert result["churn_probability"] == expected[i], i
        assert result["prediction"] == int(expected[i] >= 0.5), i
        event_time = datetime.fromisoformat(result["event_timestamp"])
        if i in expected_time:
            assert (result["event_time_source"], event_time) == ("message", expected_time[i]), i
        else:  # the record's broker timestamp, set when it was produced
            assert result["event_time_source"] == "record", i
            assert produced_from <= event_time <= produced_to, i
    for code in ("wrong_type", "bad_date", "out_of_range"):
        assert metric(bridge, FALLBACK, reason=code) == 0
    assert metric(bridge, IGNORED, field="timestamp") == 0
    assert stop(bridge) == 0
    assert sum(kafka.committed(group).values()) == len(inputs)


def test_loose_records_get_their_canonical_twins_bits_through_the_bento(
    kafka, bento, launch, readers, predictor
):
    canon = [event(i) for i in range(12)]
    no_date = {k: v for k, v in canon[3].items() if k != "last_purchase_date"}
    days = (AS_OF - date.fromisoformat(canon[3]["last_purchase_date"])).days
    features = {k: v for k, v in canon[2].items() if k != "customer_id"}
    nan_time = json.dumps(canon[7]).encode()[:-1] + b', "timestamp": NaN}'
    # {index of the canonical twin: (message, result's customer_id, event_time_source)}
    loose = {
        0: ({**canon[0], "customer_id": 4242}, "4242", "record"),
        1: ({**canon[1], "channel": "web", "segment": {"tier": 2}}, "c-00001", "record"),
        2: (
            {"customer_id": "c-00002", "features": {**features, "segment": "gold"},
             "channel": "app"},
            "c-00002",
            "record",
        ),
        3: ({**no_date, "days_since_purchase": days}, "c-00003", "record"),
        4: ({**canon[4], "timestamp": "yesterday"}, "c-00004", "record"),
        5: ({**canon[5], "timestamp": True}, "c-00005", "record"),
        6: ({**canon[6], "timestamp": {"seconds": EVENT_S}}, "c-00006", "record"),
        7: (nan_time, "c-00007", "record"),
        8: ({**canon[8], "timestamp": f"{EVENT_S}123"}, "c-00008", "message"),
        9: ({k: v for k, v in canon[9].items() if k != "customer_id"}, None, "record"),
        11: (
            {**canon[11], "priority": "urgent", "timestamp": "2026-06-30T14:00:00+02:00"},
            "c-00011",
            "message",
        ),
    }  # fmt: skip
    typo = {**{k: v for k, v in canon[10].items() if k != "income"}, "incme": 1}
    topic, group = kafka.topic("loose"), unique("g")
    sent = kafka.send(topic, [value for value, *_ in loose.values()] + [typo])
    bridge = launch(topic, group, "--service-url", bento.url)
    out, err = readers(topic)
    read_until([out, err], len(sent), 60, bridge)

    assert sorted(out.sources() + err.sources()) == sorted(sent)
    expected = predictor.churn_probability(canonical_matrix(canon))
    results = by_customer(out.records)
    keys = dict(zip((r["customer_id"] for r in out.records), out.keys, strict=True))
    assert len(results) == len(loose)
    for i, (_, cid, source) in loose.items():
        result = results[cid]
        assert result["churn_probability"] == expected[i], i
        assert result["prediction"] == int(expected[i] >= 0.5), i
        assert result["event_time_source"] == source, i
        # The customer's id, else the input record's key (the test producer sends none).
        assert keys[cid] == (cid.encode() if cid is not None else None), i
    assert results["4242"]["customer_id"] == "4242"
    assert results["c-00008"]["event_timestamp"] == "2026-06-30T12:00:00.123000Z"
    assert results["c-00011"]["event_timestamp"] == "2026-06-30T12:00:00Z"

    (letter,) = err.poll()
    assert (letter["error"], letter["field"], letter["code"]) == (
        "income: is missing",
        "income",
        "missing",
    )
    assert (letter["customer_id"], letter["event_time_source"]) == ("c-00010", "record")

    wait_until(lambda: metric(bridge, "churn_stream_commits_total") > 0, 20, "a commit")
    assert metric(bridge, FALLBACK, reason="bad_date") == 2  # "yesterday", NaN
    assert metric(bridge, FALLBACK, reason="wrong_type") == 2  # true, an object
    ignored = {
        f: metric(bridge, IGNORED, field=f)
        for f in ("channel", "segment", "features.segment", "priority", "incme", "timestamp")
    }
    assert ignored == {
        "channel": 2,
        "segment": 1,
        "features.segment": 1,
        "priority": 1,
        "incme": 1,
        "timestamp": 0,
    }
    assert stop(bridge) == 0


def test_a_bridge_the_service_refuses_exits_3_once_logged_and_commits_nothing(
    kafka, launch, readers, logs_dir, service_env
):
    service = start_bento(logs_dir, {**service_env, "CHURN_API_TOKENS": f"{TOKEN},t-other"})
    try:
        topic, group = kafka.topic("refused"), unique("g")
        url = ("--service-url", service.url)
        first = kafka.send(topic, [event(i) for i in range(30)])
        right = launch(topic, group, *url, "--service-token", TOKEN)
        out, err = readers(topic)
        read_until([out], len(first), 60, right)
        assert stop(right) == 0
        committed = kafka.committed(group)
        assert sum(committed.values()) == len(first)

        more = kafka.send(topic, [event(i) for i in range(30, 60)])
        refusals = [
            (("--service-token", "t-wrong"), 403, "invalid token"),
            ((), 401, "missing bearer token"),
        ]
        for token, status, words in refusals:
            bridge = launch(topic, group, *url, *token)
            assert bridge.proc.wait(timeout=90) == 3, bridge.log_tail()
            assert kafka.committed(group) == committed  # nothing committed
            lines = [json.loads(line) for line in bridge.log.read_text().splitlines()]
            # Our own lines: the client library's are its business (see streaming/logs.py).
            ours = [entry for entry in lines if entry["logger"].startswith("streaming")]
            errors = [entry for entry in ours if entry["level"] == "error"]
            assert len(errors) == 1, errors
            (error,) = errors
            assert error["msg"] == (
                f"the service refused the bridge's requests: {status} {words} (GET /schema.json)"
                "; check --service-token / CHURN_STREAM_SERVICE_TOKEN"
                " (the bento's CHURN_API_TOKENS)"
            )
            assert (error["status"], error["body"]) == (status, words)
            assert sum(f"{status} {words}" in json.dumps(entry) for entry in lines) == 1
            (stopped,) = [entry for entry in lines if entry["msg"] == "bridge stopped"]
            assert stopped["exit_code"] == 3
        assert len(out.poll()) == len(first)
        assert err.poll() == []

        # Configured right, a successor scores every event the refused bridges left.
        successor = launch(topic, group, *url, "--service-token", TOKEN)
        read_until([out], len(first) + len(more), 60, successor)
        assert sorted(out.sources()) == sorted({**first, **more})
        assert stop(successor) == 0
        assert kafka.committed(group) == {p: 60 // PARTITIONS for p in range(PARTITIONS)}
    finally:
        service.stop()
