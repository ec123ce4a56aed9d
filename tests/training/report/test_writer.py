from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from uservec.training.report.writer import report_json


@dataclass(frozen=True)
class Result:
    value: float

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "kind": "typed"}


def test_typed_results_numpy_scalars_and_paths_are_written_as_json():
    text = report_json({"a": Result(0.5), "b": np.float32(2.5), "c": Path("runs/x"),
                        "d": [np.int64(3)]})
    assert json.loads(text) == {"a": {"value": 0.5, "kind": "typed"}, "b": 2.5, "c": "runs/x",
                                "d": [3]}


def test_anything_else_is_refused_rather_than_written_as_a_repr():
    with pytest.raises(TypeError, match="object"):
        report_json({"a": object()})
