"""Contract tests of OnlineLearner over every model kind, with gradients checked against autograd."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from streamml.common.spec import ModelSpec
from streamml.training.learner import OnlineLearner, RunningStandardizer

N_FEATURES = 4

# (id, model spec fields, n_classes); None classes means a numeric label.
CASES = [
    ("linear", {"kind": "linear"}, None),
    ("logistic", {"kind": "logistic"}, 2),
    ("softmax", {"kind": "softmax"}, 3),
    ("mlp-classes", {"kind": "mlp", "hidden": (16, 8)}, 3),
    ("mlp-numeric", {"kind": "mlp", "hidden": (16,)}, None),
    ("softmax-adam", {"kind": "softmax", "optimizer": "adam", "learning_rate": 0.01, "l2": 0.01}, 3),
    ("mlp-adam-l2", {"kind": "mlp", "hidden": (8,), "optimizer": "adam", "learning_rate": 0.01, "l2": 0.01}, 2),
    ("logistic-newton", {"kind": "logistic", "optimizer": "newton", "learning_rate": 1.0, "l2": 0.1, "memory": 500}, 2),
    ("linear-newton", {"kind": "linear", "optimizer": "newton", "learning_rate": 1.0, "l2": 0.1}, None),
]
FIRST_ORDER = [case for case in CASES if case[1].get("optimizer") != "newton"]
NEWTON = [case for case in CASES if case[1].get("optimizer") == "newton"]


def make_learner(fields: dict, n_classes: int | None, **changes: object) -> OnlineLearner:
    return OnlineLearner(ModelSpec(**{**fields, **changes}), N_FEATURES, n_classes)


def toy_stream(n_classes: int | None, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return a separable problem on unscaled inputs: class by nearest centre, or a linear target."""
    rng = np.random.default_rng(seed)
    if n_classes is None:
        x = rng.normal(loc=50.0, scale=10.0, size=(n, N_FEATURES))
        y = x @ np.array([0.5, -1.0, 0.25, 2.0]) + 3.0
        return x, y
    centres = rng.normal(scale=4.0, size=(n_classes, N_FEATURES)) + 100.0
    y = rng.integers(0, n_classes, size=n)
    x = centres[y] + rng.normal(scale=0.5, size=(n, N_FEATURES))
    return x, y


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def case(request: pytest.FixtureRequest) -> tuple[dict, int | None]:
    _, fields, n_classes = request.param
    return fields, n_classes


def test_predict_shapes(case):
    fields, n_classes = case
    learner = make_learner(fields, n_classes)
    x, y = toy_stream(n_classes, 20)
    learner.learn_many(x, y)

    prediction = learner.predict_many(x)
    single = learner.predict_one(x[0])

    assert prediction.dtype == np.float32
    if n_classes is None:
        assert prediction.shape == (20,)
        assert isinstance(single, float)
    else:
        assert prediction.shape == (20, n_classes)
        np.testing.assert_allclose(prediction.sum(axis=1), 1.0, atol=1e-6)
        assert single.shape == (n_classes,)
    np.testing.assert_allclose(single, prediction[0], atol=1e-6)


def test_learner_deterministic_with_seed(case):
    fields, n_classes = case
    x, y = toy_stream(n_classes, 200)
    first, second = make_learner(fields, n_classes, seed=7), make_learner(fields, n_classes, seed=7)
    for learner in (first, second):
        for row, target in zip(x, y):
            learner.learn_one(row, target)

    np.testing.assert_array_equal(first.predict_many(x), second.predict_many(x))


def test_mlp_seed_changes_initial_weights():
    fields = {"kind": "mlp", "hidden": (8,)}
    first, second = make_learner(fields, 2, seed=1), make_learner(fields, 2, seed=2)

    assert not np.array_equal(first.linear_layers()[0][0], second.linear_layers()[0][0])


def test_learner_pickle_round_trip(case):
    fields, n_classes = case
    x, y = toy_stream(n_classes, 120)
    learner = make_learner(fields, n_classes)
    learner.learn_many(x[:60], y[:60])

    restored = pickle.loads(pickle.dumps(learner))

    np.testing.assert_array_equal(restored.predict_many(x), learner.predict_many(x))
    assert restored.samples == learner.samples
    for model in (learner, restored):
        for row, target in zip(x[60:], y[60:]):
            model.learn_one(row, target)
    np.testing.assert_array_equal(restored.predict_many(x), learner.predict_many(x))


