PY ?= python3

.PHONY: install example test docs

.install-stamp: pyproject.toml setup.py tools/install.sh sklmm/_engine/_schur_kernel.c sklmm/_engine/_dense_kernel.c
	PYTHON=$(PY) bash tools/install.sh
	touch .install-stamp

install: .install-stamp

## run the main example: fit sleepstudy and print the lme4-style summary
example: .install-stamp
	$(PY) examples/sleepstudy_summary.py

## run the test suite
test: .install-stamp
	$(PY) -m pytest -q

## build the documentation (Sphinx; warnings are errors) into docs/_build/html
docs: .install-stamp
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html
