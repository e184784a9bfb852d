"""The bench measures every contender as tune measures a sketch: edgesketch.measure (build a firmware around any C
model with the es_predict_q API, run an int8 test set through it under QEMU, read its size), re-exported here."""
from ..measure import (DeviceRun, DoesNotFit, bench_board, build_elf, host_check, host_run, run,  # noqa: F401
                       trivial_files, trivial_size)
