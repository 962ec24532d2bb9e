# actstudy — `make demo` runs the main job, `make test` the whole suite. Both install first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test demo stop bench clean

# The fused CPU kernels of TeLU and PWLU: built once per machine (~20 s), checked in a second after that.
install: $(STAMP)
	@$(BIN)/python -m activations.build_native

# Re-runs only when the pins change, so a second `make install` takes seconds.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PY) >/dev/null || { echo "make: $(PY) not found (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# ruff (pinned in the lock, configured in pyproject.toml): pyflakes, pycodestyle, isort, bugbear, pyupgrade.
lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Starts Ray, MLflow and the API locally, submits examples/mnist1d-quick.yaml over REST and follows it.
demo: install
	$(BIN)/actstudy activations --plot activations.png > /dev/null
	$(BIN)/python -m service.demo

# Stops the stack `make demo` left running (the API, Ray and MLflow, and all they started) and waits for it.
stop:
	@test -x $(BIN)/python || { echo "no stack running (nothing installed)"; exit 0; }
	$(BIN)/python -m service.demo --stop

bench: install
	$(BIN)/python bench/activations.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
