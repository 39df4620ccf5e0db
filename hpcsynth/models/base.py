"""The protocol every generator follows, in one process and across federated sites.

Single process (scikit-learn's estimator contract): the constructor only stores hyperparameters; `fit(df)`
fits the shared transform and trains; `sample(n)` returns a DataFrame in the original units; fitted state ends
in `_`.

Federated (what the round loop and the strategies use, and all they use):
    setup(transformer, stream)          build the networks for a fitted transformer; `stream` keys this site's
                                        random numbers so sites draw different batches from one seed
    shared_parameters() -> Tensor       the parameters every site exchanges, one flat buffer (a view: writing
                                        it changes the model)
    shared_gradients() -> Tensor        the matching flat gradient buffer (data-parallel training)
    trainable_mask() -> Tensor          which entries of that buffer gradient descent trains (not statistics)
    local_update(data, steps, ...)      `steps` optimiser steps on this site's encoded rows
    local_state() / load_local_state()  what stays on the site (optimiser moments), for checkpoints

Same seed, same machine: identical samples.

In `fit` an epoch is one pass over the rows, its last batch the rows left (SDV's and PyTorch's DataLoader's
epoch); federated steps always take whole batches (`_next_batch`).

Speed: a family may train through torch.compile (`compile`: `auto`, the default, compiles on a CPU when the
run is long enough to pay back the seconds to a minute that compiling takes once; `on`; `off`). What is
compiled is one function per training step that computes the loss and writes its gradient into the flat
gradient buffer (`_gradient_function`): forward and backward in one graph, without autograd's bookkeeping
between them. When nothing runs between the gradient and the optimiser (no gradient hook, no privacy) and the
optimiser is Adam, the step's update goes into the same graph (`_CompiledAdamStep`), which is then called
without dynamo's guard checks (see `_Compiled`). Its random draws come in as arguments or from ATen's
generators, so a compiled step computes what the eager step computes, up to rounding, and the same seed still
gives the same samples.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
import time
import types
from typing import Callable

import numpy as np
import pandas as pd
import torch

from hpcsynth.data.transformer import TableTransformer
from hpcsynth.models.flat import FlatParameters

GradHook = Callable[[torch.Tensor, int], None]


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto` is this rank's local GPU when CUDA is present (rank i on GPU i mod count), else the CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def seeded_generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator whose stream depends on the seed and the keys (site, purpose), independent of order."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train with bfloat16 matrix products (autocast; the weights, the exchanged buffer and the
    optimiser stay float32). `auto`: where the hardware multiplies bfloat16 natively (a CUDA GPU that supports
    it, or a CPU with AVX-512 BF16 / AMX, where small products run 4-10x faster than float32), else float32."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision: expected auto, bf16 or fp32, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def compile_available(device: torch.device) -> bool:
    """Whether torch.compile can build this device's kernels here: on a CPU, inductor needs a C++ compiler."""
    return device.type == "cpu" and _cpp_compiler_found()


@functools.lru_cache(maxsize=None)
def _cpp_compiler_found() -> bool:
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # no compiler, or an inductor without this helper
        return False
    return True


def use_compile(compile: str | bool, device: torch.device, steps: int, min_steps: int) -> bool:
    """Whether to train through torch.compile'd step functions. `on`/True and `off`/False decide; `auto` compiles
    on a CPU with a C++ compiler when the training ahead is `min_steps` steps or more (compiling takes seconds to
    a minute once, and saves a fixed time per step, so only long runs pay it back)."""
    mode = {True: "on", False: "off"}.get(compile, compile)
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"compile: expected auto, on or off, got {compile!r}")
    if mode == "off":
        return False
    if mode == "on":
        return True
    return steps >= min_steps and compile_available(device)


# inductor options of the compiled step functions: random numbers from ATen's generators (inductor's own CPU
# generator draws one number at a time, several times slower), and the code that calls the kernels in C++
# rather than Python (a step of small tensors saves about a tenth of its time)
COMPILE_OPTIONS = {"fallback_random": True, "cpp_wrapper": True}


