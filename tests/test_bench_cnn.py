"""The int8 Conv1D baseline (edgesketch.bench.cnn): generated C equal to Int8CNN.forward bit for bit on the host
(ASan/UBSan), clean under the cross compilers, and on emulated M4 (SMLAD path), M3 and M0 (plain path); a short distil
on mnist1d loses little to int8. Needs the cross toolchains and QEMU, as the other bench tests."""
from __future__ import annotations

import numpy as np
import pytest
from ctest_util import CROSS, SANITIZE, WARN, _run, _san_env, edge_rows

from edgesketch.bench import cnn, device
from edgesketch.errors import ConfigError

pytestmark = pytest.mark.slow   # trains, builds firmware or runs QEMU: the full suite's tier (tests/conftest.py)

# (architecture, input positions, input channels, classes): GAP and flatten heads, one and two convs, strides that
# leave odd position counts, odd filter counts (the DSP kernel's leftovers), 'valid' padding, several input channels
NETS = [("c8k5s2-gap", 40, 1, 10), ("c7k9s3-c5k4s1-gap", 40, 2, 10), ("c8k5s1-c16k5s2-flatten", 40, 3, 10),
        ("c3k3s1-flatten-valid", 17, 1, 3), ("c6k4s2-c9k3s1-flatten", 33, 5, 7)]

DRIVER = r"""
#include <stdio.h>
#include "es_model.h"
int main(void)
{
    int8_t x[ES_N_INPUTS];
    float xf[ES_N_INPUTS], out[ES_N_OUTPUTS];
    int32_t s[ES_N_OUTPUTS], rc[6];
    while (fread(x, 1, sizeof x, stdin) == sizeof x) {
        if (es_predict_q(x, s) != ES_OK) return 3;
        if (fwrite(s, 4, ES_N_OUTPUTS, stdout) != ES_N_OUTPUTS) return 3;
        rc[0] = es_argmax(s);
        fwrite(rc, 4, 1, stdout);
    }
    rc[0] = es_predict_q(NULL, s); rc[1] = es_predict_q(x, NULL); rc[2] = es_predict(NULL, out);
    rc[3] = es_predict(xf, NULL); rc[4] = es_debug_q(NULL, NULL, NULL); rc[5] = ES_ERR_NULL;
    fwrite(rc, 4, 6, stdout);
    return 0;
}
"""


def random_net(arch: str, T: int, c_in: int, C: int, seed: int = 0, low_shifts: bool = False) -> tuple[cnn.Int8CNN, np.ndarray]:
    """Random float layers quantised on random calibration inputs (realistic scales); low_shifts: half the filters of
    the first conv get requantisation shifts <= 32 (the C's 64-bit branch; their outputs mostly saturate)."""
    rng = np.random.default_rng(seed)
    a = cnn.Arch.parse(arch)
    convs, c = [], c_in
    for (ch, k, s), (_, _, pl, pr) in zip(a.convs, a.geometry(T)):
        convs.append((rng.normal(0, 1 / np.sqrt(k * c), (k, c, ch)), rng.normal(0, 0.1, ch), s, (pl, pr)))
        c = ch
    n = c if a.pool == "gap" else a.geometry(T)[-1][1] * c
    f = cnn.FloatCNN(T, c_in, convs, a.pool, (rng.normal(0, 1 / np.sqrt(n), (n, C)), rng.normal(0, 0.1, C)), a)
    x = (rng.normal(0, 1, (400, T * c_in)) * rng.uniform(0.5, 3, T * c_in) + rng.normal(0, 1, T * c_in)).astype(np.float32)
    s, z = cnn.calibrate_channels(x, c_in)
    net = cnn.quantize(f, s, z, x, name=f"random {arch}")
    if low_shifts:
        l = net.convs[0]
        l.shift[::2] = rng.integers(12, 33, len(l.shift[::2]))
    return net, x


def rows(net: cnn.Int8CNN, x: np.ndarray, n: int = 150) -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.concatenate([net.quantize_inputs(x[:n]), edge_rows(net.n_inputs),
                           rng.integers(-128, 128, (20, net.n_inputs)).astype(np.int8)])


def host_build(files: dict, tmp_path, sanitize: bool = True):
    for k, v in files.items():
        (tmp_path / k).write_text(v)
    (tmp_path / "main.c").write_text(DRIVER)
    exe = tmp_path / "drv"
    _run(["gcc", *WARN, "-O2", *(SANITIZE + ["-g"] if sanitize else []), "-I", str(tmp_path), str(tmp_path / "es_model.c"),
          str(tmp_path / "main.c"), "-o", str(exe)])
    return exe


