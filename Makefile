# The two set-up commands the README gives: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs. setuptools' notice about
# editable installs (a folder named like the package may shadow it) is silenced: here that
# folder is the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: demo test lint bench
demo: $(STAMP)
	$(BIN)/ultravox-fsm demo

lint: $(STAMP)
	$(BIN)/ruff check ultravox_fsm tests benchmarks examples
	$(BIN)/ruff format --check ultravox_fsm tests benchmarks examples
	$(BIN)/mypy --strict ultravox_fsm

# The end-to-end suite runs a second time on the lean WebSocket transport (transport="lean");
# test_lean_socket.py does not depend on the switch, so it runs once.
test: lint
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -rs -p no:cacheprovider
	HYPOTHESIS_PROFILE=ci ULTRAVOX_FSM_TEST_TRANSPORT=lean $(BIN)/python -m pytest -q -rs \
		-p no:cacheprovider tests/e2e --ignore=tests/e2e/test_lean_socket.py

bench: $(STAMP)
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/session.py
	$(BIN)/python benchmarks/replay_turn.py
	$(BIN)/python benchmarks/realtime.py
	$(BIN)/python benchmarks/long_call.py
