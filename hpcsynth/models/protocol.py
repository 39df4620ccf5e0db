"""`GradientGenerator`: a generator trained by gradient steps, and the federated protocol the round loop calls.

    setup(transformer, stream, local_rank)  build the networks for a fitted transform; `stream` keys this site's
                                            random numbers so that sites draw different batches from one seed
    shared_parameters() / shared_gradients() the flat parameter and gradient buffers every site exchanges (views)
    trainable_mask()                        which entries of that buffer gradient descent trains (not statistics)
    local_update(data, steps, ...)          `steps` optimiser steps on this site's encoded rows
    finish(data, comm)                      fit what depends on the trained model (VAE-BGM's prior)
    local_state() / load_local_state()      what stays on the site (optimiser moments, streams), for checkpoints
    make_private(mechanism)                 train with DP-SGD from now on (`supports_privacy` families)
A family provides `_build`, `loss` (or `_train_loss` and `loss_noise` when `compilable`) and `_generate`.
"""
from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from hpcsynth.comm import Communicator
from hpcsynth.data.transformer import TableTransformer
from hpcsynth.models.compiled import CompiledGradient, EagerGradient, compile_cache_warm, use_compile
from hpcsynth.models.compiled_adam import CompiledAdamStep
from hpcsynth.models.device import resolve_device, seeded_generator, use_bf16
from hpcsynth.models.estimator import Draw, Generator
from hpcsynth.models.flat import FlatParameters
from hpcsynth.models.time_head import NEVER, SurvivalLayout, TimeHead, draw_levels

GradHook = Callable[[torch.Tensor, int], None]

TRAINING_PARAMETERS = """
    epochs : int, default 300
        Passes over the rows in `fit` (the last batch of a pass holds the rows left).
    batch_size : int, default 500
        Rows per optimiser step.
    device : str, default "auto"
        "cpu", "cuda", "cuda:N", or "auto": this rank's GPU when CUDA is present, else the CPU.
    seed : int, default 0
        Seeds the networks' initialisation, the training batches and (unless `sample` is given one) sampling.
    categorical : list of str, default ()
        Columns to treat as categorical whatever their dtype.
    time, event : str or None, default None
        The survival time and event columns, if any.
    numeric : {"quantile", "mode_specific"} or None, default None
        The transform of numeric columns; None takes the family's `default_numeric`.
    precision : {"auto", "bf16", "fp32"}, default "fp32" (CTGAN: "auto")
        bfloat16 matrix products where the hardware has them ("auto"), always, or never.
    compile : {"auto", "on", "off"} or bool, default "auto"
        Train through torch.compile'd steps; "auto" compiles on a CPU with a C++ compiler for long runs.
    progress : bool, default False
        Show a progress bar over the epochs of `fit`.
"""


OPTIMISER_PARAMETERS = """
    lr : float, default 1e-3
        Learning rate.
    weight_decay : float, default 1e-5
        L2 weight decay.
    optimizer : {"adam", "sgd"}, default "adam"
        The optimiser over the flat parameter buffer.
"""


def documents_parameters(*shared: str) -> Callable[[type], type]:
    """Append the parameter entries families share (`OPTIMISER_PARAMETERS`, ...) and then the training
    parameters to a family's numpy-style Parameters section, so that each entry is written once."""

    def document(cls: type) -> type:
        cls.__doc__ = cls.__doc__.rstrip() + "".join(s.rstrip() for s in (*shared, TRAINING_PARAMETERS)) + "\n"
        return cls

    return document


class GradientGenerator(Generator):
    """The shared machinery of the gradient-trained families: device, flat parameters, batching, the training
    loop, differential privacy, sampling, checkpoints and saved weights."""

    _TRAIN = 2
    supports_privacy = False  # `loss(batch, loss_noise(n))` is a per-row function DP-SGD can vmap
    compilable = False  # `_train_loss(batch, loss_noise(n))` is a pure function torch.compile can take
    compile_min_steps = 5000  # `compile="auto"` compiles from this many training steps ahead (fit) or taken
    one_lr = True  # one optimiser at `lr` over the flat buffer (a family with one per network says False)
    lr: float
    weight_decay: float
    optimizer: str

    def __init__(self, *, epochs: int, batch_size: int, device: str, seed: int, categorical: list[str],
                 time: str | None, event: str | None, numeric: str | None, precision: str, compile: str | bool,
                 progress: bool) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.categorical = categorical
        self.time = time
        self.event = event
        self.numeric = numeric
        self.precision = precision
        self.compile = compile
        self.progress = progress

    # -- what each family provides -----------------------------------------------------------------------
    def _build(self, spans: list[tuple[str, int]]) -> list[torch.nn.Module]:
        """The networks for this output layout (built under the shared seed)."""
        raise NotImplementedError

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch of encoded rows."""
        raise NotImplementedError

    def _generate(self, n: int, generator: torch.Generator, codes: dict[int, int]) -> torch.Tensor:
        """`n` rows of output in the encoded space (values and logits); `codes` {column: level} only for
        families with `native_conditions`."""
        raise NotImplementedError

    def _time_head(self, order: torch.Tensor) -> TimeHead:
        """The survival head (`hpcsynth.models.time_head`) of a family whose training matrix holds the encoded
        columns in `order` (position -> column of the transform's layout): the covariates, then the event's block,
        then the time's value."""
        layout = self.survival_layout_
        position = {int(c): i for i, c in enumerate(order.tolist())}
        events = [position[c] for c in layout.event]
        return TimeHead(torch.arange(min(events), device=self.device_), torch.tensor(events, device=self.device_),
                        position[layout.time])

    def _outcome_of(self, covariates: torch.Tensor, columns: torch.Tensor | list[int], generator: torch.Generator,
                    order: torch.Tensor) -> torch.Tensor:
        """`_with_outcome` for a family whose networks output the covariates alone: they are first placed at their
        `columns` of the transform's layout (`order` is the training layout the head reads)."""
        full = covariates.new_zeros((covariates.shape[0], len(order)))
        full[:, columns] = covariates
        return self._with_outcome(full, generator, order)

    def _with_outcome(self, out: torch.Tensor, generator: torch.Generator, order: torch.Tensor) -> torch.Tensor:
        """Generator output (covariates) in the transform's layout, its categorical levels drawn, then the event
        and the time drawn by the survival head given them (the head reads the columns in its family's `order`)."""
        layout = self.survival_layout_
        certain, onehot = draw_levels(out, layout.spans, generator)
        level, time = self.time_head_.sample(onehot[:, order], generator)
        event = torch.nn.functional.one_hot(level, len(layout.event)).to(certain.dtype)
        certain[:, layout.event] = (1 - event) * NEVER
        certain[:, layout.time] = time
        return certain

    def _after_step(self) -> None:
        """Projection after each optimiser step (for example clamping a scale)."""

    def loss_noise(self, n: int) -> torch.Tensor:
        """The random draws the loss of `n` rows needs, drawn outside it (so DP-SGD can vmap per sample)."""
        raise NotImplementedError(f"{type(self).__name__} does not support differential privacy")

    def _compile_key(self) -> tuple:
        """The Python state, besides the shapes of its inputs, that a family's compiled loss depends on (see
        `CompiledAdamStep.unguarded`): a change of it compiles anew."""
        return ()

    # -- the estimator ------------------------------------------------------------------------------------
    def _fit_rows(self, matrix: np.ndarray) -> None:
        data = self.to_device(matrix)
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

    def _sampler(self, seed: int) -> Draw:
        generator = seeded_generator(seed, self.stream_, self._SAMPLE, device=self.device_)
        rng = np.random.default_rng([seed, self.stream_, self._SAMPLE])

        def draw(n: int, codes: dict[int, int]) -> pd.DataFrame:
            for m in self.modules_:
                m.eval()
            with torch.no_grad():
                out = self._generate(n, generator, codes)
            return self.transformer_.decode(out.float().cpu().numpy(), rng)

        return draw

    def _fitted_arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.flat_.data.cpu().numpy()}

    def _load_fitted_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.flat_.data.copy_(torch.as_tensor(arrays["weights"]))

    # -- the federated protocol ---------------------------------------------------------------------------
    def setup(self, transformer: TableTransformer, stream: int = 0, local_rank: int = 0) -> GradientGenerator:
        self.transformer_ = transformer
        self.stream_ = stream
        self.device_ = resolve_device(self.device, local_rank)
        self.survival_layout_ = SurvivalLayout.of(transformer) if self.survival_aware else None
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
        """One optimiser (`optimizer`, `lr`, `weight_decay`) over the whole flat buffer as a single tensor: SGD
        and Adam are elementwise, so this is the per-parameter update, in a few kernels (fused Adam: one)."""
        whole = torch.nn.Parameter(self.flat_.data)  # shares the buffer's storage
        whole.grad = self.flat_.grad
        if self.optimizer == "sgd":
            return torch.optim.SGD([whole], lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adam":
            return torch.optim.Adam([whole], lr=self.lr, weight_decay=self.weight_decay, fused=True)
        raise ValueError(f"optimizer: expected adam or sgd, got {self.optimizer!r}")

    def finish(self, data: torch.Tensor, comm: Communicator | None = None) -> None:
        """After training, before sampling: anything fitted on the trained model (VAE-BGM's latent prior).
        Collective when `comm` spans the sites that share the model."""

    def shared_parameters(self) -> torch.Tensor:
        return self.flat_.data

    def shared_gradients(self) -> torch.Tensor:
        return self.flat_.grad

    def trainable_mask(self) -> torch.Tensor:
        """Which entries of the shared buffer gradient descent trains: False for statistics kept there as
        gradient-free parameters (CTGAN's BatchNorm running moments), which strategies average as they are."""
        return self.trainable_

    def normalisation_mask(self) -> torch.Tensor:
        """Which entries of the shared buffer belong to BatchNorm layers (their affine weights and, where kept in
        the buffer, their running moments): what FedBN leaves local."""
        mask = torch.zeros_like(self.trainable_)
        for module in self.modules_:
            for layer in module.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    for tensor in layer.parameters():
                        mask[self.flat_.span(tensor)] = True
        return mask

    def optimizer_moments(self) -> list[torch.Tensor]:
        """The optimiser's running per-entry state (Adam's first and second moments; nothing under plain SGD), in
        an order every site shares: what a strategy that keeps the sites' optimisers in step averages."""
        return [tensor for optimizer in self._optimizers() for state in optimizer.state.values()
                for key, tensor in sorted(state.items()) if key != "step"]

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        """The torch optimisers behind `optimizer_`."""
        return [self.optimizer_]

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
        gradient and its update (no hook, no privacy) takes all three in one compiled call (`CompiledAdamStep`)."""
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
        """One optimiser step: the gradient, the hook, the update; return the batch loss and its rows."""
        loss, rows = self._gradient(data, size)
        if grad_hook is not None:
            grad_hook(self.flat_.grad, rows)
        self.optimizer_.step()
        return loss, rows

    def _fused_step(self) -> CompiledAdamStep:
        step = self._compiled.get("step")
        if step is None:
            step = self._compiled["step"] = CompiledAdamStep(self)
        return step

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
        `modules`' parameters into their (consecutive) part of the flat gradient buffer and returns the loss:
        eager (`EagerGradient`) or compiled once per model and kept (`CompiledGradient`), as `compile` says."""
        function = self._compiled.get(key)
        if function is not None and (function.compiled or not self._compile_now()):
            return function
        params = [p for m in modules for p in m.parameters()]
        region = self._gradient_region(params)
        if self._compile_now():
            function = CompiledGradient(self, loss, params, region)
        else:
            function = EagerGradient(self.flat_, loss, region)
        self._compiled[key] = function
        return function

    def _gradient_region(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        """The part of the flat gradient buffer that holds `params`' gradients (consecutive in the buffer)."""
        start = self.flat_.span(params[0]).start
        return self.flat_.grad[start:start + sum(p.numel() for p in params)]

    def _compile_now(self) -> bool:
        return use_compile(self.compile, self.device_, max(self.planned_steps_, self.steps_taken_),
                           self.compile_min_steps, warm=self.compile == "auto" and compile_cache_warm(self))

    # -- privacy and checkpoints --------------------------------------------------------------------------
    @property
    def private_steps_per_step(self) -> int:
        """DP-SGD steps (each one Poisson sample of the rows, one accountant step) per step of `local_update`."""
        return 1

    def private_releases(self) -> list[tuple[float, float, int]]:
        """What the family releases from the rows outside DP-SGD when private, as accountant history entries
        (noise multiplier, sample rate, releases), known before training so that DP-SGD's noise is calibrated
        to the rest of the budget. Nothing by default."""
        return []

    def make_private(self, mechanism) -> GradientGenerator:
        """Train with `mechanism` (hpcsynth.federated.privacy.DPSGD) from now on."""
        if not self.supports_privacy:
            raise ValueError(f"privacy: {type(self).__name__} does not support differential privacy")
        self.privacy_ = mechanism.attach(self)
        return self

    def local_state(self) -> bytes:
        """The optimiser state, the training stream and, when private, the privacy spent and the noise stream
        (what a checkpoint must keep per site), in torch's format of tensors and plain containers."""
        buffer = io.BytesIO()
        privacy = self.privacy_.state() if self.privacy_ is not None else None
        torch.save({"optimizer": self.optimizer_.state_dict(), "train_rng": self.train_generator_.get_state(),
                    "order": self._order, "cursor": self._cursor, "privacy": privacy}, buffer)
        return buffer.getvalue()

    def load_local_state(self, blob: bytes) -> None:
        state = torch.load(io.BytesIO(blob), weights_only=True)  # tensors and containers only: never a pickle
        self.optimizer_.load_state_dict(state["optimizer"])
        self.train_generator_.set_state(state["train_rng"])
        self._order, self._cursor = state["order"], state["cursor"]
        if self.privacy_ is not None and state.get("privacy") is not None:
            self.privacy_.load_state(state["privacy"])
