"""The Python module against the `snnc` command line: the same recordings, the same
gradients bit for bit, the same diagnostics; and what only Python has (stepping, states,
weights as dicts, Ctrl-C as KeyboardInterrupt).

The CLI is `target/debug/snnc` of this checkout (`cargo build` makes it), or $SNNC_BIN.
"""

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

import nir
import numpy as np
import pytest

import snnc

REPO = Path(__file__).resolve().parents[2]
ALIF = REPO / "tests/data/golden_alif.snn"
CUBA = REPO / "examples/cuba.snn"


def cli(*args, check=True):
    exe = os.environ.get("SNNC_BIN", str(REPO / "target/debug/snnc"))
    if not Path(exe).exists():
        pytest.fail(f"no snnc binary at {exe}: run `cargo build` (or set SNNC_BIN)")
    r = subprocess.run([exe, *map(str, args)], cwd=REPO, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"snnc {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def cli_recordings(out: Path):
    return {p.name[: -len(".npy")]: np.load(p) for p in out.glob("*.npy")}


def assert_same(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), k


# --- loading and diagnostics ---------------------------------------------------------


BAD = """import "stdlib/lif.snn"

network bad {
    layer h = LIF[4] { tau = 10 mV }
}
"""


def test_compile_error_is_the_cli_diagnostic(tmp_path):
    path = tmp_path / "bad.snn"
    path.write_text(BAD)
    with pytest.raises(snnc.CompileError) as e:
        snnc.load(str(path))
    err = e.value
    assert (err.file, err.line) == (str(path), 4)
    assert err.column == BAD.splitlines()[3].index("tau") + 1 or err.column >= 1
    assert err.errors >= 1
    stderr = cli("check", "--color", "never", path, check=False).stderr
    assert str(err) in stderr
    # The same text given as a string names it as asked.
    with pytest.raises(snnc.CompileError) as e2:
        snnc.compile(BAD, name="mine.snn")
    assert (e2.value.file, e2.value.line) == ("mine.snn", 4)


def test_syntax_error_line():
    with pytest.raises(snnc.CompileError) as e:
        snnc.compile("// one\n// two\nnetwork { }\n")
    assert e.value.line == 3 and e.value.column == 9
    assert "E0001" in str(e.value)


def test_missing_file_raises_compile_error(tmp_path):
    with pytest.raises(snnc.CompileError) as e:
        snnc.load(tmp_path / "nope.snn")
    assert "cannot read" in str(e.value)


def test_program_names_and_network_choice():
    p = snnc.load(ALIF)
    assert p.networks == ["golden_alif"]
    assert "ALIF" in p.models
    with pytest.raises(snnc.SnncError, match="no network `nope`"):
        p.network("nope")
    with pytest.raises(ValueError, match="precision"):
        p.network(precision="f16")
    with pytest.raises(ValueError, match="cuda"):
        p.network(backend="cuda")


# --- simulation against `snnc run` ---------------------------------------------------


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_run_equals_snnc_run(tmp_path, precision):
    cli("run", CUBA, "--duration", "30ms", "--seed", 3, "--precision", precision, "--out", tmp_path, "--record", "spikes,v")
    net = snnc.load(CUBA).network(seed=3, precision=precision)
    got = net.run(duration=0.030, record=["spikes", "v"])
    assert_same(got, cli_recordings(tmp_path))
    assert net.step_index == 300 and abs(net.time - 0.03) < 1e-12


def test_array_and_poisson_inputs_equal_snnc_run(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.random((40, 8)) < 0.3).astype(np.float64) * 2.0
    np.save(tmp_path / "x.npy", x)
    for name, cli_src, py_src in [("array", tmp_path / "x.npy", x), ("poisson", "poisson:300Hz", "poisson:300Hz"), ("const", "const:1.5", 1.5)]:
        out = tmp_path / name
        cli("run", ALIF, "--duration", "40ms", "--out", out, "--record", "spikes,v,a", "--input", f"x={cli_src}")
        net = snnc.load(ALIF).network()
        got = net.run(40, inputs={"x": py_src}, record=["spikes", "v", "a"])
        assert_same(got, cli_recordings(out))
        assert np.abs(got["rec.v"]).max() > 0, name  # the input reached the network


def test_input_array_gives_the_length_and_batches():
    net = snnc.load(ALIF).network(batch=2)
    x = np.zeros((25, 2, 8))
    x[:, 1, :] = 3.0
    r = net.run(inputs={"x": x}, record=["spikes", "v"], dense=True)
    assert r["rec.v"].shape == (25, 2 * 16)
    assert r["rec.spikes"].shape == (25, 32) and r["rec.spikes"].dtype == bool
    # Only batch element 1 is driven.
    assert not r["rec.spikes"][:, :16].any() and r["rec.spikes"][:, 16:].any()
    with pytest.raises(ValueError, match=r"\(T, 8\) or \(T, 2, 8\)"):
        net.run(inputs={"x": np.zeros((5, 3))})
    with pytest.raises(KeyError, match="inputs: x"):
        net.run(5, inputs={"y": 1.0})
    with pytest.raises(ValueError, match="not finite"):
        net.run(inputs={"x": np.full((5, 8), np.nan)})


def test_dense_spikes_match_index_lists():
    net = snnc.load(CUBA).network(seed=1)
    sparse = net.run(200)
    net.reset()
    dense = net.run(200, dense=True)
    for pop in ["E", "I"]:
        t, i = sparse[f"{pop}.spikes.t"], sparse[f"{pop}.spikes.i"]
        rows = np.round(t / net.dt).astype(int) - 1
        want = np.zeros_like(dense[f"{pop}.spikes"])
        want[rows, i] = True
        assert np.array_equal(dense[f"{pop}.spikes"], want)


def test_step_by_step_equals_run_and_states_can_be_set():
    p = snnc.load(ALIF)
    a, b = p.network(precision="f64"), p.network(precision="f64")
    x = np.linspace(0, 2, 8)
    ra = a.run(30, inputs={"x": np.tile(x, (30, 1))}, record=["v"])
    for s in range(30):
        b.step({"x": x})
        # Recordings are float32, as `snnc run` writes them.
        assert np.array_equal(b.state("rec", "v").astype(np.float32).ravel(), ra["rec.v"][s])
    assert np.array_equal(a.state("rec", "v"), b.state("rec", "v"))
    assert b.state("rec", "v").dtype == np.float64 and b.state("rec", "v").shape == (1, 16)
    b.set_state("rec", "v", 5.0)  # above threshold: every neuron spikes next step
    b.step()
    assert b.spikes("rec").all()
    with pytest.raises(KeyError, match="states: "):
        b.state("rec", "nope")
    b.reset()
    assert b.step_index == 0 and not b.state("rec", "v").any()


def test_keyboard_interrupt_stops_a_long_run():
    net = snnc.load(CUBA).network()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        net.run(10_000_000)
    timer.join()
    reached = net.step_index
    assert 0 < reached < 10_000_000
    net.run(5)  # the network is whole and goes on from where it stopped
    assert net.step_index == reached + 5


# --- weights and gradients against `snnc grad` -------------------------------------------


def sequences(tmp_path, T=20, B=2):
    rng = np.random.default_rng(7)
    x = (rng.random((T, B, 8)) < 0.4).astype(np.float64)
    target = rng.normal(size=(T, B, 3))
    np.savez(tmp_path / "seq.npz", x=x, target=target)
    return x, target


@pytest.mark.parametrize("precision", ["f32", "f64"])
@pytest.mark.parametrize("method", ["bptt", "d-rtrl", "es-d-rtrl"])
def test_grad_equals_snnc_grad_bit_for_bit(tmp_path, precision, method):
    x, target = sequences(tmp_path)
    net = snnc.load(ALIF).network(seed=5, precision=precision)
    w = net.weights()
    assert w["W_rec"].shape == (16, 16) and w["W_in"].shape == (8, 16)
    w = {k: v * 1.5 + 0.1 for k, v in w.items()}
    np.savez(tmp_path / "w.npz", **w)
    net.set_weights(w)
    args = ["grad", ALIF, "--method", method, "--etrace-decay", "0.9", "--seed", 5, "--data", tmp_path / "seq.npz"]
    args += ["--weights", tmp_path / "w.npz", "--out", tmp_path / "g.npz"] + (["--f64"] if precision == "f64" else [])
    cli(*args)
    want = np.load(tmp_path / "g.npz")
    got = net.grad(x, target, method=method, etrace_decay=0.9)
    assert sorted(got) == sorted(want.files)
    for k in want.files:
        assert np.array_equal(np.asarray(got[k]), want[k]), k


def test_grad_records_like_snnc_grad(tmp_path):
    x, target = sequences(tmp_path)
    cli("grad", ALIF, "--method", "es-d-rtrl", "--data", tmp_path / "seq.npz", "--out", tmp_path / "g.npz", "--record", tmp_path / "rec")
    got = snnc.load(ALIF).network().grad(x, target, method="es-d-rtrl", record=True)["recorded"]
    assert_same(got, cli_recordings(tmp_path / "rec"))


def test_weights_round_trip_and_refusals():
    p = snnc.load(ALIF)
    net = p.network()
    w = net.weights()
    w2 = p.network(weights={"W_out": w["W_out"] * 0}).weights()
    assert not w2["W_out"].any() and np.array_equal(w2["W_in"], w["W_in"])
    with pytest.raises(snnc.SnncError, match="no such projection or trainable param"):
        net.set_weights({"W_nope": np.zeros((2, 2))})
    with pytest.raises(snnc.SnncError, match="8x16"):
        net.set_weights({"W_in": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="shape"):
        net.grad(np.zeros((5, 8)), np.zeros((5, 1, 3)))


# --- explain -----------------------------------------------------------------------------


def test_explain_is_snnc_explain_as_data():
    p = snnc.load(CUBA)
    want = json.loads(cli("explain", CUBA, "--network", "cuba", "--format", "json").stdout)
    assert p.explain(network="cuba") == want
    text = cli("explain", REPO / "stdlib/lif.snn", "--model", "LIF").stdout
    assert snnc.load(REPO / "stdlib/lif.snn").explain(model="LIF", format="text") == text


# --- training against `snnc train` -------------------------------------------------------

TINY = REPO / "tests/data/tiny_evidence.snn"
TRAIN = dict(epochs=2, batches=3, batch=4, delay="100ms")


def safetensors(path):
    """The tensors of a `.safetensors` file (8-byte header length, JSON header, data)."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    dtypes = {"F64": np.float64, "F32": np.float32}
    return {
        k: np.frombuffer(data[v["data_offsets"][0] : v["data_offsets"][1]], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
        for k, v in header.items()
        if k != "__metadata__"
    }


def test_train_equals_snnc_train_and_calls_back(tmp_path):
    cli("train", TINY, "--epochs", 2, "--batches", 3, "--batch", 4, "--delay", "100ms", "--out", tmp_path / "cli")
    seen = []
    r = snnc.load(TINY).train(callback=seen.append, out=tmp_path / "py", **TRAIN)
    # The checkpoint also holds Adam's moments (`optimizer/m/NAME`, `optimizer/v/NAME`).
    want = {k: v for k, v in safetensors(tmp_path / "cli/checkpoint.safetensors").items() if not k.startswith("optimizer/")}
    assert sorted(r["weights"]) == sorted(want)
    for k in want:
        assert np.array_equal(r["weights"][k], want[k]), k
    assert np.array_equal(safetensors(tmp_path / "py/checkpoint.safetensors")["W_in"], want["W_in"])
    assert [(i["epoch"], i["batch"]) for i in seen] == [(e, b) for e in range(2) for b in range(3)]
    assert [h["loss"] for h in r["history"]] == [i["loss"] for i in seen]
    assert len(r["test"]) == 2 and not r["stopped"]
    assert (tmp_path / "cli/log.csv").read_text() == (tmp_path / "py/log.csv").read_text()


def test_train_stops_when_the_callback_says_and_starts_from_given_weights():
    p = snnc.load(TINY)
    r = p.train(callback=lambda info: info["batch"] < 1, **TRAIN)
    assert r["stopped"] and len(r["history"]) == 2
    start = {k: np.zeros_like(v) for k, v in r["weights"].items()}
    first = []
    p.train(weights=start, callback=lambda info: first.append(info["weights"]) or False, **TRAIN)
    # One Adam step from all-zero weights moves each weight by at most lr.
    assert all(np.abs(w).max() <= 1e-2 + 1e-12 for w in first[0].values())
    with pytest.raises(snnc.SnncError, match="no trainable tensor `nope`"):
        p.train(weights={"nope": np.zeros((1, 1))}, **TRAIN)
    with pytest.raises(ValueError, match="--epochs"):
        p.train(epochs="x")


def test_callback_errors_propagate():
    def boom(info):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        snnc.load(TINY).train(callback=boom, **TRAIN)


def test_evaluate_equals_snnc_eval(tmp_path):
    cli("train", TINY, "--epochs", 1, "--batches", 2, "--batch", 4, "--delay", "100ms", "--out", tmp_path)
    out = cli("eval", TINY, "--weights", tmp_path / "checkpoint.safetensors", "--batch", 4, "--delay", "100ms").stdout
    w = safetensors(tmp_path / "checkpoint.safetensors")
    t = snnc.load(TINY).evaluate(weights={k: v.copy() for k, v in w.items()}, batch=4, delay="100ms")["test"][0]
    assert f"held-out ({t['trials']} trials): loss {t['loss']:.4f} per trial, accuracy {100 * t['accuracy']:.1f} %" in out


# --- NIR ---------------------------------------------------------------------------------

def cuba_lif_graph(rng, n_in=5, n_h=7, n_o=3):
    """A NIR graph as the `nir` package builds it: Input -> Affine -> CubaLIF -> Linear -> Output."""
    p = dict(
        tau_syn=np.full(n_h, 5e-3), tau_mem=np.full(n_h, 1e-2), r=np.full(n_h, 2.0), v_leak=np.full(n_h, 0.1),
        v_threshold=np.full(n_h, 1.0), v_reset=np.full(n_h, -0.2), w_in=np.full(n_h, 1.5),
    )
    W1, W2 = rng.normal(0, 3, (n_h, n_in)), rng.normal(0, 2, (n_o, n_h))
    nodes = {
        "input": nir.Input(input_type=np.array([n_in])),
        "fc1": nir.Affine(weight=W1, bias=np.zeros(n_h)),
        "lif": nir.CubaLIF(**p),
        "fc2": nir.Linear(weight=W2),
        "output": nir.Output(output_type=np.array([n_o])),
    }
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges), p, W1


def test_nir_graph_runs_as_its_euler_reference(tmp_path):
    rng = np.random.default_rng(0)
    graph, p, W1 = cuba_lif_graph(rng)
    nir.write(tmp_path / "g.nir", graph)
    dt, T = 1e-3, 80
    prog, weights = snnc.import_nir(tmp_path / "g.nir", dt=dt)
    net = prog.network(precision="f64", weights=weights)
    x = (rng.random((T, 5)) < 0.3).astype(float)
    rec = net.run(inputs={"input_": x}, record=["spikes", "v"], dense=True)
    # NIR's CubaLIF by forward Euler, the input held over each step (docs/nir.md).
    syn, v = np.zeros(7), np.zeros(7)
    spikes, vs = [], []
    for t in range(T):
        syn, v = syn + dt * (p["w_in"] * (W1 @ x[t]) - syn) / p["tau_syn"], v + dt * (p["v_leak"] - v + p["r"] * syn) / p["tau_mem"]
        s = v > p["v_threshold"]
        vs.append(v.copy())  # recorded before the reset
        v = np.where(s, p["v_reset"], v)
        spikes.append(s)
    assert np.array_equal(rec["lif.spikes"], np.array(spikes)) and np.sum(spikes) > 10
    assert np.allclose(rec["lif.v"], np.array(vs), rtol=1e-6, atol=1e-6)


def test_snnc_nir_snnc_round_trip_and_nir_reads_the_export(tmp_path):
    rng = np.random.default_rng(1)
    graph, p, W1 = cuba_lif_graph(rng)
    nir.write(tmp_path / "g.nir", graph)
    prog, weights = snnc.import_nir(tmp_path / "g.nir", dt=1e-3)
    x = (rng.random((100, 5)) < 0.3).astype(float)
    first = prog.network(weights=weights)
    want = first.run(inputs={"input_": x}, record=["spikes"])
    first.export_nir(tmp_path / "back.nir")
    back = nir.read(tmp_path / "back.nir")
    assert {k: type(n).__name__ for k, n in back.nodes.items()} == {
        "input_": "Input", "fc1": "Linear", "lif": "CubaLIF", "fc2": "Linear", "output_": "Output",
    }
    assert sorted(back.edges) == sorted([("input_", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "output_")])
    assert np.array_equal(back.nodes["fc1"].weight, W1.astype(np.float32).astype(np.float64))
    for k, v in p.items():
        assert np.array_equal(back.nodes["lif"].__dict__[k], v.astype(np.float32).astype(np.float64)) or np.array_equal(back.nodes["lif"].__dict__[k], v), k
    prog2, weights2 = snnc.import_nir(tmp_path / "back.nir", dt=1e-3)
    got = prog2.network(weights=weights2).run(inputs={"input_": x}, record=["spikes"])
    assert_same(got, want)
    assert want["lif.spikes.i"].size > 0


def test_import_nir_cli_writes_the_same_program(tmp_path):
    graph, _, _ = cuba_lif_graph(np.random.default_rng(2))
    nir.write(tmp_path / "g.nir", graph)
    cli("import-nir", tmp_path / "g.nir", "--dt", "0.5ms", "--method", "exact", "--out", tmp_path / "out")
    prog, weights = snnc.import_nir(tmp_path / "g.nir", dt=0.5e-3, method="exact")
    assert (tmp_path / "out/g.snn").read_text() == prog.source
    assert "method exact" in prog.source and "dt = 0.0005 s" in prog.source
    ck = safetensors(tmp_path / "out/g.safetensors")
    assert sorted(ck) == sorted(weights) and all(np.array_equal(ck[k], weights[k]) for k in ck)
    cli("export-nir", tmp_path / "out/g.snn", "--weights", tmp_path / "out/g.safetensors", "--out", tmp_path / "cli.nir")
    assert np.array_equal(nir.read(tmp_path / "cli.nir").nodes["fc2"].weight, graph.nodes["fc2"].weight)


def test_what_nir_cannot_express_is_refused_by_name(tmp_path):
    with pytest.raises(snnc.SnncError, match="population `rec`: model `ALIF` is not one NIR has"):
        snnc.load(ALIF).network().export_nir(tmp_path / "x.nir")
    r = cli("export-nir", CUBA, "--out", tmp_path / "x.nir", check=False)
    assert r.returncode == 1 and "model `CUBALIF` is not one NIR has" in r.stderr
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "d": nir.Delay(delay=np.ones(2)), "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "d"), ("d", "output")],
    )
    nir.write(tmp_path / "delay.nir", g)
    with pytest.raises(snnc.SnncError, match="node `d` is a NIR `Delay`, which snnc cannot import"):
        snnc.import_nir(tmp_path / "delay.nir", dt=1e-3)
    lif = nir.LIF(tau=np.array([0.01, 0.02]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    nir.write(tmp_path / "lif.nir", nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])), "l": lif, "output": nir.Output(output_type=np.array([2]))}, edges=[("input", "l"), ("l", "output")]))
    with pytest.raises(snnc.SnncError, match="`tau` differs between neurons"):
        snnc.import_nir(tmp_path / "lif.nir", dt=1e-3)


def test_fortran_ordered_weights_are_the_same_weights(tmp_path):
    p = snnc.load(ALIF)
    w = {k: v * 3 for k, v in p.network().weights().items()}
    x = np.full((30, 8), 1.0)
    a = p.network(weights=w).run(inputs={"x": x}, record=["spikes", "v"])
    b = p.network(weights={k: np.asfortranarray(v) for k, v in w.items()}).run(inputs={"x": x}, record=["spikes", "v"])
    assert_same(a, b)
