"""GET /v1/bundle: what the service is serving."""

from __future__ import annotations

from fastapi import APIRouter

from uservec.service.dependencies import RuntimeDep
from uservec.service.engine import Bundle
from uservec.service.errors import error_responses
from uservec.service.schemas import BundleSummary, TaskSummary

router = APIRouter(tags=["operations"])


def summarize(bundle: Bundle) -> BundleSummary:
    manifest = bundle.manifest
    tasks = []
    for task in manifest.tasks:
        head = bundle.recommend_heads.get(task.name)
        tasks.append(TaskSummary(
            name=task.name, kind=task.kind, output=task.output, labels=task.labels,
            class_prior=task.class_prior, prior_power=task.prior_power, domain=task.domain,
            source_domains=task.source_domains,
            num_items=head.catalogue.size if head else None, index_kind=task.index_kind,
        ))
    return BundleSummary(
        bundle_version=manifest.bundle_version,
        schema_version=manifest.schema_version,
        created_at=manifest.created_at,
        code_version=manifest.code_version,
        data_fingerprint=manifest.data_fingerprint,
        seed=manifest.seed,
        max_len=manifest.model.max_len,
        dim=manifest.model.dim,
        vocab_size=bundle.vocab.size,
        domains=bundle.vocab.domains(),
        model_file=bundle.model_file,
        tasks=tasks,
        recommend_domains=sorted({h.domain for h in bundle.recommend_heads.values()}),
        loaded_at=bundle.loaded_at.isoformat(),
    )


@router.get(
    "/v1/bundle",
    summary="Manifest summary of the bundle being served",
    responses=error_responses("not_ready", "request_timeout", "too_many_requests"),
)
async def bundle_info(runtime: RuntimeDep) -> BundleSummary:
    return summarize(runtime.bundle)
