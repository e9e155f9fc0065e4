# Streaming Mosaic: everything a developer or CI runs.
#   make demo        generate a demo tile set and mosaic it through qgis_process
#   make test        install what is missing, run every test (core, CLI, real QGIS)
#   make bench       benchmark against GDAL and friends (BENCH_SCALE=ci|small|large)
#   make bench-qgis344  the same benchmark on GDAL 3.13 (Debian sid chroot, root), own README block
#   make package     streaming_mosaic.zip for QGIS's "Install from ZIP"
#   make deploy      link this checkout into your QGIS profile's plugin folder
#   make screenshots dialog screenshots and pictures for the README (Xvfb)
#   make test-qgis340  the same tests in QGIS 3.40 LTR (Debian 13 chroot, root)
#   make test-qgis344  the same tests in QGIS 3.44 / GDAL 3.13 (Debian sid chroot, root)
#   make test-fresh    the README's `make demo` and `make test` on a fresh Debian 12 (chroot, root)

PY ?= /usr/bin/python3
PYTEST ?= $(PY) -m pytest
PYTEST_ARGS ?= -q
BUILD ?= build
QGIS_PROFILE ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
SKIP_DEPS ?=

DEPS = $(if $(SKIP_DEPS),@true,tools/ensure-deps.sh)

.PHONY: demo test test-unit test-qgis bench bench-qgis344 bench-smoke package deploy undeploy screenshots lint \
        test-qgis340 test-qgis344 test-fresh clean

demo:
	$(DEPS) run
	$(PY) tools/demo.py --build $(BUILD)/demo

test:
	$(DEPS) test
	$(MAKE) --no-print-directory test-unit test-qgis

test-unit:
	$(PYTEST) $(PYTEST_ARGS) tests/unit

test-qgis:
	$(PYTEST) $(PYTEST_ARGS) tests/qgis

bench:
	$(DEPS) bench
	$(PY) bench/run.py --scale $${BENCH_SCALE:-small} --readme README.md

# Its table goes between <!-- bench:qgis344:start/end -->, beside the host's.
bench-qgis344:
	tools/chroot.sh qgis344 -- sh -c '$(if $(SKIP_DEPS),true,tools/ensure-deps.sh bench) && $(PY) bench/run.py \
	    --scale $${BENCH_SCALE:-small} --readme README.md --block qgis344'

bench-smoke:
	$(DEPS) bench
	$(PY) bench/run.py --scale ci

package:
	$(PY) tools/package.py --output streaming_mosaic.zip

deploy:
	mkdir -p "$(QGIS_PROFILE)/python/plugins"
	ln -sfn "$(CURDIR)" "$(QGIS_PROFILE)/python/plugins/streaming_mosaic"
	@echo "linked $(CURDIR) -> $(QGIS_PROFILE)/python/plugins/streaming_mosaic"
	@echo "restart QGIS and enable 'Streaming Mosaic' in Plugins > Manage and Install Plugins"

undeploy:
	rm -f "$(QGIS_PROFILE)/python/plugins/streaming_mosaic"

screenshots:
	$(DEPS) screenshots
	$(PY) tools/screenshots.py --out resources/screenshots

test-qgis340:
	tools/chroot.sh qgis340 -- make test

test-qgis344:
	tools/chroot.sh qgis344 -- make test

test-fresh:
	tools/chroot.sh fresh12 -- sh -c 'make demo && make test'

clean:
	rm -rf $(BUILD) streaming_mosaic.zip .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

lint:
	@command -v ruff >/dev/null 2>&1 || { echo "lint: install ruff (pip install ruff)"; exit 1; }
	ruff check .