def test_state_dict_round_trip(case):
    fields, n_classes = case
    x, y = toy_stream(n_classes, 120)
    learner = make_learner(fields, n_classes)
    learner.learn_many(x[:60], y[:60])
    state = learner.state_dict()
    before = learner.predict_many(x)

    learner.learn_many(x[60:], y[60:])
    resumed = make_learner(fields, n_classes)
    resumed.load_state_dict(state)

    np.testing.assert_array_equal(resumed.predict_many(x), before)
    resumed.learn_many(x[60:], y[60:])
    np.testing.assert_array_equal(resumed.predict_many(x), learner.predict_many(x))


def test_load_state_dict_rejects_other_model():
    state = OnlineLearner(ModelSpec(kind="softmax"), N_FEATURES, 3).state_dict()
    other = OnlineLearner(ModelSpec(kind="softmax"), N_FEATURES + 1, 3)

    with pytest.raises(ValueError, match="same pipeline spec"):
        other.load_state_dict(state)


def test_learner_learns_separable_problem(case):
    fields, n_classes = case
    x, y = toy_stream(n_classes, 1500)
    learner = make_learner(fields, n_classes)
    errors = []
    for row, target in zip(x, y):
        prediction = learner.predict_one(row)
        if n_classes is None:
            errors.append(abs(prediction - target))
        else:
            errors.append(float(np.argmax(prediction) != target))
        learner.learn_one(row, target)

    recent = float(np.mean(errors[-300:]))
    if n_classes is None:
        assert recent < 0.1 * np.std(y)
    else:
        assert recent < 0.03


def _reference_parameters(learner: OnlineLearner) -> list[torch.Tensor]:
    return [tensor.clone().requires_grad_(True) for tensor in learner.parameters()]


