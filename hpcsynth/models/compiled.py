"""The torch.compile engine: a training step's loss and gradient as one compiled graph.

`use_compile` decides whether to compile (`compile`: `on`, `off`, or `auto`, which compiles on a CPU with a C++
compiler when the run is long enough to pay back the compile, which is cheaper when the compile cache is warm).
Compiled code persists in one cache directory shared by ranks and jobs (`use_compile_cache`), so a second
process with the same model and shapes loads the kernels instead of building them.
`CompiledGradient` computes a step's value and gradient with `torch.func.grad_and_value` over the parameters and
writes the gradient into the flat gradient buffer: forward and backward in one graph, without autograd's
bookkeeping. `EagerGradient` is the same call through autograd. Random draws come in as arguments or from
ATen's generators, so a compiled step computes what the eager step computes, up to rounding.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from hpcsynth.models.flat import FlatParameters

COMPILE_MODES = ("auto", "on", "off")
# inductor options of the compiled step functions: random numbers from ATen's generators (inductor's own CPU
# generator draws one number at a time, several times slower), and the code that calls the kernels in C++
# rather than Python (a step of small tensors saves about a tenth of its time)
COMPILE_OPTIONS = {"fallback_random": True, "cpp_wrapper": True}
CACHE_ENV = "HPCSYNTH_COMPILE_CACHE"  # the compile cache's directory (default: `default_cache_dir()`)
# `auto` compiles from `min_steps / WARM_DISCOUNT` steps when the cache holds this model's compiled step: a
# warm start skips inductor's code generation and C++ builds, and costs a fifth or less of a cold compile
WARM_DISCOUNT = 5


class Trainable(Protocol):
    """What the compiled functions read of the model they train (a `protocol.GradientGenerator`)."""

    modules_: list[torch.nn.Module]
    batch_size: int
    flat_: FlatParameters
    optimizer_: torch.optim.Optimizer
    device_: torch.device
    compile_s_: float

    def _compile_key(self) -> tuple: ...

    def _autocast_loss(self, *inputs: torch.Tensor) -> torch.Tensor: ...

    def _next_batch(self, data: torch.Tensor, size: int) -> torch.Tensor: ...

    def _train_rows(self, data: torch.Tensor) -> torch.Tensor: ...

    def loss_noise(self, n: int) -> torch.Tensor: ...


def compile_available(device: torch.device) -> bool:
    """Whether torch.compile can build this device's kernels here: on a CPU, inductor needs a C++ compiler."""
    return device.type == "cpu" and _cpp_compiler_found()


@functools.cache
def _cpp_compiler_found() -> bool:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # no compiler, or an inductor without this helper
        return False
    return True


