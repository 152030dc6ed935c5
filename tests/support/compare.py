"""assert_same: a whole-value comparison for round-trip tests, so no field can be forgotten.

Dataclasses are compared field by field (every field, by `dataclasses.fields`), numpy arrays by dtype,
shape and values, tuples and lists element-wise (NamedTuples are tuples), dicts by their key sets and then
value by value; anything else by type and `==`. Types must match exactly: a tuple that comes back as a list,
an int as a float or a bool as an int is a difference. The failure names the path of the first difference
(`value.asset.references[1].camera.K`).

Exact by default; `atol`/`rtol` allow round-off in float arrays and floats (numeric conversions, not
serialisation, which must be exact).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def assert_same(got: Any, want: Any, where: str = "value", *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Raise AssertionError naming the first place where `got` differs from `want`."""
    if type(got) is not type(want):
        raise AssertionError(f"{where}: got a {type(got).__name__} {_short(got)}, want a {type(want).__name__} {_short(want)}")
    if dataclasses.is_dataclass(want):
        for f in dataclasses.fields(want):
            assert_same(getattr(got, f.name), getattr(want, f.name), f"{where}.{f.name}", atol=atol, rtol=rtol)
    elif isinstance(want, np.ndarray):
        if got.dtype != want.dtype:
            raise AssertionError(f"{where}: dtype {got.dtype} != {want.dtype}")
        if got.shape != want.shape:
            raise AssertionError(f"{where}: shape {got.shape} != {want.shape}")
        if (atol or rtol) and want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=where)
        elif not np.array_equal(got, want, equal_nan=want.dtype.kind in "fc"):
            bad = np.argwhere(got != want)
            first = tuple(int(i) for i in bad[0]) if bad.size else ()
            raise AssertionError(f"{where}: {len(bad)} values differ, first at {list(first)}: "
                                 f"{got[first]!r} != {want[first]!r}")
    elif isinstance(want, (tuple, list)):
        if len(got) != len(want):
            raise AssertionError(f"{where}: length {len(got)} != {len(want)}: {_short(got)} vs {_short(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]", atol=atol, rtol=rtol)
    elif isinstance(want, dict):
        if set(got) != set(want):
            raise AssertionError(f"{where}: keys {sorted(map(repr, got))} != {sorted(map(repr, want))}")
        for k in want:
            assert_same(got[k], want[k], f"{where}[{k!r}]", atol=atol, rtol=rtol)
    elif isinstance(want, float) and (atol or rtol):
        if not abs(got - want) <= atol + rtol * abs(want):
            raise AssertionError(f"{where}: {got!r} != {want!r} (atol {atol}, rtol {rtol})")
    elif not got == want:
        raise AssertionError(f"{where}: {got!r:.200} != {want!r:.200}")


def _short(value: Any) -> str:
    return f"{value!r:.80}"
