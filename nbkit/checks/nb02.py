"""Checks for notebook 02 (the worked 3→2 example)."""

from __future__ import annotations

import numpy as np

from nbkit.checks._answers import call_answer, shape_of, unpack
from nbkit.checks._core import compare, exercise, passed
from nbkit.checks.exercise import Attempt, Case, FunctionExercise, equals

# The article's example (seed 000, §4.2): one sample as a row, W (out, in), L = ½ Σ (a - y)².
X0 = np.array([[1.0, 2.0, 3.0]])
W0 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
B0 = np.array([1.0, 2.0])
Y0 = np.array([[0.0, 1.0]])


def _relu_layer_step(X, Y, W, b, lr):
    """One SGD step of L = ½ Σ (ReLU(X Wᵀ + b) - Y)²; also returns the gradients and the ReLU mask."""
    Z = X @ W.T + b
    delta = (np.maximum(Z, 0) - Y) * (Z > 0)
    dW, db = delta.T @ X, delta.sum(axis=0)
    return W - lr * dW, b - lr * db, dW, db, Z


def _step(a: Attempt) -> tuple:
    return _relu_layer_step(a.X, a.Y, a.W, a.b, a.lr)


def _delta_without_mask(a: Attempt) -> np.ndarray:
    return np.maximum(_step(a)[4], 0) - a.Y


GRADIENT_DESCENT_STEP = FunctionExercise(
    number="02.1", task="write gradient_descent_step(X, Y, W, b, lr)", call="gradient_descent_step(X, Y, W, b, lr)",
    outputs=("W_new", "b_new"),
    inputs=lambda rng, c: {"X": rng.standard_normal((c.N, c.n_in)), "Y": rng.standard_normal((c.N, c.n_out)),
                           "W": rng.standard_normal((c.n_out, c.n_in)), "b": rng.standard_normal(c.n_out) - 0.5,
                           "lr": c.lr},
    reference=lambda X, Y, W, b, lr: _relu_layer_step(X, Y, W, b, lr)[:2],
    cases=(
        Case(data={"X": X0, "Y": Y0, "W": W0, "b": B0, "lr": 0.01}),  # the article's example: every unit active
        Case(sizes={"N": 5, "n_in": 3, "n_out": 4, "lr": 0.1}),  # a batch where some units are off (z < 0)
    ),
    seed=21,
    shapes={"W_new": lambda a: f"the new W has the shape of W, {a.W.shape}; dW = δᵀ X (δ is (N, out)), not Xᵀ δ.",
            "b_new": lambda a: f"the new b has the shape of b, {a.b.shape}: db = δ summed over the batch (axis 0)."},
    causes=(
        equals(lambda a: a.W + a.lr * _step(a)[2], "you stepped uphill: gradient descent subtracts, "
                                                   "θ ← θ - lr · ∂L/∂θ.", output="W_new"),
        equals(lambda a: a.W - a.lr * (_delta_without_mask(a).T @ a.X),
               "you left out ReLU'(z): a unit that is off (z ≤ 0) passes no gradient, so δ = (a - y) ⊙ [z > 0].",
               output="W_new"),
        equals(lambda a: a.W - a.lr * _step(a)[2] / len(a.X),
               lambda a: f"you divided by N = {len(a.X)}: this loss is ½ Σ (a - y)², a sum, not a mean.",
               output="W_new"),
        equals(lambda a: a.W, "W did not change: return the updated W_new = W - lr * dW.", output="W_new"),
        equals(lambda a: a.W - _step(a)[2], "the learning rate is missing: W_new = W - lr * dW.", output="W_new"),
        equals(lambda a: a.b + a.lr * _step(a)[3], "you stepped uphill: b ← b - lr · ∂L/∂b.", output="b_new"),
        equals(lambda a: a.b - a.lr * _delta_without_mask(a).sum(0), "you left out ReLU'(z) in δ for b.",
               output="b_new"),
        equals(lambda a: a.b - a.lr * _step(a)[3] / len(a.X),
               lambda a: f"you divided by N = {len(a.X)}: the loss is a sum, not a mean.", output="b_new"),
        equals(lambda a: a.b, "b did not change: the bias takes a step too, b_new = b - lr * db.", output="b_new"),
    ),
    success=lambda f: (f"one step with lr = 0.01 turns W into {np.round(f.cases[0].want['W_new'], 6).tolist()} and b "
                       f"into {np.round(f.cases[0].want['b_new'], 6).tolist()}; correct on the article's example and "
                       "on a batch with inactive units."),
)


