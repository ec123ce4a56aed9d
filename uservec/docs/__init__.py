"""Generated documentation: the results and benchmark pages and the README's two summary tables.

    uservec docs                                  # regenerate everything from the JSON inputs
    uservec docs --check                          # change nothing; exit 1 naming stale files
    uservec docs --add-report runs/ciao           # copy a finished run's report.json in first
    uservec docs --add-bench bench/ --name main   # copy a bench.json in first

No result number in the docs is typed by hand: each comes from a committed copy of a run's
``report.json`` (``docs/data/reports/<name>.json``) or of a ``bench.json``
(``docs/data/bench/<name>.json``), so every number can be traced to the run that measured it, and
``tests/test_docs.py`` fails when a page disagrees with its inputs. Reading is plain, tolerant JSON:
a key a report does not have prints as "-" instead of failing, so reports written by older or newer
code still render.

Modules: ``inputs`` (the JSON inputs and their :class:`Stamp`), ``formatting`` (numbers and
tables), ``results`` and ``benchmarks`` (one page and one README table each), ``writing``
(generate, check, write, add an input).
"""

from uservec.docs.benchmarks import bench_rows, bench_section, benchmarks_page, benchmarks_summary
from uservec.docs.formatting import slug, table
from uservec.docs.inputs import (
    BENCH_DIR,
    BENCH_INDEX,
    NOT_RECORDED,
    REPORTS_DIR,
    DocsError,
    Inputs,
    Stamp,
    read_inputs,
    stamp_of,
)
from uservec.docs.results import report_section, results_page, results_summary
from uservec.docs.writing import (
    add_bench,
    add_report,
    error_codes,
    generate,
    replace_block,
    slim,
    stale,
    write,
)

__all__ = [
    "BENCH_DIR", "BENCH_INDEX", "NOT_RECORDED", "REPORTS_DIR", "DocsError", "Inputs", "Stamp",
    "add_bench", "add_report", "bench_rows", "bench_section", "benchmarks_page",
    "benchmarks_summary", "error_codes", "generate", "read_inputs", "replace_block",
    "report_section", "results_page", "results_summary", "slim", "slug", "stale", "stamp_of",
    "table", "write",
]