def _reference_loss(learner: OnlineLearner, parameters: list[torch.Tensor], x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """Compute the learner's loss with autograd-tracked torch.nn.functional ops."""
    hidden = torch.from_numpy(learner.standardizer.transform(x.astype(np.float32)))
    for index in range(0, len(parameters), 2):
        hidden = torch.nn.functional.linear(hidden, parameters[index], parameters[index + 1])
        if index + 2 < len(parameters):
            hidden = torch.relu(hidden)
    if learner.task == "regression":
        scaler = learner.target_standardizer
        target = torch.from_numpy(((y - scaler.mean[0]) * float(scaler.scale32[0])).astype(np.float32))
        loss = torch.nn.functional.mse_loss(hidden[:, 0], target)
    elif learner.model.kind == "logistic":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(hidden[:, 0], torch.from_numpy(y.astype(np.float32)))
    else:
        loss = torch.nn.functional.cross_entropy(hidden, torch.from_numpy(y.astype(np.int64)))
    return loss


@pytest.mark.parametrize(("fields", "n_classes"), [case[1:] for case in FIRST_ORDER], ids=[case[0] for case in FIRST_ORDER])
def test_updates_match_autograd_and_torch_optim(fields, n_classes):
    x, y = toy_stream(n_classes, 24, seed=3)
    learner = make_learner(fields, n_classes)
    learner.learn_many(x[:8], y[:8])
    parameters = _reference_parameters(learner)
    groups = [
        {"params": parameters[0::2], "weight_decay": learner.model.l2},
        {"params": parameters[1::2], "weight_decay": 0.0},
    ]
    optimizer_class = torch.optim.Adam if learner.model.optimizer == "adam" else torch.optim.SGD
    optimizer = optimizer_class(groups, lr=learner.model.learning_rate)
    # Give Adam's reference the moments of the first step, which the learner took already.
    if learner.model.optimizer == "adam":
        for parameter, (mean, square) in zip(parameters, learner._moments):
            optimizer.state[parameter] = {"step": torch.tensor(1.0), "exp_avg": mean.clone(), "exp_avg_sq": square.clone()}

    for start in (8, 16):
        batch_x, batch_y = x[start : start + 8], y[start : start + 8]
        learner.learn_many(batch_x, batch_y)
        optimizer.zero_grad()
        _reference_loss(learner, parameters, batch_x, batch_y).backward()
        optimizer.step()

        for ours, reference in zip(learner.parameters(), parameters):
            np.testing.assert_allclose(ours.numpy(), reference.detach().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("fields", "n_classes"), [case[1:] for case in NEWTON], ids=[case[0] for case in NEWTON])
def test_newton_step_matches_autograd_hessian(fields, n_classes):
    """From zero weights, one block's step is (l2 I + Hessian of the summed loss)^-1 times its gradient."""
    x, y = toy_stream(n_classes, 16, seed=5)
    learner = make_learner(fields, n_classes)
    reference = make_learner(fields, n_classes)
    learner.learn_many(x, y)

    reference.standardizer.update(x.astype(np.float64))
    inputs = torch.from_numpy(reference.standardizer.transform(x.astype(np.float32))).double()
    if n_classes is None:
        reference._targets(y)
        scaler = reference.target_standardizer
        targets = torch.from_numpy((y - scaler.mean[0]) * float(scaler.scale32[0]))
    else:
        targets = torch.from_numpy(y.astype(np.float64))

    def summed_loss(theta: torch.Tensor) -> torch.Tensor:
        outputs = inputs @ theta[:-1] + theta[-1]
        if n_classes is None:
            return 0.5 * ((outputs - targets) ** 2).sum()
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs, targets, reduction="sum")

    theta = torch.zeros(N_FEATURES + 1, dtype=torch.float64)
    gradient = torch.autograd.functional.jacobian(summed_loss, theta)
    curvature = torch.autograd.functional.hessian(summed_loss, theta) + fields["l2"] * torch.eye(N_FEATURES + 1)
    expected = theta - torch.linalg.solve(curvature, gradient)

    weight, bias = learner.parameters()
    np.testing.assert_allclose(weight.numpy()[0], expected[:-1].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), expected[-1:].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "softmax", "optimizer": "newton", "l2": 0.1}, "optimizer newton trains linear and logistic models"),
        ({"kind": "logistic", "optimizer": "newton"}, "optimizer newton needs l2 > 0"),
    ],
)
def test_newton_spec_errors_name_the_fix(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec(**fields)


def test_standardizer_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.normal(loc=[1.0, -200.0, 3e4], scale=[0.1, 5.0, 1e3], size=(301, 3))
    standardizer = RunningStandardizer(3)

    for start, stop in ((0, 1), (1, 2), (2, 50), (50, 51), (51, 301)):
        standardizer.update(x[start:stop])

    assert standardizer.count == 301
    np.testing.assert_allclose(standardizer.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(standardizer.variance, x.var(axis=0), rtol=1e-9)
    np.testing.assert_allclose(standardizer.scale32, 1.0 / x.std(axis=0), rtol=1e-6)


def test_standardizer_leaves_constant_column_unscaled():
    standardizer = RunningStandardizer(2)

    standardizer.update(np.array([[5.0, 1.0], [5.0, 2.0]]))

    assert standardizer.scale32[0] == 1.0
    assert standardizer.scale32[1] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((2, N_FEATURES + 1)), np.array([0, 1]), "shape"),
        (np.zeros((2, N_FEATURES)), np.array([0]), "y must have shape"),
        (np.zeros((2, N_FEATURES)), np.array([0, 3]), "class indices"),
        (np.zeros((2, N_FEATURES)), np.array([0.0, 1.0]), "class indices"),
        (np.full((2, N_FEATURES), np.nan), np.array([0, 1]), "NaN"),
    ],
)
def test_learn_many_rejects_invalid_input(x, y, message):
    learner = OnlineLearner(ModelSpec(kind="softmax"), N_FEATURES, 3)

    with pytest.raises(ValueError, match=message):
        learner.learn_many(x, y)
    assert learner.samples == 0
    assert learner.standardizer.count == 0


@pytest.mark.parametrize(
    ("kind", "n_classes", "message"),
    [("linear", 2, "n_classes=None"), ("logistic", 3, "exactly 2"), ("softmax", None, "pass n_classes"), ("mlp", 1, "at least 2")],
)
def test_learner_rejects_kind_and_classes_mismatch(kind, n_classes, message):
    with pytest.raises(ValueError, match=message):
        OnlineLearner(ModelSpec(kind=kind), N_FEATURES, n_classes)