def check_gradient_descent_step(fn) -> None:
    """Exercise 02.1: one gradient-descent step of the article's ReLU layer, returning ``(W_new, b_new)``.

    Checked on the article's numbers (every unit active) and on a batch of 5 samples, 4 outputs, where
    some units are off (z < 0): there the ReLU's derivative matters, and the batch sum too.
    """
    GRADIENT_DESCENT_STEP.check(fn)


# ------------------------------------------------------------------------------------------------ 02.2


def _hidden_delta_inputs(rng: np.random.Generator, c: Case) -> dict[str, np.ndarray]:
    inputs = {"delta2": rng.standard_normal((c.N, c.out)), "W2": rng.standard_normal((c.out, c.hidden)),
              "Z1": rng.standard_normal((c.N, c.hidden))}
    inputs["Z1"][1, 2] = 0.0  # ReLU'(0) = 0, as in PyTorch
    return inputs


def _delta1_shape_meaning(a: Attempt) -> str:
    if np.shape(a.got) == a.delta2.shape:
        return ("that is the shape of δ₂, but δ₁ has the shape of Z₁. That is the article's error: it wrote "
                "δ₁ = δ₂ · ReLU'(Z₂), staying at the output layer. Going back through a layer multiplies by its "
                "weights (δ₂ W₂ in rows, W₂ᵀ δ₂ in columns), then by the derivative of the *earlier* activation, "
                "ReLU'(Z₁).")
    return "δ₁ = ∂L/∂Z₁ has the shape of Z₁, (N, hidden)."


HIDDEN_DELTA = FunctionExercise(
    number="02.2", task="write hidden_delta(delta2, W2, Z1)", call="hidden_delta(delta2, W2, Z1)", outputs=("δ₁",),
    inputs=_hidden_delta_inputs,
    reference=lambda delta2, W2, Z1: (delta2 @ W2) * (Z1 > 0),
    cases=(
        Case(sizes={"N": 4, "hidden": 5, "out": 3}),  # W₂ and its transpose cannot be confused
        Case(data={"delta2": np.array([[0.1, 0.4]]), "W2": np.array([[0.2, -0.1], [-0.1, 0.1]]),
                   "Z1": np.array([[15.0, 34.0]])}),  # section 3's two-layer example
    ),
    seed=22,
    rtol=1e-9, atol=1e-12,
    hint=lambda exc, line, inputs, fn: (f"Shapes: delta2 {inputs['delta2'].shape} (N, out), W2 {inputs['W2'].shape} "
                                        f"(out, hidden), Z1 {inputs['Z1'].shape}; in rows, going back through the "
                                        "layer is delta2 @ W2."),
    shapes={"δ₁": _delta1_shape_meaning},
    causes=(
        equals(lambda a: a.delta2 @ a.W2, "you left out ReLU'(Z₁): hidden units that were off in the forward pass "
                                          "(z₁ ≤ 0) pass no gradient."),
        equals(lambda a: (a.delta2 @ a.W2) * (a.Z1 >= 0), "ReLU'(0) is taken as 0 (as in PyTorch), so use Z1 > 0, not "
                                                          "Z1 >= 0: element [1, 2] has z₁ = 0 exactly."),
        equals(lambda a: -(a.delta2 @ a.W2) * (a.Z1 > 0), "the sign is flipped: δ₁ = (δ₂ W₂) ⊙ ReLU'(Z₁)."),
    ),
    success=lambda f: (f"δ₁ = (δ₂ W₂) ⊙ ReLU'(Z₁) is correct. On section 3's two-layer example it gives δ₁ = "
                       f"{np.round(f.cases[-1].got['δ₁'][0], 6).tolist()} (by hand: (-0.02, 0.03)); the article's "
                       "δ₂ · ReLU'(Z₂) has the wrong shape and skips the weights."),
)


