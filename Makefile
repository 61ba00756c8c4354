# EchoSynth: `make demo` and `make test` build .venv on first use (Python 3.11 + pip only).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench release clean-venv

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	# torch first, on its own, so that the local CPU build is the one that satisfies every later pin.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c requirements.lock -r requirements.lock
	$(BIN)/pip install --quiet -c requirements.lock --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/echosynth demo --out out/demo --model latent-camus128

test: $(STAMP)
	$(BIN)/ruff check EchoSynthLib EchoSynth Testing bench
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/simulator_speed.py
	$(BIN)/python bench/loader_speed.py
	$(BIN)/python bench/slicer_synthesis_speed.py
	$(BIN)/python bench/sdm_speed.py --sizes 64 128 --batches 1 16 --steps 10 25 50 100 1000 --budget 60

# Models as release assets (dist/models/*.zip + manifest, also into Resources/Models/manifest.json) and the
# extension source tree without weights (dist/SlicerEchoSynth): docs/SLICER.md, "cutting a release".
release: $(STAMP)
	$(BIN)/python -m EchoSynthLib.release --out dist

clean-venv:
	rm -rf $(VENV)
