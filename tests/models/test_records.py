"""`models.records`: a block of JSON records checked at once gives, record by record, what the
per-record check (`/predict/batch`'s) gives: the same validity, reasons, ids and model input."""

from datetime import date

import numpy as np
import pytest

from models import records as records_module
from models.predict import Rejected, check_request
from models.records import check_records, records_frame
from models.samples import event, record, records
from tests.conftest import AS_OF
from tests.expected import feature_matrix
from tests.invalid import CASES


def one_by_one(bodies: list) -> list:
    return [check_request(body, i, AS_OF) for i, body in enumerate(bodies)]


def test_each_invalid_case_in_a_block_fails_as_it_fails_alone():
    valid = records(3)
    bodies = [*valid, *(record(**case.override) for case in CASES), [1, 2], "text", None, 7]
    checked = check_records(bodies, AS_OF)
    alone = one_by_one(bodies)
    assert checked.valid.tolist() == [not isinstance(a, Rejected) for a in alone]
    assert checked.valid.tolist() == [True] * 3 + [False] * (len(bodies) - 3)
    for i, case in enumerate(CASES, start=3):
        rejected = checked.rejected[i]
        assert rejected == alone[i]
        assert f"{rejected.first.field}:{rejected.first.code}" == case.expected
    np.testing.assert_array_equal(checked.matrix, feature_matrix(valid, AS_OF))


def test_flat_nested_integer_and_absent_ids_in_one_block():
    bodies = [event(1), event(2, nested=True), {**event(3), "customer_id": 17}, event(4)]
    del bodies[3]["customer_id"]
    bodies.append({**event(5), "customer_id": 2**70})  # wider than any integer column
    checked = check_records(bodies, AS_OF)
    assert checked.valid.all(), checked.rejected
    assert checked.customer_ids.tolist() == ["c-00001", "c-00002", "17", None, str(2**70)]
    flat = [event(1), event(2), event(3), event(4), event(5)]
    np.testing.assert_array_equal(checked.matrix, feature_matrix(flat, AS_OF))


def test_days_since_purchase_stands_in_for_an_absent_or_null_date():
    no_date = {k: v for k, v in event(1).items() if k != "last_purchase_date"}
    null_date = {**event(2), "last_purchase_date": None}
    both = {**event(3), "days_since_purchase": 1000}  # the date wins
    bodies = [{**no_date, "days_since_purchase": 29}, {**null_date, "days_since_purchase": 3}, both]
    checked = check_records(bodies, AS_OF)
    assert checked.valid.all()
    by_date = (AS_OF - date.fromisoformat(both["last_purchase_date"])).days
    assert checked.matrix[:, 3].tolist() == [29.0, 3.0, float(by_date)]


@pytest.mark.parametrize("gap", ["absent", "null"])
def test_an_integer_column_with_a_gap_keeps_its_integers(gap):
    first, second = {**event(1), "customer_id": 17}, event(2)
    if gap == "absent":
        del second["customer_id"]
    else:
        second["customer_id"] = None
    frame, absent = records_frame([first, second], ["customer_id", "age"])
    assert frame["customer_id"].tolist() == [17, None]
    assert type(frame["customer_id"][0]) is int  # not widened to 17.0
    assert absent["customer_id"].tolist() == [False, gap == "absent"]


def test_an_empty_block():
    checked = check_records([], AS_OF)
    assert checked.valid.shape == (0,)
    assert checked.matrix.shape == (0, 4)


def test_a_record_only_the_column_check_refuses_is_still_scored(monkeypatch):
    # The safety net: should the two validators ever disagree, the customer is not refused.
    real = records_module.validate_frame

    def stricter(*args, **kwargs):
        checked = real(*args, **kwargs)
        checked.valid[1] = False
        return checked

    monkeypatch.setattr(records_module, "validate_frame", stricter)
    bodies = [event(1), {**event(2), "customer_id": 22}, event(3)]
    checked = check_records(bodies, AS_OF)
    assert checked.valid.tolist() == [True, True, True]
    assert checked.rejected == {}
    assert checked.customer_ids.tolist() == ["c-00001", "22", "c-00003"]
    flat = [event(1), event(2), event(3)]
    np.testing.assert_array_equal(checked.matrix, feature_matrix(flat, AS_OF))