class Generator:
    """Shared machinery: device, flat parameters, batching, the fit loop, sampling and decoding."""

    _SAMPLE, _TRAIN = 1, 2
    # what the family is, declared for the registry and for config validation (never found with hasattr):
    name: str = "generator"  # the job file's model.name
    trains_by = "gradients"  # "gradients" (rounds of local steps) or "counts" (one exact exchange of counts)
    has_latent = False  # an encoder and a decoder: latent-space strategies apply
    dp_sgd = False  # DP-SGD covers every release the family makes from real rows
    default_numeric = "quantile"  # the numeric transform a family trains best on (TableTransformer's `numeric`)
    # families whose training loss, `_train_loss(batch, loss_noise(n))`, torch.compile takes (see `compile`)
    compilable = False
    compile_min_steps = 5000  # `compile="auto"` compiles from this many training steps ahead (fit) or taken

    def __init__(self, epochs: int = 300, batch_size: int = 500, lr: float = 1e-3, weight_decay: float = 1e-5,
                 optimizer: str = "adam", device: str = "auto", seed: int = 0, categorical: list[str] = (),
                 time: str | None = None, event: str | None = None, progress: bool = False,
                 numeric: str | None = None, precision: str = "fp32", compile: str | bool = "auto") -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.device = device
        self.seed = seed
        self.categorical = categorical
        self.time = time
        self.event = event
        self.progress = progress
        self.numeric = numeric
        self.precision = precision
        self.compile = compile

    # -- what each family provides -----------------------------------------------------------------------
    def _build(self, spans: list[tuple[str, int]]) -> list[torch.nn.Module]:
        """The networks for this output layout (built under the shared seed)."""
        raise NotImplementedError

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch of encoded rows."""
        raise NotImplementedError

    def _generate(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` rows of generator output in the encoded space (values and logits)."""
        raise NotImplementedError

    def _after_step(self) -> None:
        """Projection after each optimiser step (for example clamping a scale)."""

    # -- single process ---------------------------------------------------------------------------------
    def make_transformer(self) -> TableTransformer:
        """The unfitted table transform: `numeric` when given, else the family's `default_numeric`."""
        return TableTransformer(self.categorical, self.time, self.event, numeric=self.numeric or self.default_numeric)

    def fit(self, frame: pd.DataFrame) -> "Generator":
        transformer = self.make_transformer().fit(frame)
        self.setup(transformer)
        data = self.to_device(transformer.encode(frame))
        self.planned_steps_ = self.epochs * self.steps_per_epoch(len(data))
        epochs = range(self.epochs)
        if self.progress:
            from tqdm import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        self._whole_passes = True
        try:
            self.losses_ = [self.local_update(data, self.steps_per_epoch(len(data))) for _ in epochs]
        finally:
            self._whole_passes = False
        self.finish(data)
        return self

    def finish(self, data: torch.Tensor, comm=None) -> None:
        """After training, before sampling: anything fitted on the trained model (VAE-BGM's latent prior).
        Collective when `comm` spans the sites that share the model."""

    def sample(self, n: int, seed: int | None = None) -> pd.DataFrame:
        """`n` synthetic rows as a DataFrame with the original columns, kinds and labels."""
        key = self.seed if seed is None else seed
        generator = seeded_generator(key, self.stream_, self._SAMPLE, device=self.device_)
        with torch.no_grad():
            out = self._generate(n, generator).float().cpu().numpy()
        return self.transformer_.decode(out, np.random.default_rng([key, self.stream_, self._SAMPLE]))

    # -- federated protocol -------------------------------------------------------------------------------
    def setup(self, transformer: TableTransformer, stream: int = 0, local_rank: int = 0) -> "Generator":
        self.transformer_ = transformer
        self.stream_ = stream
        self.device_ = resolve_device(self.device, local_rank)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.modules_ = [m.to(self.device_) for m in self._build(transformer.spans)]
        params = [p for m in self.modules_ for p in m.parameters()]
        self.flat_ = FlatParameters(params)
        self.trainable_ = torch.cat([torch.full((p.numel(),), p.requires_grad) for p in params]).to(self.device_)
        self.optimizer_ = self._make_optimizer()
        self._fused_adam = self.compilable and self.optimizer == "adam" and bool(self.trainable_.all())
        self.train_generator_ = seeded_generator(self.seed, stream, self._TRAIN, device=self.device_)
        self._order, self._cursor, self._whole_passes = None, 0, False
        self.privacy_ = None
        self.bf16_ = use_bf16(self.precision, self.device_)
        use_compile(self.compile, self.device_, 0, 1)  # validates the option early
        self.planned_steps_, self.steps_taken_, self.compile_s_ = 0, 0, 0.0
        self._compiled = {}
        return self

    def _make_optimizer(self) -> torch.optim.Optimizer:
        """One optimiser over the whole flat buffer as a single tensor: SGD and Adam are elementwise, so this is
        the per-parameter update, in a few kernels (fused Adam: one) instead of a dozen small ones per parameter."""
        whole = torch.nn.Parameter(self.flat_.data)  # shares the buffer's storage
        whole.grad = self.flat_.grad
        params = [whole]
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        raise ValueError(f"optimizer: expected adam or sgd, got {self.optimizer!r}")

    def shared_parameters(self) -> torch.Tensor:
        return self.flat_.data

    def shared_gradients(self) -> torch.Tensor:
        return self.flat_.grad

    def trainable_mask(self) -> torch.Tensor:
        """Which entries of the shared buffer gradient descent trains: False for statistics kept there as
        gradient-free parameters (CTGAN's BatchNorm running moments), which strategies average as they are."""
        return self.trainable_

    def to_device(self, matrix: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(matrix, dtype=torch.float32, device=self.device_)

    def steps_per_epoch(self, n_rows: int, batch_size: int | None = None) -> int:
        return max(1, -(-n_rows // (batch_size or self.batch_size)))

    def _next_batch(self, data: torch.Tensor, size: int) -> torch.Tensor:
        """The next `size` rows of a shuffled pass over `data`; a batch as large as the data is the data, in order.

        In `fit` an epoch is one whole pass, its last batch the rows left (as SDV's models and PyTorch's
        DataLoader count an epoch). Federated steps always take `size` rows, starting a new pass when too few
        are left, because the strategies weigh every site's gradient by a fixed batch size."""
        n = data.shape[0]
        if size >= n:
            return data
        if self._order is None or self._cursor >= n or (self._cursor + size > n and not self._whole_passes):
            self._order = torch.randperm(n, generator=self.train_generator_, device=self.device_)
            self._cursor = 0
        idx = self._order[self._cursor:self._cursor + size]
        self._cursor += size
        return data[idx]

    def local_update(self, data: torch.Tensor, steps: int, batch_size: int | None = None,
                     grad_hook: GradHook | None = None) -> float:
        """Train `steps` optimiser steps on this site's rows; return the mean loss.

        `grad_hook(flat_grad, batch_rows)` runs between backward and the step: the data-parallel strategy
        averages the gradient buffer across ranks there. A compiled family under Adam with nothing between its
        gradient and its update (no hook, no privacy) takes all three in one compiled call (`_CompiledAdamStep`)."""
        for m in self.modules_:
            m.train()
        size = min(batch_size or self.batch_size, data.shape[0])
        total, counted = 0.0, 0
        self.steps_taken_ += steps
        fused = grad_hook is None and self.privacy_ is None and self._fused_adam and self._compile_now()
        step = self._fused_step() if fused else functools.partial(self._hooked_step, grad_hook=grad_hook)
        with step.unguarded() if fused else contextlib.nullcontext():
            for _ in range(steps):
                loss, rows = step(data, size)
                self._after_step()
                if loss == loss:  # a private step on an empty Poisson sample has no loss to report
                    total, counted = total + loss, counted + 1
        return total / max(counted, 1)

    def _hooked_step(self, data: torch.Tensor, size: int, grad_hook: GradHook | None) -> tuple[float, float]:
        """One optimiser step: the gradient, the hook, the update; return the batch loss and the rows it stands
        for."""
        loss, rows = self._gradient(data, size)
        if grad_hook is not None:
            grad_hook(self.flat_.grad, rows)
        self.optimizer_.step()
        return loss, rows

    def _fused_step(self) -> "_CompiledAdamStep":
        step = self._compiled.get("step")
        if step is None:
            step = self._compiled["step"] = _CompiledAdamStep(self)
        return step

    def _compile_key(self) -> tuple:
        """The Python state, besides the shapes of its inputs, that a family's compiled loss depends on (see
        `_CompiledAdamStep.unguarded`): a change of it compiles anew."""
        return ()

    def _gradient(self, data: torch.Tensor, size: int) -> tuple[float, float]:
        """Fill the flat gradient for one step; return the batch loss and the rows it stands for.

        With differential privacy (`make_private`) the mechanism computes it: clipped per-sample gradients
        of a Poisson sample plus Gaussian noise."""
        if self.privacy_ is not None:
            return self.privacy_.gradient(data)
        if self.compilable:  # the draws outside, so that the loss is a pure function torch.compile can take
            batch = self._next_batch(self._train_rows(data), size)
            loss = self._gradient_function("loss", self._autocast_loss, self.modules_)(
                batch, self.loss_noise(batch.shape[0]))
        else:
            self.flat_.zero_grad()
            batch = self._next_batch(data, size)
            with self._autocast():
                loss = self.loss(batch)
            loss.backward()
            self.flat_.check_bound()
        return float(loss.detach()), batch.shape[0]

    def _autocast(self) -> torch.autocast:
        """bfloat16 matrix products over the float32 flat buffer when `precision` asks for them (`bf16_`)."""
        return torch.autocast(self.device_.type, dtype=torch.bfloat16, enabled=self.bf16_)

    def _train_rows(self, data: torch.Tensor) -> torch.Tensor:
        """The rows a compilable family's training batches are drawn from (`data`, or a copy it laid out once)."""
        return data

    def _train_loss(self, batch: torch.Tensor, *draws: torch.Tensor) -> torch.Tensor:
        """A compilable family's loss of a batch of `_train_rows` rows and its draws (`loss_noise`)."""
        return self.loss(batch, *draws)

    def _autocast_loss(self, *args: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self._train_loss(*args)

    def _gradient_function(self, key: str, loss: Callable, modules: list[torch.nn.Module]) -> Callable:
        """A function of one training step's inputs that writes the gradient of `loss(*inputs)` with respect to
        `modules`' parameters into their (consecutive) part of the flat gradient buffer and returns the loss.

        Eager (`compile` off, or `auto` for a short run): zero that part, then autograd's backward pass. Compiled:
        the value and the gradient in one pure function (`torch.func.grad_and_value` over the parameters), which
        torch.compile turns into one graph, forward and backward, that writes the gradient in place: no autograd
        graph, no accumulation into a zeroed buffer. It is compiled once per model and kept (static shapes: a
        training batch has the same shape every step); the wall time of its first call, where the compiling
        happens, goes to `compile_s_`."""
        function = self._compiled.get(key)
        if function is not None and (function.compiled or not self._compile_now()):
            return function
        params = [p for m in modules for p in m.parameters()]
        start = (params[0].data_ptr() - self.flat_.data.data_ptr()) // self.flat_.data.element_size()
        region = self.flat_.grad[start:start + sum(p.numel() for p in params)]
        if self._compile_now():
            function = _CompiledGradient(self, loss, params, region)
        else:
            function = _EagerGradient(self.flat_, loss, region)
        self._compiled[key] = function
        return function

    def _compile_now(self) -> bool:
        return use_compile(self.compile, self.device_, max(self.planned_steps_, self.steps_taken_),
                           self.compile_min_steps)

    supports_privacy = False

    def loss_noise(self, n: int):
        """The random draws the loss of `n` rows needs, drawn outside it (so DP-SGD can vmap per sample)."""
        raise NotImplementedError(f"{type(self).__name__} does not support differential privacy")

    def make_private(self, mechanism) -> "Generator":
        """Train with `mechanism` (hpcsynth.federated.privacy.DPSGD) from now on."""
        if not self.supports_privacy:
            raise ValueError(f"privacy: {type(self).__name__} does not support differential privacy")
        self.privacy_ = mechanism.attach(self)
        return self

    def local_state(self) -> bytes:
        """The optimiser state, the training stream and, when private, the privacy spent and the noise stream
        (what a checkpoint must keep per site)."""
        buffer = io.BytesIO()
        privacy = self.privacy_.state() if self.privacy_ is not None else None
        torch.save({"optimizer": self.optimizer_.state_dict(), "train_rng": self.train_generator_.get_state(),
                    "order": self._order, "cursor": self._cursor, "privacy": privacy}, buffer)
        return buffer.getvalue()

    def load_local_state(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), weights_only=False)
        self.optimizer_.load_state_dict(state["optimizer"])
        self.train_generator_.set_state(state["train_rng"])
        self._order, self._cursor = state["order"], state["cursor"]
        if self.privacy_ is not None and state.get("privacy") is not None:
            self.privacy_.load_state(state["privacy"])


class _EagerGradient:
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


class _Compiled:
    """A torch.compile'd training function over the networks' parameters, which go in as arguments (closed-over
    modules would make every call check guards on each of them).

    It compiles once per key, the shapes of its inputs and `_key()` (the Python state the function reads, such
    as `Generator._compile_key`): an epoch's short last batch is a second key. Each key gets a copy of the
    function with its own code object, because dynamo keeps its graphs per code object and tries their guards in
    turn: two keys on one code would cost every step of the second the failed guards of the first. So each copy
    has one graph, which `_CompiledAdamStep.unguarded` can then call without checking guards at all. The wall
    time of the first call per key, where the compiling happens, goes to `compile_s_`."""

    compiled = True

    def __init__(self, model: Generator, function: Callable) -> None:
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
        compiled = torch.compile(copy, dynamic=False, options=dict(COMPILE_OPTIONS))
        start = time.perf_counter()
        with torch.compiler.set_stance("default"):  # compiling, with guards, even inside `unguarded`
            value = compiled(*self._arguments(), *inputs)
        self.model.compile_s_ += time.perf_counter() - start
        self.by_key[key] = compiled
        return value


class _CompiledGradient(_Compiled):
    """A training step's value and gradient as one torch.compile'd function (see `_gradient_function`)."""

    def __init__(self, model: Generator, loss: Callable, params: list[torch.Tensor], region: torch.Tensor) -> None:
        from torch.func import functional_call, grad_and_value

        container = _Call(model.modules_, loss)
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


class _CompiledAdamStep(_Compiled):
    """A whole training step as one torch.compile'd function: the loss, its gradient (also written to the flat
    gradient buffer) and Adam's update of the flat parameter buffer, for a family whose parameters all train.
    The update is torch.optim.Adam's (L2 weight decay, bias corrections) on that optimiser's own state, read
    anew at every step (loading a checkpoint replaces it), so a checkpoint and an eager step see the same
    moments; it saves the optimiser's per-step Python and kernels. `step(data, size)` draws the next batch and
    its noise, steps, and returns the loss and the batch rows."""

    def __init__(self, model: Generator) -> None:
        from torch.func import functional_call, grad_and_value

        container = _Call(model.modules_, model._autocast_loss)
        names, shapes = zip(*[(name, p.shape) for name, p in container.named_parameters()])
        sizes = [shape.numel() for shape in shapes]
        optimizer, flat_grad = model.optimizer_, model.flat_.grad

        def step(data: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, count: torch.Tensor,
                 corrections: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
            group = optimizer.param_groups[0]  # its constants are part of the key (`_key`)
            (beta1, beta2), eps, decay = group["betas"], group["eps"], group["weight_decay"]
            with torch.no_grad():
                params = {name: t.view(shape) for name, t, shape in zip(names, data.split(sizes), shapes)}
                grads, value = grad_and_value(lambda p: functional_call(container, p, inputs))(params)
                gradient = torch.cat([grads[name].reshape(-1) for name in names])
                flat_grad.copy_(gradient)
                gradient = gradient + decay * data
                count.add_(1)
                exp_avg.lerp_(gradient, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                data.sub_(exp_avg / (exp_avg_sq.sqrt() / corrections[1] + eps) * corrections[0])
            return value

        super().__init__(model, step)

    def _state(self) -> dict:
        """Adam's state of the flat buffer, made as torch.optim.Adam's first step makes it when there is none."""
        model = self.model
        state = model.optimizer_.state[model.optimizer_.param_groups[0]["params"][0]]
        if not state:
            state.update(step=torch.zeros((), dtype=torch.float32, device=model.device_),
                         exp_avg=torch.zeros_like(model.flat_.data), exp_avg_sq=torch.zeros_like(model.flat_.data))
        return state

    def _arguments(self) -> tuple:
        state = self._state()
        return self.model.flat_.data, state["exp_avg"], state["exp_avg_sq"], state["step"]

    def _key(self) -> tuple:
        group = self.model.optimizer_.param_groups[0]
        return self.model._compile_key(), tuple(group["betas"]), group["eps"], group["weight_decay"]

    def __call__(self, data: torch.Tensor, size: int) -> tuple[float, int]:
        """The bias corrections of this step go in as a tensor, computed here once (in the compiled loop they
        would be recomputed, powers and all, for every vector of parameters); the learning rate with them, so
        that a schedule needs no new compile."""
        model = self.model
        batch = model._next_batch(model._train_rows(data), size)
        group = model.optimizer_.param_groups[0]
        (beta1, beta2), t = group["betas"], float(self._state()["step"]) + 1
        corrections = torch.tensor([group["lr"] / (1 - beta1**t), math.sqrt(1 - beta2**t)])
        return float(super().__call__(corrections, batch, model.loss_noise(batch.shape[0]))), batch.shape[0]

    def unguarded(self) -> contextlib.AbstractContextManager:
        """A context for a run of steps in which dynamo checks no guards. Each compiled copy of the step has one
        graph, for one key (see `_Compiled`), and checking its several hundred guards (one per module attribute
        the loss reads) would cost every step about a twentieth of its time."""
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)


class _Call(torch.nn.Module):
    """`function` as a module over the networks `parts`, so that torch.func can swap in their parameters."""

    def __init__(self, parts: list[torch.nn.Module], function: Callable) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)
        object.__setattr__(self, "function", function)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.function(*inputs)
