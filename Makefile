# Two commands for a newcomer: `make demo` (the whole tiny pipeline, offline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Optional: a PyTorch wheel index for the torch install only, e.g. https://download.pytorch.org/whl/cpu
# on a CPU-only Linux box (skips the multi-GB CUDA build that PyPI serves for Linux).
TORCH_INDEX_URL ?=
STAMP := $(VENV)/.zhllm-installed
# The tiny profile never touches the network.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ZHLLM_PROFILE=tiny
TEST_RUNS ?= $(CURDIR)/runs/_test
# The colab profile on CPU: its notebooks at smoke sizes against a local hub mirror of stand-ins (tests/hub_mirror.py)
COLAB_RUNS ?= $(CURDIR)/runs/_test_colab
COLAB := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ZHLLM_PROFILE=colab ZHLLM_SMOKE=1 \
	ZHLLM_HUB_MIRROR=$(COLAB_RUNS)/hub-mirror ZHLLM_RUNS=$(COLAB_RUNS)

.PHONY: install demo test test-colab notebooks labs grade clean help

help:
	@echo "make demo   - set up .venv, run every stage in the tiny profile (CPU, offline), print results"
	@echo "make test   - set up .venv, run the test suite (unit tests + every notebook, offline)"
	@echo "make test-colab - run every notebook in the colab profile on CPU at smoke sizes, against a local hub mirror"
	@echo "make notebooks - run every notebook (tiny profile) and write its .ipynb with the outputs"
	@echo "make labs   - build each lab with Otter: labs/student/*.ipynb, labs/dist/{autograder,solution}/"
	@echo "make grade SUBMISSIONS=dir - grade a folder of submitted lab notebooks into dir/scores.csv"

$(STAMP): pyproject.toml requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, on its own: the version pin keeps it the tested release; which build (CPU or CUDA)
	# comes from the index, so TORCH_INDEX_URL picks PyTorch's CPU wheels when set.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(VENV)/bin/zhllm demo --profile tiny

test: $(STAMP)
	rm -rf $(TEST_RUNS)
	$(OFFLINE) ZHLLM_RUNS=$(TEST_RUNS) ZHLLM_STRICT=1 OMP_NUM_THREADS=2 MPLBACKEND=Agg \
		$(PY) -m pytest -p no:cacheprovider --nbmake --nbmake-timeout=900 notebooks tests -v --durations=15

test-colab: $(STAMP)
	rm -rf $(COLAB_RUNS)
	$(COLAB) $(PY) -m tests.hub_mirror $(COLAB_RUNS)/hub-mirror
	$(COLAB) OMP_NUM_THREADS=2 MPLBACKEND=Agg \
		$(PY) -m pytest -p no:cacheprovider --nbmake --nbmake-timeout=900 notebooks -v --durations=10

notebooks: $(STAMP)
	$(OFFLINE) OMP_NUM_THREADS=2 $(PY) scripts/sync_notebooks.py --execute

labs: $(STAMP)
	$(PY) scripts/make_labs.py

# Offline, CPU only: each submission runs in a fresh kernel against its lab's autograder zip.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/folder"; exit 2; }
	@test -d labs/dist/autograder || $(MAKE) labs
	$(OFFLINE) OMP_NUM_THREADS=1 MPLBACKEND=Agg $(PY) scripts/grade_labs.py "$(SUBMISSIONS)"

clean:
	rm -rf runs $(VENV)
