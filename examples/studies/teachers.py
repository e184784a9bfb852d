"""Train the Keras teachers used by the examples, the grid and the bench. The code lives in the package
(edgesketch/bench/teachers.py, which `edgesketch bench` uses); this script keeps the examples' commands working.

    python examples/studies/teachers.py digits-mlp -o build/digits-mlp.keras

Teachers: digits-mlp (64-256-256-10, the bundled example), digits-small (64-32-10), digits-cnn (Conv2D on 8x8),
mnist1d-mlp (40-256-256-10), mnist1d-small (40-32-10), mnist1d-cnn (Conv1D).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgesketch.bench.teachers import SPECS, build, ensure, main, train  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
