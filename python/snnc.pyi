"""snnc: a modelling language and compiler for spiking neural networks (docs/python.md)."""

from os import PathLike
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Input = Union[npt.ArrayLike, float, str]

class CompileError(Exception):
    """A program refused by the checks. `str(e)` is the rendered diagnostics, as
    `snnc check` prints them; `file`, `line` and `column` (1-based) locate the first
    error (None for an error with no place, such as a file that cannot be read)."""

    file: Optional[str]
    line: Optional[int]
    column: Optional[int]
    errors: int

class SnncError(RuntimeError):
    """A network that cannot be built or run as asked (the runtime's error)."""

def load(path: _Path, include: Sequence[_Path] = ()) -> Program:
    """Loads and checks a `.snn` file and its imports (as `snnc check`); `include`:
    extra directories searched by `import` (as `-I`; `SNNC_PATH` too). Warnings are
    issued with `warnings.warn`. Raises CompileError."""

def compile(text: str, name: str = "<string>", include: Sequence[_Path] = ()) -> Program:
    """Checks `.snn` source text, named `name` in diagnostics. Raises CompileError."""

def import_nir(path: _Path, dt: float, *, method: Literal["euler", "exact", "exp_euler", "rk2", "rk4"] = "euler", name: Optional[str] = None) -> tuple[Program, dict[str, npt.NDArray[np.float64]]]:
    """Reads a NIR graph as a program with one network and its weights (`prog.network(
    weights=weights)`). NIR has no time step: `dt` (seconds) is the one to run with;
    `method` integrates NIR's continuous-time equations. See docs/nir.md."""

class Program:
    """A checked program."""

    @property
    def source(self) -> str:
        """The text of the program's entry file (an imported graph's generated `.snn`)."""

    @property
    def networks(self) -> list[str]: ...
    @property
    def models(self) -> list[str]: ...
    def network(
        self,
        name: Optional[str] = None,
        *,
        batch: int = 1,
        seed: int = 0,
        precision: Literal["f32", "f64"] = "f32",
        backend: Literal["cpu", "interp"] = "cpu",
        dt: Optional[float] = None,
        method: Optional[Literal["exact", "exp_euler", "euler", "rk2", "rk4"]] = None,
        weights: Optional[Mapping[str, npt.ArrayLike]] = None,
    ) -> Network:
        """Builds network `name` (default: the only one): `batch` independent copies,
        random choices from `seed`, states and weights in `precision`, on the CPU with
        Cranelift's JIT ("cpu") or the reference interpreter ("interp"); `dt` (seconds)
        and `method` override the network's; `weights` as `Network.weights()` gives."""
    def explain(
        self,
        model: Optional[str] = None,
        network: Optional[str] = None,
        format: Literal["data", "text"] = "data",
    ) -> Union[list[dict[str, Any]], str]:
        """The math of the models (or of a network's populations as the runtime runs
        them): integrator, discrete step, D, Df, surrogate. "data": a list of dicts (as
        `snnc explain --format json`); "text": what `snnc explain` prints."""

    def train(
        self,
        network: Optional[str] = None,
        *,
        callback: Optional[Callable[[dict[str, Any]], Optional[bool]]] = None,
        weights: Optional[Mapping[str, npt.ArrayLike]] = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Trains as `snnc train` does, its options as keyword arguments (`task`,
        `method`, `epochs`, `batches`, `batch`, `lr`, `lr_decay`, `optimizer`,
        `grad_clip`, `update_every`, `seed`, `out`, `resume`, `plot`, `f64`,
        `test_batches`, `delay`, ...; `plot=True` is `--plot`). `weights`: starting
        values. `callback(info)` after every batch ("epoch", "batch", "loss",
        "accuracy", "rates", "weights"); returning False stops the run. Returns
        {"weights", "history", "test", "stopped"}."""
    def evaluate(
        self,
        network: Optional[str] = None,
        *,
        weights: Optional[Mapping[str, npt.ArrayLike]] = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Held-out loss and accuracy of `weights`, as `snnc eval`; "test" holds it."""

class Network:
    """A built network on the CPU. States are (batch, n) arrays per population."""

    @property
    def name(self) -> str: ...
    @property
    def dt(self) -> float:
        """The time step in seconds."""
    @property
    def batch(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def precision(self) -> Literal["f32", "f64"]: ...
    @property
    def time(self) -> float:
        """Simulated time in seconds."""
    @property
    def step_index(self) -> int:
        """Steps taken since the network was built or reset."""
    @property
    def inputs(self) -> dict[str, int]:
        """External inputs: name -> neurons."""
    @property
    def populations(self) -> dict[str, dict[str, Any]]:
        """name -> {"n": neurons, "states": [state names], "spiking": bool}."""
    def run(
        self,
        steps: Optional[int] = None,
        *,
        duration: Optional[float] = None,
        inputs: Optional[Mapping[str, _Input]] = None,
        record: Sequence[str] = ("spikes",),
        dense: bool = False,
    ) -> dict[str, np.ndarray]:
        """Simulates `steps` steps (or `duration` seconds; or, with neither, the length
        of the longest input array) from the current state, the GIL released; Ctrl-C
        raises KeyboardInterrupt and leaves the network at the last whole step.

        `inputs`: name -> (T, size) or (T, batch, size) array (0 after its last row), a
        number, or "poisson:RATE" (e.g. "poisson:20Hz"). `record`: "spikes" and state
        names. Returns arrays keyed like `snnc run --out`'s files: "POP.spikes.t"
        (seconds), "POP.spikes.i" (index b * n + i) or, with `dense`, "POP.spikes"
        (steps, batch * n) bool; "POP.VAR" (steps, batch * n) float32."""
    def step(self, inputs: Optional[Mapping[str, _Input]] = None) -> None:
        """One step; `inputs`: name -> (size,) or (batch, size) values, or a number."""
    def reset(self) -> None:
        """Back to the built state and time 0, keeping weights and params."""
    def state(self, pop: str, name: str) -> np.ndarray:
        """State `name` of population `pop`: (batch, n), in the network's precision."""
    def set_state(self, pop: str, name: str, values: npt.ArrayLike) -> None:
        """Sets a state: a number, (n,) values for every batch element, or (batch, n)."""
    def spikes(self, pop: str) -> npt.NDArray[np.bool_]:
        """The latest step's spikes of `pop`: (batch, n)."""
    def weights(self) -> dict[str, npt.NDArray[np.float64]]:
        """Dense projections' weights (n_pre, n_post) and trainable params (1, n)."""
    def set_weights(self, weights: Mapping[str, npt.ArrayLike]) -> None:
        """Sets weights by name; names not given are kept."""
    def export_nir(self, path: _Path) -> None:
        """Writes the network as a NIR graph (HDF5): params as built, current weights;
        what NIR cannot express is refused, naming it (docs/nir.md)."""
    def grad(
        self,
        x: npt.ArrayLike,
        target: npt.ArrayLike,
        *,
        method: Literal["bptt", "d-rtrl", "es-d-rtrl"] = "bptt",
        etrace_decay: float = 0.9,
        record: bool = False,
    ) -> dict[str, Any]:
        """The gradient of one batch, as `snnc grad` computes it (bit for bit) with
        this network's seed, precision and current weights: `x` (T, B, inputs),
        `target` (T, B, readouts). Returns {"loss": float, NAME: array, ...}; with
        `record`, "recorded": per-step states and eligibility traces."""
