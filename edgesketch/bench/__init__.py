"""The side-by-side benchmark: edgesketch against the int8/float models users deploy today.
Run it with `python -m edgesketch.bench.run [--quick] [--out docs]`."""
