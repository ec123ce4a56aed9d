# The two commands of the README:
#   make demo   install what the main job needs, then train -> export -> serve on generated data
#   make test   install what the tests need, then run the test suite
# Both work on a fresh machine with nothing but Python 3.11 (pip reads torch==2.13.0 CPU from
# the machine's wheel cache / PyPI; never let it resolve a loose torch pin, that pulls CUDA).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint install clean typecheck

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Re-install only when the project metadata or the pinned versions change (constraints.txt:
# the exact third-party versions; docs/reproducibility.md#pinned-versions).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/uservec demo

test: $(STAMP) typecheck
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/pytest -q

# mypy reads the package as installed: a folder of symlinks that maps the stage folders into the
# uservec namespace the way pyproject's package-dir does.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/uservec
	for entry in uservec/*; do ln -s "$$PWD/$$entry" .typecheck/uservec/; done
	for stage in training export service; do ln -s "$$PWD/$$stage" .typecheck/uservec/$$stage; done
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs bundles .pytest_cache .ruff_cache .mypy_cache .typecheck
