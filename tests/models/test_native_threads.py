"""The service's cap on the model's native threads: set per calling thread, and the answers of
a parallel (OpenMP) model are the same bits with one thread as with all of them."""

import threading
from dataclasses import replace

import numpy as np
from threadpoolctl import threadpool_info

from models.predictor import limit_native_threads
from tests.models.fitted import boosted, customers


def openmp_threads() -> int:
    return next(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")


def run_in_thread(fn):
    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def test_one_thread_gives_the_same_bits_as_the_librarys_default():
    default = boosted()
    capped = replace(default, native_threads=1)  # the same fitted model, capped
    matrix = customers(5000, seed=6)
    # In a fresh thread each, so the cap set for `capped` cannot leak into `default`'s call.
    expected = run_in_thread(lambda: default.churn_probability(matrix))
    got = run_in_thread(lambda: (capped.churn_probability(matrix), openmp_threads()))
    np.testing.assert_array_equal(got[0], expected)
    assert got[1] == 1  # it was scored with one thread


def test_the_cap_belongs_to_the_thread_that_set_it():
    before = run_in_thread(openmp_threads)  # all cores (2 on CI)
    capped = run_in_thread(lambda: (limit_native_threads(1), openmp_threads())[1])
    after = run_in_thread(openmp_threads)
    assert capped == 1
    assert after == before
