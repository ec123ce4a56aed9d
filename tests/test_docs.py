"""The documentation a newcomer reads: links that resolve, a README that stays short, no history
prose, and generated pages that match their JSON inputs (``uservec docs``)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from uservec.cli import main
from uservec.docs import (
    BENCH_DIR,
    NOT_RECORDED,
    REPORTS_DIR,
    DocsError,
    Inputs,
    add_bench,
    add_report,
    bench_rows,
    replace_block,
    report_section,
    results_summary,
    slug,
    stale,
    stamp_of,
)

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 20 * 1024
#: history prose: the docs describe what is, CHANGELOG.md what changed
FORBIDDEN = ("this release", "previous release", "earlier release", "earlier README", "this stop")
SKIP_DIRS = {".git", ".venv", "node_modules", "runs", "bundles", "build", "dist", ".typecheck"}
#: an inline link or image: [text](target "optional title")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
#: a pointer from code or config to the docs: docs/<file>.md or README.md, maybe with an #anchor
DOC_POINTER = re.compile(r"(?<![\w/.-])((?:docs/[\w-]+|README)\.md)(?:#([\w-]+))?")
#: the files that point at the docs in comments and docstrings
POINTER_FILES = ("*.py", "*.toml", "Makefile", "Dockerfile", "constraints.txt")


def _checked_files(root: Path = ROOT) -> list[Path]:
    """README.md, CHANGELOG.md and every markdown file under docs/."""
    return [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").rglob("*.md"))]


def _all_markdown(root: Path = ROOT) -> list[Path]:
    return sorted(path for path in root.rglob("*.md")
                  if not any(part in SKIP_DIRS or part.endswith(".egg-info")
                             for part in path.relative_to(root).parts))


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code, where links are not links."""
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file offers: heading slugs (GitHub's, duplicates numbered) and
    explicit ``<a id=...>`` / ``<a name=...>``."""
    text = re.sub(r"^(```|~~~).*?^\1", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)
    found: set[str] = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def broken_links(path: Path) -> list[str]:
    """Internal links of ``path`` whose file or ``#anchor`` does not exist."""
    problems = []
    for target in LINK.findall(_prose(path.read_text())):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{path.name}: {target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{path.name}: {target} (no such anchor in {linked.name})")
    return problems


def _pointer_sources(root: Path) -> list[Path]:
    """Code and config files of the repository (virtual environments and caches left out; this
    file too: its examples and generated-page checks are not pointers)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")
                   and not d.endswith(".egg-info")]
        found += [Path(folder) / name for name in files
                  if any(Path(name).match(pattern) for pattern in POINTER_FILES)]
    return sorted(path for path in found if path.resolve() != Path(__file__).resolve())


def broken_pointers(root: Path) -> list[str]:
    """Pointers to a docs page or the README (with or without an anchor) in code and config whose
    file or anchor does not exist."""
    problems = []
    for path in _pointer_sources(root):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for target, anchor in DOC_POINTER.findall(line):
                where = f"{path.relative_to(root)}:{number}: {target}"
                if not (root / target).is_file():
                    problems.append(f"{where} (no such file)")
                elif anchor and anchor not in anchors(root / target):
                    problems.append(f"{where}#{anchor} (no such anchor)")
    return problems


# --- the repository's docs -----------------------------------------------------------------------


@pytest.mark.parametrize("path", _checked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_internal_link_and_anchor_resolves(path: Path) -> None:
    assert path.exists()
    assert broken_links(path) == []


def test_every_doc_pointer_in_code_and_config_resolves() -> None:
    assert broken_pointers(ROOT) == []


def test_the_readme_stays_under_20_kb() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/"


@pytest.mark.parametrize("path", _all_markdown(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_file_narrates_history(path: Path) -> None:
    text = path.read_text().lower()
    assert [phrase for phrase in FORBIDDEN if phrase.lower() in text] == []


def test_generated_docs_match_their_inputs() -> None:
    assert stale(ROOT) == [], "run `uservec docs` and commit the result"


def test_the_service_reference_names_every_error_code_and_setting() -> None:
    from uservec.service.errors import ERROR_CODES
    from uservec.service.settings import Settings

    text = (ROOT / "docs" / "service.md").read_text()
    assert [code for code in ERROR_CODES if f"`{code}`" not in text] == []
    assert [f for f in Settings.model_fields if f"USERVEC_{f.upper()}" not in text] == []


# --- the checks themselves can fail --------------------------------------------------------------


def test_the_link_check_sees_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading: yes\n\n## Dup\n\n## Dup\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-yes) [dup](other.md#dup-1) [self](#page)\n"
        "[web](https://example.com/x#y) `[not a link](nowhere.md)`\n\n"
        "```\n[in a code block](nowhere.md)\n```\n\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [bad self](#nope)\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nope (no such anchor in other.md)",
        "page.md: #nope (no such anchor in page.md)",
    ]


@pytest.mark.parametrize(("heading", "expected"), [
    ("Where the signal is: `uservec probe`", "where-the-signal-is-uservec-probe"),
    ("extra.adapt: task training", "extraadapt-task-training"),
    ("POST /predict-profile", "post-predict-profile"),
    ("Low-label: the majority class is the floor", "low-label-the-majority-class-is-the-floor"),
    ("int8-random-amd-epyc-avx512", "int8-random-amd-epyc-avx512"),
    ("demo: gender (P2, full labels)", "demo-gender-p2-full-labels"),
    ("[Linked](x.md) *emphasis* and snake_case", "linked-emphasis-and-snake_case"),
])
def test_slugs_follow_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_the_pointer_check_sees_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Patch placement\n")
    (tmp_path / "README.md").write_text("# Project\n\n## Data\n")
    (tmp_path / "code.py").write_text("# see docs/guide.md#patch-placement\n"
                                      '"""(README.md#data; docs/guide.md)"""\n')
    (tmp_path / "config.toml").write_text("# docs/gone.md#data\n# (docs/guide.md#placement)\n"
                                          "# README.md#results, tests/README.md#x\n")
    (tmp_path / "Makefile").write_text("# docs/gone.md\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "skipped.py").write_text("# docs/gone.md#data\n")
    assert broken_pointers(tmp_path) == [
        "Makefile:1: docs/gone.md (no such file)",
        "config.toml:1: docs/gone.md (no such file)",
        "config.toml:2: docs/guide.md#placement (no such anchor)",
        "config.toml:3: README.md#results (no such anchor)",
    ]


def test_the_history_check_sees_a_forbidden_phrase(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text("Numbers of This Release.\n")
    found = [p for p in _all_markdown(tmp_path)
             if any(f.lower() in p.read_text().lower() for f in FORBIDDEN)]
    assert found == [tmp_path / "docs" / "x.md"]


# --- the generator -------------------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the README and docs/, as ``uservec docs`` sees the repository."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def _demo_report() -> dict:
    return json.loads((ROOT / REPORTS_DIR / "demo.json").read_text())


def test_check_fails_on_a_changed_input_and_docs_fixes_it(repo: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["docs", "--root", str(repo), "--check"]).exit_code == 0
    report = _demo_report()
    report["next_item"]["methods"]["nextitnet"]["ndcg@10"] = 0.123456
    (repo / REPORTS_DIR / "demo.json").write_text(json.dumps(report))
    result = runner.invoke(main, ["docs", "--root", str(repo), "--check"])
    assert result.exit_code == 1
    assert "docs/results.md" in result.output and "README.md" in result.output
    assert runner.invoke(main, ["docs", "--root", str(repo)]).exit_code == 0
    assert "0.1235" in (repo / "docs" / "results.md").read_text()
    assert "0.1235" in (repo / "README.md").read_text()
    assert runner.invoke(main, ["docs", "--root", str(repo), "--check"]).exit_code == 0


def test_a_hand_edit_inside_a_generated_block_is_stale(repo: Path) -> None:
    readme = repo / "README.md"
    readme.write_text(readme.read_text().replace("| ridge ", "| ridge (edited) ", 1))
    assert stale(repo) == [Path("README.md")]


def test_docs_outside_the_repository_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["docs", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "not the repository root" in result.output and "Traceback" not in result.output


def test_add_report_copies_a_run_without_its_logs(repo: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "whatever"
    run.mkdir(parents=True)
    report = _demo_report()
    report["config"]["name"] = "my-data"
    report["pretrain"]["history"] = [{"epoch": 1}]
    (run / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(main, ["docs", "--root", str(repo), "--add-report", str(run)])
    assert result.exit_code == 0, result.output
    copied = json.loads((repo / REPORTS_DIR / "my-data.json").read_text())
    assert "history" not in copied["pretrain"] and copied["next_item"] == report["next_item"]
    assert "## my-data" in (repo / "docs" / "results.md").read_text()
    assert "[my-data](docs/results.md#my-data)" in (repo / "README.md").read_text()
    with pytest.raises(DocsError, match="input name"):
        add_report(repo, run, name="../escape")


def test_add_bench_takes_a_folder(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench-new"
    out.mkdir()
    shutil.copy(ROOT / BENCH_DIR / "robustness.json", out / "bench.json")
    assert add_bench(repo, out) == repo / BENCH_DIR / "bench-new.json"
    assert CliRunner().invoke(main, ["docs", "--root", str(repo)]).exit_code == 0
    assert "## bench-new" in (repo / "docs" / "benchmarks.md").read_text()


def test_replace_block_needs_its_markers() -> None:
    text = "a\n<!-- results:begin (note) -->\nold\n<!-- results:end -->\nb\n"
    assert replace_block(text, "results", "new") == (
        "a\n<!-- results:begin (note) -->\nnew\n<!-- results:end -->\nb\n")
    with pytest.raises(DocsError, match="benchmarks:begin"):
        replace_block(text, "benchmarks", "new")


def test_stamps_read_the_environment_block_and_fall_back() -> None:
    report = {"created_at": "2026-12-05T18:01:02+00:00", "code_version": "0.1.0+ga4d1f88.dirty"}
    assert stamp_of(report).commit == "a4d1f88 (with uncommitted changes)"
    assert stamp_of(report).cpu == NOT_RECORDED
    report["environment"] = {"cpu": "Some CPU, AVX2", "commit": "0123abc", "python": "3.11.9",
                             "torch": "2.13.0", "onnxruntime": "1.23.0"}
    stamp = stamp_of(report)
    assert (stamp.cpu, stamp.commit, stamp.date) == ("Some CPU, AVX2", "0123abc",
                                                     "2026-12-05T18:01:02+00:00")
    assert "Python 3.11.9, torch 2.13.0, onnxruntime 1.23.0" in stamp.line()
    bench = {"meta": {"cpu": "AMD EPYC"}}
    assert stamp_of(bench).line() == (
        "CPU: AMD EPYC. Date: not recorded. Commit: not recorded. Versions: not recorded.")


def test_results_show_every_method_with_spread_and_the_paired_difference() -> None:
    text = "\n".join(report_section("demo", _demo_report()))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    for method in ("majority", "lr", "lr_bal", "popularity", "cooc", "ridge", "adapter"):
        assert " ± " in rows[method], method
    assert "(won 0/5, p " in text  # P2: per-fold paired difference
    assert "(Wilcoxon p " in text  # P3: per-user paired difference


def test_results_survive_missing_keys() -> None:
    pretrain_only = {"config": {"name": "ml"}, "next_item": {"k": 10, "methods": {
        "nextitnet": {"hr@10": 0.1, "ndcg@10": 0.05}}}}
    assert "| nextitnet | 0.1000 | 0.0500 | - |" in report_section("ml", pretrain_only)
    bare_task = {"tasks": {"tasks": {"t": {"kind": "profile", "regimes": {"full": {
        "methods": {"adapter": {"accuracy": {"mean": 0.5}}}}}}}}}
    lines = report_section("x", bare_task)
    assert "| adapter | 0.500 | - | - | - | - | - |" in lines
    assert report_section("empty", {})[0] == "## empty"


def test_the_headline_keeps_two_regimes_and_points_to_the_rest() -> None:
    report = _demo_report()
    regimes = report["tasks"]["tasks"]["gender"]["regimes"]
    regimes["0.1"] = regimes["0.05"] = regimes["1.0"]
    text = results_summary(Inputs({"demo": report}, {}, (), {}))
    assert "| demo | gender, 10% | accuracy |" in text
    assert "5% of the labels" not in text.split("\n\n")[1]
    assert "the other label regimes (0.05)" in text


def test_benchmark_rows_carry_targets_and_the_worst_int8_change() -> None:
    bench = json.loads((ROOT / BENCH_DIR / "int8-ciao.json").read_text())
    changes = bench["int8"]["methods"]["static"]["task_metric_change"]
    worst = min(v for metrics in changes.values() for v in metrics.values())
    [row] = bench_rows(bench)
    assert f"{worst * 100:+.2f} pt" in row[2]
    main_rows = bench_rows(json.loads((ROOT / BENCH_DIR / "main.json").read_text()))
    assert any(row[3] in ("yes", "**no**") for row in main_rows)


# --- the README's worked example -----------------------------------------------------------------


def _worked_example() -> tuple[str, str, str]:
    """The three code blocks of the README's worked example: data script, config, commands."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Bring your own data"):text.index("## Commands")]
    blocks = re.findall(r"```\w+\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 3, "the worked example is: a data script, a config, the commands"
    return blocks[0], blocks[1], blocks[2]


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worked example's files, made by its own script in an empty folder."""
    import subprocess

    script, config, _ = _worked_example()
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, timeout=60)
    (tmp_path / "my-data.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_worked_example_data_and_config_prepare(example: Path) -> None:
    result = CliRunner().invoke(main, ["prepare", "my-data.toml", "--out", "prepared"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert stats["users"] == 400 and set(stats["domains"]) == {"books", "films"}
    commands = _worked_example()[2]
    assert "uservec run my-data.toml" in commands and "runs/my-data" in commands


@pytest.mark.slow
def test_the_worked_example_runs_and_exports(example: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["run", "my-data.toml"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", "runs/my-data", "--out", "bundles/my-data"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["bundle", "verify", "bundles/my-data"])
    assert result.exit_code == 0 and "2 tasks" in result.output, result.output


def test_profile_tasks_with_several_label_regimes_get_a_label_efficiency_table() -> None:
    def body(acc: float) -> dict:
        return {"methods": {"lr": {"accuracy": {"mean": acc}, "macro_f1": {"mean": acc / 2}}}}

    task = {"kind": "profile", "regimes": {"0.05": body(0.6), "1.0": body(0.8),
                                           "0.1": body(0.7)},
            "skipped_regimes": {"0.01": "skipped: ..."}}
    text = "\n".join(report_section("x", {"tasks": {"tasks": {"g": task}}}))
    assert "### x: g, label efficiency (P2)" in text and "Skipped (too few" in text
    assert "| method | 5% | 10% | 100% |" in text  # columns in increasing fraction
    assert "| lr | 0.600 / 0.300 | 0.700 / 0.350 | 0.800 / 0.400 |" in text
