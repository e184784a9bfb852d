PYTHON ?= python3

.PHONY: setup demo test

setup:
	bash .ci/setup

# distil the bundled digits example, export it for the emulated Cortex-M4, build, run under QEMU, verify over serial
demo: setup
	bash examples/digits/demo.sh

test: setup
	$(PYTHON) -m pytest -q