@pytest.mark.parametrize("arch,T,c_in,C", NETS)
def test_host_c_equals_forward_sanitized(arch, T, c_in, C, tmp_path):
    net, x = random_net(arch, T, c_in, C, low_shifts=arch.startswith("c7"))
    xq = rows(net, x)
    ref = net.forward(xq)
    assert len(np.unique(ref.argmax(1))) > 1                  # not a constant model
    exe = host_build(cnn.generate(net), tmp_path)
    out = np.frombuffer(_run([str(exe)], input=xq.tobytes(), env=_san_env()).stdout, np.int32)
    body, rc = out[:-6].reshape(len(xq), C + 1), out[-6:]
    bad = np.flatnonzero((body[:, :C] != ref).any(1))
    assert bad.size == 0, f"{bad.size} rows differ; row {bad[0]}: C {body[bad[0], :C].tolist()} != {ref[bad[0]].tolist()}"
    assert (body[:, C] == ref.argmax(1)).all()
    assert (rc[:5] == rc[5]).all() and rc[5] == -1            # every NULL argument refused


def test_low_shifts_reach_both_requantisation_branches():
    net, x = random_net("c7k9s3-c5k4s1-gap", 40, 2, 10, low_shifts=True)
    sh = net.convs[0].shift
    assert (sh <= 32).any() and (sh >= 33).any()


def test_float_api_quantises_like_numpy(tmp_path):
    net, x = random_net("c8k5s2-gap", 40, 1, 10)
    main = r"""
#include <stdio.h>
#include "es_model.h"
int main(void) { float x[ES_N_INPUTS], out[ES_N_OUTPUTS];
  while (fread(x, 4, ES_N_INPUTS, stdin) == ES_N_INPUTS) { es_predict(x, out); fwrite(out, 4, ES_N_OUTPUTS, stdout); }
  return 0; }
"""
    # inputs exactly halfway between two int8 steps, and beyond the int8 range
    xs = np.concatenate([x[:50], ((np.arange(-130, 130)[:40] + 0.5) * net.in_scale[0] - net.in_zero[0] * net.in_scale[0])[None],
                         np.full((1, 40), 1e6), np.full((1, 40), -1e6)]).astype(np.float32)
    p = device.host_run(cnn.generate(net), main, [], xs.tobytes(), tmp_path)
    got = np.frombuffer(p.stdout, np.float32).reshape(len(xs), -1)
    want = net.forward(net.quantize_inputs(xs)).astype(np.float32) * np.float32(net.out_scale)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("target", ["cortex-m0", "cortex-m4", "cortex-m3-os", "rv32imc", "avr"])
def test_cross_compiles_without_warnings(target, tmp_path):
    nets = [random_net(*spec)[0] for spec in (("c7k9s3-c5k4s1-gap", 40, 2, 10), ("c6k4s2-c9k3s1-flatten", 33, 5, 7),
                                               ("c16k9s2-gap", 40, 1, 10))]   # the last: one es_conv call, inlined
    cc = CROSS.get(target, ["avr-gcc", "-mmcu=atmega328p", "-Os"])    # AVR: int is 16 bits
    for i, n in enumerate(nets):
        d = tmp_path / str(i)
        d.mkdir()
        for k, v in cnn.generate(n).items():
            (d / k).write_text(v)
        _run([*cc, *WARN, "-c", str(d / "es_model.c"), "-o", str(d / "m.o")])


def test_qemu_m4_dsp_m3_and_m0_plain_equal_forward(tmp_path):
    net, x = random_net("c8k5s1-c16k5s2-flatten", 40, 3, 10, seed=2)
    net.convs[1].shift[::3] = 30        # the 64-bit requantisation branch on the devices too
    xq = rows(net, x, 60)
    ref = net.forward(xq)
    files = cnn.generate(net)
    m4, m3, m0 = (device.run(b, files, xq, net.n_inputs, 10, tmp_path, "cnn") for b in ("qemu-m4", "qemu-m3", "qemu-m0"))
    assert (m4.scores == ref).all() and (m3.scores == ref).all() and (m0.scores == ref).all()   # M3: USAT, no DSP
    # 20,800 MACs: the SMLAD kernel ~2.6 instructions a MAC with requantisation, the plain loop ~8 on M0
    assert 25_000 < m4.instructions < 80_000 < m0.instructions < 300_000, (m4.instructions, m0.instructions)
    assert m4.flash > net.weight_bytes


