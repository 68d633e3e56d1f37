# The README's commands. Each target installs what it needs (system packages when it can, then a
# virtual environment with torch pinned to the CPU wheel) before it runs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
APT_PKGS := openssh-server dropbear-bin dataset-fashion-mnist chromium

.PHONY: demo test lint bench-smoke install sysdeps clean

demo: sysdeps $(STAMP)          ## main job: ResNet-20 / Fashion-MNIST, pruned and measured on `local`
	$(BIN)/edgeprune demo

test: sysdeps $(STAMP)          ## the full test suite (real sshd devices, real ONNX Runtime)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check edgeprune tests benchmarks tools
	$(BIN)/ruff format --check edgeprune tests benchmarks tools
	$(BIN)/mypy edgeprune
	$(BIN)/lint-imports
	$(BIN)/vermin -q --no-tips -t=3.6- devices/agent/edgeprune_agent.py devices/agent/bootstrap.py
	$(BIN)/hadolint docker/host/Dockerfile docker/rpi/Dockerfile docker/jetson/Dockerfile.jp6 docker/jetson/Dockerfile.jp46
	$(BIN)/shellcheck --shell=sh devices/provision/*.sh docker/agent/entrypoint.sh

bench-smoke: $(STAMP)
	$(BIN)/pytest -q tests/benchmarks

install: $(STAMP)

# openssh-server and dropbear-bin for the loopback device farm the tests start; Fashion-MNIST for the
# demo; chromium for the report's browser test.
sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && $(SUDO) true 2>/dev/null; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: cannot install$$missing (no apt-get or no root); tests that need them will say so"; fi; \
	fi

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache
