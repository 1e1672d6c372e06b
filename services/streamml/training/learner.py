"""Online learners: a running standardizer in front of a small PyTorch network.

`OnlineLearner` follows River's verbs (`learn_one`, `predict_one`, `learn_many`,
`predict_many`) on NumPy arrays. Every call to `learn_one` or `learn_many` first
folds the rows into the standardizers, then takes one optimizer step on the mean
loss of the rows. `streamml.training.export` writes the same standardizer and
weights into an ONNX graph, so serving computes what training computed.

The networks are shallow (Linear and ReLU layers), so the gradients are computed
in closed form with torch tensor ops instead of autograd, and SGD and Adam are
applied in place with the update rules of `torch.optim.SGD` and `torch.optim.Adam`.

The `newton` optimizer, for linear and logistic models, keeps an exponentially
forgotten sum of the loss curvature (`X^T diag(w) X`, with `w = p (1 - p)` for the
logistic loss and 1 for squared error) and steps by its inverse times the gradient.
For squared error that is recursive least squares with forgetting. One step on a block
of 64 rows then learns about as much as 64 SGD steps, so learning runs in blocks at the
speed of a few matrix products per block.
On single-row batches their bookkeeping dominates: with torch 2.15 on one CPU
thread, a logistic `learn_one` took about 430 µs through autograd and `torch.optim`
and about 110 µs this way (a measurement on a shared 2-core machine).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional

from streamml.common.spec import ModelSpec, PipelineSpec

Task = Literal["classification", "regression"]
STATE_FORMAT = 1

# Variances at or below this count as a constant input, which is centered but not scaled.
_MIN_VARIANCE = 1e-12
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


class RunningStandardizer:
    """Running mean and population variance of each column (Welford, merged per batch by Chan's rule).

    `transform` computes `(x - mean) * scale` in float32 with `scale = 1 / std`, from
    the same float32 `mean32` and `scale32` arrays that the ONNX export writes.
    NumPy does this faster than torch on a few values, with the same IEEE float32 result.
    """

    def __init__(self, width: int) -> None:
        self.count = 0
        self.mean = np.zeros(width, dtype=np.float64)
        self.m2 = np.zeros(width, dtype=np.float64)
        self.mean32 = np.zeros(width, dtype=np.float32)
        self.scale32 = np.ones(width, dtype=np.float32)
        # Views that share memory with the float32 arrays, which are updated in place.
        self.mean_tensor = torch.from_numpy(self.mean32)
        self.scale_tensor = torch.from_numpy(self.scale32)

    def update(self, x: np.ndarray) -> None:
        """Fold the rows of `x`, shaped `(n, width)`, into the running moments."""
        n = x.shape[0]
        if n == 0:
            return
        total = self.count + n
        if n == 1:
            delta = x[0] - self.mean
            self.mean += delta / total
            self.m2 += delta * (x[0] - self.mean)
        else:
            batch_mean = x.mean(axis=0)
            delta = batch_mean - self.mean
            self.m2 += np.square(x - batch_mean).sum(axis=0) + np.square(delta) * (self.count * n / total)
            self.mean += delta * (n / total)
        self.count = total
        self._refresh()

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardize float32 rows `x`, shaped `(n, width)`."""
        return (x - self.mean32) * self.scale32

    @property
    def variance(self) -> np.ndarray:
        return self.m2 / self.count if self.count else np.zeros_like(self.m2)

    def _refresh(self) -> None:
        variance = self.variance
        varying = variance > _MIN_VARIANCE
        scale = np.ones_like(variance)
        scale[varying] = 1.0 / np.sqrt(variance[varying])
        np.copyto(self.mean32, self.mean, casting="same_kind")
        np.copyto(self.scale32, scale, casting="same_kind")

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.copy(), "m2": self.m2.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean = np.asarray(state["mean"], dtype=np.float64)
        if mean.shape != self.mean.shape:
            raise ValueError(
                f"standardizer state has width {mean.shape}, this learner has {self.mean.shape}: "
                "restore state saved by a learner built from the same pipeline spec"
            )
        self.count = int(state["count"])
        self.mean[:] = mean
        self.m2[:] = np.asarray(state["m2"], dtype=np.float64)
        self._refresh()


def _initial_parameters(model: ModelSpec, n_features: int, outputs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return `(weight, bias)` per layer, seeded independently of torch's global RNG."""
    generator = torch.Generator().manual_seed(model.seed)
    widths = [n_features, *(model.hidden if model.kind == "mlp" else ()), outputs]
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        weight = torch.zeros(fan_out, fan_in)
        if model.kind == "mlp":
            # He initialization before a ReLU, Glorot for the output layer.
            is_output = index == len(widths) - 2
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if is_output else math.sqrt(6.0 / fan_in)
            weight.uniform_(-bound, bound, generator=generator)
        # A linear model's loss is convex, so it starts from zero weights.
        layers.append((weight, torch.zeros(fan_out)))
    return layers


class OnlineLearner:
    """A standardizer and a Linear/ReLU network, trained one optimizer step per call.

    Classification learners take class indices in `[0, n_classes)` and predict class
    probabilities shaped `(n, n_classes)`. A `logistic` learner has one sigmoid output
    and predicts `[1 - p, p]`. Regression learners take floats and predict values shaped
    `(n,)`. Regression targets pass through a second running standardizer, and the
    network's output is scaled back. `model.l2` adds `l2 / 2 * ||W||^2` for every
    weight matrix to the loss (biases are not penalized), as `weight_decay` does in
    `torch.optim`.
    """

    def __init__(self, model: ModelSpec, n_features: int, n_classes: int | None = None) -> None:
        if n_features <= 0:
            raise ValueError(f"a learner needs at least one feature, got n_features={n_features}")
        if model.kind == "linear" and n_classes is not None:
            raise ValueError(f"model kind linear predicts a number, got n_classes={n_classes}: pass n_classes=None")
        if model.kind in ("logistic", "softmax") and n_classes is None:
            raise ValueError(f"model kind {model.kind} predicts classes: pass n_classes")
        if model.kind == "logistic" and n_classes != 2:
            raise ValueError(f"model kind logistic needs exactly 2 classes, got {n_classes}: use softmax")
        if n_classes is not None and n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got n_classes={n_classes}")
        self.model = model
        self.n_features = n_features
        self.n_classes = n_classes
        self.task: Task = "regression" if n_classes is None else "classification"
        self.samples = 0
        self.standardizer = RunningStandardizer(n_features)
        self.target_standardizer = RunningStandardizer(1) if self.task == "regression" else None
        outputs = 1 if n_classes is None or model.kind == "logistic" else n_classes
        # Class index to one-hot row: NumPy indexing is several times faster than torch's index_put here.
        self._one_hot = np.eye(n_classes or 1, dtype=np.float32)
        self.layers = _initial_parameters(model, n_features, outputs)
        self.steps = 0
        # Adam's first and second moment estimates, one pair per parameter tensor.
        self._moments: list[tuple[torch.Tensor, torch.Tensor]] = []
        if model.optimizer == "adam":
            self._moments = [(torch.zeros_like(tensor), torch.zeros_like(tensor)) for tensor in self.parameters()]
        # Newton's curvature estimate over [weights, bias], starting from the damping term alone.
        self._curvature: torch.Tensor | None = None
        if model.optimizer == "newton":
            self._curvature = torch.eye(n_features + 1, dtype=torch.float64) * model.l2

    @classmethod
    def from_spec(cls, spec: PipelineSpec, n_features: int) -> OnlineLearner:
        """Build the learner of a pipeline spec for feature vectors of `n_features` values."""
        classes = spec.label.classes if spec.label.kind == "classes" else None
        return cls(spec.model, n_features, len(classes) if classes else None)

    # Prediction ---------------------------------------------------------------------------------

    def predict_many(self, x: np.ndarray) -> np.ndarray:
        """Predict class probabilities `(n, n_classes)` or values `(n,)` for the rows of `x`."""
        activations = self._activations(torch.from_numpy(self.standardizer.transform(self._inputs(x))))
        return self._output(activations[-1]).numpy()

    def predict_one(self, x: np.ndarray | list[float]) -> np.ndarray | float:
        """Predict the class probabilities, or the value, of one feature vector."""
        prediction = self.predict_many(np.asarray(x, dtype=np.float32).reshape(1, -1))
        return float(prediction[0]) if self.task == "regression" else prediction[0]

    def _activations(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Return the layer inputs (standardized features, then each ReLU output) and the logits."""
        activations = [inputs]
        last = len(self.layers) - 1
        for index, (weight, bias) in enumerate(self.layers):
            output = functional.linear(activations[-1], weight, bias)
            activations.append(output if index == last else torch.relu(output))
        return activations

    def _output(self, logits: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            scaler = self.target_standardizer
            assert scaler is not None
            return logits[:, 0] / scaler.scale_tensor + scaler.mean_tensor
        if self.model.kind == "logistic":
            probability = torch.sigmoid(logits)
            return torch.cat((1.0 - probability, probability), dim=1)
        return torch.softmax(logits, dim=1)

    # Learning -----------------------------------------------------------------------------------

    def learn_many(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fold the rows of `x` into the standardizers, then take one step on their mean loss."""
        x64 = np.asarray(x, dtype=np.float64)
        if x64.ndim != 2 or x64.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (n, {self.n_features}), got {x64.shape}")
        y = np.asarray(y)
        self._check_targets(y, x64.shape[0])
        if x64.shape[0] == 0:
            return
        if not np.isfinite(x64).all():
            raise ValueError("x contains NaN or infinite values: drop or impute them before learning")
        self.standardizer.update(x64)
        targets = self._targets(y)
        inputs = torch.from_numpy(self.standardizer.transform(x64.astype(np.float32)))
        activations = self._activations(inputs)
        if self._curvature is not None:
            self._newton_step(inputs, activations[-1], targets)
        else:
            self._step(self._gradients(activations, self._logit_gradient(activations[-1], targets)))
        self.samples += x64.shape[0]

    def learn_one(self, x: np.ndarray | list[float], y: int | float) -> None:
        """Learn one feature vector and its class index or value."""
        self.learn_many(np.asarray(x, dtype=np.float64).reshape(1, -1), np.asarray([y]))

    def _check_targets(self, y: np.ndarray, n: int) -> None:
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match x, got {y.shape}")
        if self.task == "regression":
            if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
                raise ValueError(f"y must hold finite numbers for a regression learner, got {y[:5].tolist()}")
        elif n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= (self.n_classes or 0)):
            raise ValueError(f"y must hold class indices in [0, {self.n_classes}), got {y[:5].tolist()}")

    def _targets(self, y: np.ndarray) -> torch.Tensor:
        if self.model.kind == "logistic":
            return torch.from_numpy(y.astype(np.float32))
        if self.task == "classification":
            return torch.from_numpy(self._one_hot[y])
        scaler = self.target_standardizer
        assert scaler is not None
        values = y.astype(np.float64)
        scaler.update(values.reshape(-1, 1))
        return torch.from_numpy(((values - scaler.mean[0]) * float(scaler.scale32[0])).astype(np.float32))

    def _logit_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Return d(mean loss)/d(logits): binary or categorical cross-entropy, or squared error."""
        n = logits.shape[0]
        if self.task == "regression":
            return (logits - targets.unsqueeze(1)) * (2.0 / n)
        if self.model.kind == "logistic":
            return (torch.sigmoid(logits) - targets.unsqueeze(1)) / n
        return (torch.softmax(logits, dim=1) - targets) / n

    def _gradients(self, activations: list[torch.Tensor], delta: torch.Tensor) -> list[torch.Tensor]:
        """Backpropagate the logit gradient `delta` and return the parameter gradients in `parameters()` order."""
        gradients: list[torch.Tensor] = []
        for index in range(len(self.layers) - 1, -1, -1):
            weight, _ = self.layers[index]
            layer_input = activations[index]
            weight_gradient = delta.t() @ layer_input
            if self.model.l2:
                weight_gradient.add_(weight, alpha=self.model.l2)
            gradients[:0] = [weight_gradient, delta.sum(dim=0)]
            if index:
                delta = (delta @ weight) * (layer_input > 0)
        return gradients

    def _step(self, gradients: list[torch.Tensor]) -> None:
        self.steps += 1
        rate = self.model.learning_rate
        if self.model.optimizer == "sgd":
            for parameter, gradient in zip(self.parameters(), gradients):
                parameter.add_(gradient, alpha=-rate)
            return
        beta1, beta2 = _ADAM_BETAS
        correction1 = 1.0 - beta1**self.steps
        correction2_sqrt = math.sqrt(1.0 - beta2**self.steps)
        for parameter, gradient, (mean, square) in zip(self.parameters(), gradients, self._moments):
            mean.lerp_(gradient, 1.0 - beta1)
            square.mul_(beta2).addcmul_(gradient, gradient, value=1.0 - beta2)
            denominator = (square.sqrt() / correction2_sqrt).add_(_ADAM_EPS)
            parameter.addcdiv_(mean, denominator, value=-rate / correction1)

    def _newton_step(self, inputs: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Fold the block's curvature into the forgotten sum, then step by its inverse times the gradient."""
        assert self._curvature is not None
        self.steps += 1
        n = inputs.shape[0]
        design = torch.cat((inputs.double(), torch.ones(n, 1, dtype=torch.float64)), dim=1)
        outputs = logits[:, 0].double()
        if self.model.kind == "logistic":
            probability = torch.sigmoid(outputs)
            residual = probability - targets.double()
            weights = probability * (1.0 - probability)
        else:
            residual = outputs - targets.double()
            weights = torch.ones(n, dtype=torch.float64)
        forget = (1.0 - 1.0 / self.model.memory) ** n
        curvature = self._curvature
        curvature.mul_(forget).add_((design.t() * weights) @ design)
        # Damping keeps its full weight however much of the past is forgotten.
        curvature.diagonal().add_(self.model.l2 * (1.0 - forget))
        step = torch.linalg.solve(curvature, design.t() @ residual) * self.model.learning_rate
        weight, bias = self.layers[0]
        weight.sub_(step[:-1].to(torch.float32).unsqueeze(0))
        bias.sub_(step[-1:].to(torch.float32))

    # Parameters and state -----------------------------------------------------------------------

    def parameters(self) -> list[torch.Tensor]:
        """Return the weight and bias tensors, layer by layer."""
        return [tensor for layer in self.layers for tensor in layer]

    def linear_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return a float32 copy of `(weight, bias)` per layer, the weight shaped `(out, in)`."""
        return [(weight.numpy().copy(), bias.numpy().copy()) for weight, bias in self.layers]

    def state_dict(self) -> dict[str, Any]:
        """Return a copy of everything needed to resume learning, as tensors, arrays and numbers."""
        return {
            "format": STATE_FORMAT,
            "model": self.model.model_dump(mode="json"),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "samples": self.samples,
            "steps": self.steps,
            "standardizer": self.standardizer.state_dict(),
            "target_standardizer": self.target_standardizer.state_dict() if self.target_standardizer else None,
            "parameters": [tensor.clone() for tensor in self.parameters()],
            "moments": [[tensor.clone() for tensor in pair] for pair in self._moments],
            "curvature": self._curvature.clone() if self._curvature is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from the `state_dict()` of a learner with the same model spec and shape."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"learner state format {state.get('format')!r} is not supported, expected {STATE_FORMAT}: "
                "restore state saved by this version of streamml")
        saved = ModelSpec.model_validate(state["model"])
        shape = (state["n_features"], state["n_classes"])
        if saved != self.model or shape != (self.n_features, self.n_classes):
            raise ValueError(
                f"learner state is for model {saved.model_dump()} with (n_features, n_classes)={shape}, but this "
                f"learner has model {self.model.model_dump()} with {(self.n_features, self.n_classes)}: "
                "restore state saved under the same pipeline spec"
            )
        for parameter, saved_tensor in zip(self.parameters(), state["parameters"], strict=True):
            parameter.copy_(saved_tensor)
        for pair, saved_pair in zip(self._moments, state["moments"], strict=True):
            for tensor, saved_tensor in zip(pair, saved_pair, strict=True):
                tensor.copy_(saved_tensor)
        if self._curvature is not None:
            self._curvature.copy_(state["curvature"])
        self.standardizer.load_state_dict(state["standardizer"])
        if self.target_standardizer is not None:
            self.target_standardizer.load_state_dict(state["target_standardizer"])
        self.samples = int(state["samples"])
        self.steps = int(state["steps"])

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(ModelSpec.model_validate(state["model"]), state["n_features"], state["n_classes"])  # type: ignore[misc]
        self.load_state_dict(state)

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        array = np.asarray(x, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.n_features:
            raise ValueError(f"x must have shape (n, {self.n_features}), got {array.shape}")
        return array
