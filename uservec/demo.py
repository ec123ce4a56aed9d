"""``uservec demo``: the main job end to end on one machine, no data download and no Redis.

Generate a dataset -> pretrain -> task adapters -> export a bundle -> print ``curl`` examples ->
serve it on localhost with the in-process cache.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

from uservec.contract.ids import split_item_key
from uservec.training.config import ExperimentConfig
from uservec.training.data.dataset import PreparedDataset

log = logging.getLogger(__name__)


def example_user(dataset: PreparedDataset, n_events: int = 8) -> list[dict[str, str]]:
    """The latest events of the first user with events in every domain, as request JSON."""
    for user in range(dataset.num_users):
        rows = range(int(dataset.offsets[user]), int(dataset.offsets[user + 1]))
        domains = {int(dataset.event_domain[r]) for r in rows}
        if len(domains) == len(dataset.domains):
            break
    events = []
    for row in list(rows)[-n_events:]:
        domain, item = split_item_key(str(dataset.catalog[dataset.item_index[row]]))
        events.append({"item_id": item, "domain": domain})
    return events


def source_only(events: list[dict[str, str]], target: str) -> list[dict[str, str]]:
    return [e for e in events if e["domain"] != target] or events


def curl_examples(base_url: str, events: list[dict[str, str]], target: str | None) -> str:
    """Ready-to-paste commands for every endpoint."""

    def post(path: str, body: dict[str, Any]) -> str:
        return (f"curl -s -X POST {base_url}{path} -H 'Content-Type: application/json' \\\n"
                f"     -d {shlex.quote(json.dumps(body))}")

    user = {"user_id": "u1", "events": events}
    lines = [
        f"curl -s {base_url}/health/ready",
        post("/embed", {"users": [user]}),
        post("/predict-profile", {"users": [user]}),
    ]
    if target is not None:
        cold = {"user_id": "u1", "events": source_only(events, target)}
        lines.append(post("/recommend", {"users": [cold], "domain": target, "k": 5}))
    lines += [f"curl -s {base_url}/v1/bundle", f"curl -s {base_url}/metrics | head"]
    return "\n\n".join(lines)


def run_demo(cfg: ExperimentConfig, out_dir: Path) -> tuple[Path, str]:
    """Train and export; returns the bundle folder and the curl examples to print."""
    from uservec.pipeline import run_experiment
    from uservec.training.run_dir import RunDir

    report = run_experiment(cfg, out_dir, resume=False)
    bundle = Path(report["bundle"]["path"])
    dataset = RunDir(out_dir).load_dataset()
    target = next((t.target_domain for t in cfg.tasks if t.kind == "cross_domain"), None)
    return bundle, curl_examples("{BASE}", example_user(dataset), target)