def check_hidden_delta(fn) -> None:
    """Exercise 02.2: δ₁ = (δ₂ W₂) ⊙ ReLU'(Z₁), samples as rows: the step the article got wrong.

    Checked on a batch of 4 with 5 hidden and 3 output units, with some hidden units off and one exactly at
    z = 0 (ReLU'(0) = 0, as in PyTorch), then on section 3's two-layer example, whose result the ✓ line shows.
    """
    HIDDEN_DELTA.check(fn)


# ------------------------------------------------------------------------------------------------ 02.3


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow for large |z|."""
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


@exercise("02.3", "write sigmoid_example_gradients() returning (dW, db)")
def check_sigmoid_example(fn) -> None:
    """Exercise 02.3: the gradients of the article's 3→2 example with sigmoid in place of ReLU.

    The expected δ uses σ'(z) = σ(z) σ(-z), which keeps full relative precision where σ(z) ≈ 1;
    ``s * (1 - s)`` cancels there (at z = 34 it is wrong by 7 %), so it must not be the reference.
    The textbook formula is accepted too, with a note on the cancellation.
    """
    dW, db = unpack(call_answer(fn, call="sigmoid_example_gradients()"), ("dW", "db"), "sigmoid_example_gradients()")
    X, W, b, Y = X0[0], W0, B0, Y0[0]
    z = W @ X + b
    s = _sigmoid(z)
    delta = (s - Y) * s * _sigmoid(-z)
    # (s - Y) itself cancels for the second output (s ≈ 1 = Y): 1 - σ(34) is computed as σ(-34).
    delta[1] = -_sigmoid(-z[1]) * s[1] * _sigmoid(-z[1])
    shape_of("dW", dW, (2, 3), "∂L/∂W has the shape of W, (2, 3): δ xᵀ, an outer product.")
    shape_of("db", db, (2,), "∂L/∂b has the shape of b, (2,).")
    s_naive = 1 / (1 + np.exp(-z))
    naive = (s_naive - Y) * s_naive * (1 - s_naive)  # the textbook formula, as a learner writes it
    if np.allclose(dW, np.outer(naive, X), rtol=1e-6, atol=1e-300):
        compare("db", db, naive, rtol=1e-6, atol=1e-300)
        passed(f"correct formula: δ = {naive[0]:.4g}, {naive[1]:.4g}. Note: the exact δ₂ is {delta[1]:.4g}; yours is "
               f"{abs(naive[1] / delta[1] - 1):.0%} off: σ(34) comes out as 1 - 16·2^-53, 16 float64 steps below 1, "
               "because rounding 1 + e^-34 to float64 (spacing 2^-52 above 1) changed the tiny e^-34 by a few percent; "
               "σ(34) - 1 and 1 - σ(34) are exact subtractions that expose that error, and δ₂ multiplies two of them. "
               "Computing 1 - σ(z) as σ(-z) = 1 / (1 + e^z) keeps full precision.")
        return
    relu_delta = np.maximum(z, 0) - Y
    compare("dW", dW, np.outer(delta, X), rtol=1e-6, atol=1e-300, causes=[
        (np.outer(s - Y, X), "you left out the sigmoid's derivative σ'(z) = σ(z)(1 - σ(z)) from δ."),
        (np.outer(relu_delta, X), "that is the ReLU example's gradient: replace the ReLU by the sigmoid."),
        (np.outer((s - Y) * _sigmoid(s) * (1 - _sigmoid(s)), X),
         "σ'(z) = σ(z)(1 - σ(z)) uses s = σ(z) directly; you applied the sigmoid to s a second time."),
        (np.outer(delta, X) * -1, "the sign is flipped: ∂L/∂a = a - y."),
    ])
    compare("db", db, delta, rtol=1e-6, atol=1e-300)
    passed(f"correct: δ = {delta[0]:.4g}, {delta[1]:.4g}. The sigmoid saturates at z = 15 and 34, so the "
           "gradient almost vanishes.")