def default_cache_dir() -> Path:
    """`$HPCSYNTH_COMPILE_CACHE`, else hpcsynth/compile under the user's cache directory (`$XDG_CACHE_HOME`,
    else ~/.cache): on a cluster the home directory is shared by the nodes, where inductor's own default (a
    folder under /tmp) is one per node and emptied at reboot."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpcsynth" / "compile"


def use_compile_cache(directory: str | Path | None = None) -> Path:
    """Keep inductor's compiled graphs (its FX-graph cache, and the AOT-autograd cache where torch can use it) in
    `directory` (which becomes `$HPCSYNTH_COMPILE_CACHE` for this process and the processes it starts; default
    `default_cache_dir()`) from now on; return it.

    The entries are keyed by the graph, the input shapes, the options and the versions of torch and the
    compiler, and written atomically, so any number of ranks and jobs can share one directory: the first
    process builds, the others load."""
    import torch._functorch.config
    import torch._inductor.config

    if directory is not None:
        os.environ[CACHE_ENV] = str(directory)
    path = default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path.resolve())  # read by inductor at every cache lookup
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    return path


def _signature(model: Trainable) -> str:
    """What a model's compiled steps depend on besides the graph itself: the family, the parameter and batch
    shapes, its compile key, torch and the compile options (a digest, the name of its cache marker)."""
    shapes = [tuple(p.shape) for m in model.modules_ for p in m.parameters()]
    text = repr((type(model).__qualname__, shapes, model.batch_size, model._compile_key(), torch.__version__,
                 sorted(COMPILE_OPTIONS.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _marker(model: Trainable) -> Path:
    return default_cache_dir() / "hpcsynth" / f"{_signature(model)}.json"


def compile_cache_warm(model: Trainable) -> bool:
    """Whether the compile cache holds this model's compiled steps (a process with the same family and shapes
    compiled them before into the directory `use_compile_cache` set)."""
    return _marker(model).exists()


def use_compile(compile: str | bool, device: torch.device, steps: int, min_steps: int, warm: bool = False) -> bool:
    """Whether to train through torch.compile'd step functions. `on`/True and `off`/False decide; `auto` compiles
    on a CPU with a C++ compiler when the training ahead is `min_steps` steps or more, or `min_steps /
    WARM_DISCOUNT` when the compile cache is `warm` for this model: a cold compile takes seconds to a minute
    once, a warm one a fifth or less of that (tracing, then loading the cached kernels), and each saves a fixed
    time per step, so a cold cache pays back on long runs only and a warm one on short runs too."""
    mode = {True: "on", False: "off"}.get(compile, compile)
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile: expected auto, on or off, got {compile!r}")
    if mode == "off":
        return False
    if mode == "on":
        return True
    return steps >= (min_steps // WARM_DISCOUNT if warm else min_steps) and compile_available(device)


class EagerGradient:
    """A training step's gradient by autograd: zero the networks' part of the gradient buffer, backward."""

    compiled = False

    def __init__(self, flat: FlatParameters, loss: Callable, region: torch.Tensor) -> None:
        self.flat, self.loss, self.region = flat, loss, region

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.region.zero_()
        value = self.loss(*inputs)
        value.backward()
        self.flat.check_bound()
        return value.detach()


def _shapes(inputs: tuple | list) -> tuple:
    """The shapes of a call's tensors, lists of tensors kept as lists (CTGAN's dropout masks), other values as
    they are (None where a draw has nothing to give)."""
    return tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else _shapes(x) if isinstance(x, (list, tuple))
                 else x for x in inputs)


class CompiledFunction:
    """A torch.compile'd training function over the networks' parameters, which go in as arguments (closed-over
    modules would make every call check guards on each of them).

    It compiles once per key, the shapes of its inputs and `_key()` (the Python state the function reads, such
    as `GradientGenerator._compile_key`): an epoch's short last batch is a second key. Each key gets a copy of
    the function with its own code object, because dynamo keeps its graphs per code object and tries their
    guards in turn: two keys on one code would cost every step of the second the failed guards of the first.
    So each copy has one graph, which `CompiledAdamStep.unguarded` can call without checking guards at all. The
    wall time of the first call per key, where the compiling happens, goes to the model's `compile_s_`."""

    compiled = True

    def __init__(self, model: Trainable, function: Callable) -> None:
        self.model, self.function, self.by_key = model, function, {}

    def _arguments(self) -> tuple:
        """The tensors that go in ahead of the inputs."""
        return ()

    def _key(self) -> tuple:
        return self.model._compile_key()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = (_shapes(inputs), self._key())
        compiled = self.by_key.get(key)
        if compiled is not None:
            return compiled(*self._arguments(), *inputs)
        f = self.function
        copy = types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        use_compile_cache()
        compiled = torch.compile(copy, dynamic=False, options=dict(COMPILE_OPTIONS))
        start = time.perf_counter()
        with torch.compiler.set_stance("default"):  # compiling, with guards, even inside `unguarded`
            value = compiled(*self._arguments(), *inputs)
        seconds = time.perf_counter() - start
        self.model.compile_s_ += seconds
        self.by_key[key] = compiled
        _mark_cached(self.model, seconds)
        return value


def _mark_cached(model: Trainable, seconds: float) -> None:
    """Record in the cache that this model's steps are compiled there (atomically: ranks may race)."""
    marker = _marker(model)
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps({"family": type(model).__qualname__, "compile_s": seconds}))
    partial.replace(marker)


class CompiledGradient(CompiledFunction):
    """A training step's value and gradient as one torch.compile'd function, written into `region` of the flat
    gradient buffer (see `GradientGenerator._gradient_function`)."""

    def __init__(self, model: Trainable, loss: Callable, params: list[torch.Tensor],
                 region: torch.Tensor) -> None:
        from torch.func import functional_call, grad_and_value

        container = ModuleCall(model.modules_, loss)
        names = {id(p): name for name, p in container.named_parameters()}
        order = [(names[id(p)], p.numel(), p.requires_grad) for p in params]
        trainable = {name: p for p, (name, _, grad) in zip(params, order) if grad}
        # the other tensors go in as arguments too: a function under a grad transform may update only its
        # arguments in place (BatchNorm's running statistics)
        others = {name: t for name, t in [*container.named_parameters(), *container.named_buffers()]
                  if name not in trainable}

        def gradient(trainable_values: list[torch.Tensor], other_values: list[torch.Tensor],
                     *inputs: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                grads, value = grad_and_value(lambda tr, ot: functional_call(container, {**tr, **ot}, inputs))(
                    dict(zip(trainable, trainable_values)), dict(zip(others, other_values)))
                region.copy_(torch.cat([grads[name].reshape(-1) if grad else region.new_zeros(n)
                                        for name, n, grad in order]))
            return value

        super().__init__(model, gradient)
        self.arguments = (list(trainable.values()), list(others.values()))

    def _arguments(self) -> tuple:
        return self.arguments


class ModuleCall(torch.nn.Module):
    """`function` as a module over the networks `parts`, so that torch.func can swap in their parameters."""

    def __init__(self, parts: list[torch.nn.Module], function: Callable) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)
        object.__setattr__(self, "function", function)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.function(*inputs)