def test_arch_parse_and_errors():
    a = cnn.Arch.parse("c8k5s2-c16k5-gap")
    assert a.convs == ((8, 5, 2), (16, 5, 1)) and str(a) == "c8k5s2-c16k5s1-gap"
    assert a.geometry(40) == [(40, 20, 1, 2), (20, 20, 2, 2)]
    assert a.macs(40, 1, 10) == 20 * 8 * 5 + 20 * 16 * 40 + 16 * 10
    assert str(cnn.Arch.parse("c4k3-flatten-valid")) == "c4k3s1-flatten-valid"
    for bad in ("c8-gap", "c8k5", "gap", "c8k5s2-avg", "c0k5-gap"):
        with pytest.raises(ConfigError):
            cnn.Arch.parse(bad)
    with pytest.raises(ConfigError):
        cnn.Arch.parse("c4k50-gap-valid").geometry(40)


def test_distil_mnist1d_int8_within_2_points_of_float(tmp_path):
    from conftest import train_small_teacher

    from edgesketch import data, teacher
    from edgesketch.distillation import Config
    ds = data.load("mnist1d")
    tch = teacher.load(str(train_small_teacher("mnist1d", tmp_path / "t.keras", epochs=10, cnn=True)))
    net, f = cnn.build(tch, ds.x_train, "c8k5s2-c16k5s2-gap", epochs=8, cfg=Config(aug_size=8000))
    xq = net.quantize_inputs(ds.x_test)
    acc_i = float(np.mean(net.forward(xq).argmax(1) == ds.y_test))
    acc_f = float(np.mean(f.forward(ds.x_test).argmax(1) == ds.y_test))
    acc_t = float(np.mean(tch.outputs(ds.x_test).argmax(1) == ds.y_test))
    assert acc_f > max(0.3, acc_t - 0.1) and abs(acc_f - acc_i) <= 0.02, (acc_t, acc_f, acc_i)   # short run; chance 0.1
    assert (device.host_check(cnn.generate(net), xq[:200], 10, tmp_path) == net.forward(xq[:200])).all()


@pytest.fixture(scope="module")
def two_channel_teacher(tmp_path_factory):
    """A tiny Conv1D teacher of (20, 2) inputs and 3 classes, and random data for it (accuracy does not matter)."""
    import keras

    from edgesketch import teacher
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (400, 40)) * np.tile([1.0, 20.0], 20) + np.tile([0.0, 5.0], 20)).astype(np.float32)
    y = (x[:, ::2].sum(1) > 0).astype(int) + (x[:, 1::2].mean(1) > 5)
    m = keras.Sequential([keras.Input((20, 2)), keras.layers.Conv1D(4, 3, activation="relu"), keras.layers.Flatten(),
                          keras.layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")
    m.fit(x.reshape(-1, 20, 2), y, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("t2") / "t2.keras"
    m.save(path)
    return teacher.load(str(path)), x, y


def test_distil_two_channels_with_transfer(two_channel_teacher, tmp_path):
    from edgesketch.distillation import Config
    tch, x, y = two_channel_teacher
    transfer = x[300:] * 1.5
    net, f = cnn.build(tch, x[:300], "c4k3s2-c6k3s1-flatten", epochs=1, transfer=transfer, cfg=Config(aug_size=1000))
    s, z = cnn.calibrate_channels(np.concatenate([x[:300], transfer]), 2)      # calibrated on training + transfer
    assert net.c_in == 2 and net.T == 20 and np.array_equal(net.in_scale, s) and np.array_equal(net.in_zero, z)
    xq = np.concatenate([net.quantize_inputs(x), edge_rows(40)])
    assert (device.host_check(cnn.generate(net), xq, 3, tmp_path) == net.forward(xq)).all()


def test_smallest_cnn_stops_at_the_first_that_reaches(two_channel_teacher):
    from edgesketch.distillation import Config
    tch, x, y = two_channel_teacher
    kw = dict(epochs=1, cfg=Config(aug_size=600))
    net, tried = cnn.smallest_cnn(0.0, tch, x[:300], x[300:], y[300:], archs=("c2k3s2-gap", "c4k3s1-flatten"), **kw)
    assert [str(t[0]) for t in tried] == ["c2k3s2-gap"] and net is tried[0][2]
    net, tried = cnn.smallest_cnn(1.01, tch, x[:300], x[300:], y[300:], archs=("c2k3s2-gap", "c4k3s1-flatten"), **kw)
    assert [str(t[0]) for t in tried] == ["c2k3s2-gap", "c4k3s1-flatten"] and net is tried[1][2]
