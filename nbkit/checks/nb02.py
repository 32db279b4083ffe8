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
        # other shapes and learning rates: one sample and one unit, more inputs than samples
        Case(sizes={"N": 1, "n_in": 1, "n_out": 1, "lr": 0.5}), Case(sizes={"N": 7, "n_in": 2, "n_out": 3, "lr": 1e-3}),
        Case(sizes={"N": 3, "n_in": 6, "n_out": 2, "lr": 0.25}),
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
    if c.N > 1 and c.hidden > 2:
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
        # other shapes: more outputs than hidden units, one sample and one output
        Case(sizes={"N": 3, "hidden": 2, "out": 6}), Case(sizes={"N": 1, "hidden": 4, "out": 1}),
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
                       f"{np.round(f.cases[1].got['δ₁'][0], 6).tolist()} (by hand: (-0.02, 0.03)); the article's "
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


U = 2.0 ** -53  # float64's unit roundoff: rounding to nearest changes a value x by at most U·|x|


def sigmoid_example_tolerance(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact δ, tolerance) of δ = (σ(z) - y) σ(z) (1 - σ(z)) for any correctly derived float64 formula.

    Exact: every factor without cancellation, 1 - σ(z) as σ(-z) and, where y = 1, σ(z) - y as -σ(-z); each
    σ has a relative error of at most 2U, so this δ is within 6U of the true one (a test compares it with
    mpmath). Tolerance: a formula may compute s = σ(z) first, with an error of at most 2U (1.5U: 1 + e^-z and the
    division round once each), and then s - y and 1 - s exactly: those subtractions cancel (s ≈ 1 at z = 34), so
    the error of s comes through whole, ≤ 2U·|σ(1-σ)| from s - y and ≤ 2U·|(σ-y)σ| from 1 - s; the error of s as
    a factor and the two products add at most 4U·|δ|. First-order bound: 2U·(|σ(1-σ)| + |(σ-y)σ|) + 4U·|δ|.
    """
    s, t = _sigmoid(z), _sigmoid(-z)  # σ(z) and 1 - σ(z), each to full relative precision
    s_minus_y = np.where(y == 1, -t, s - y)
    exact = s_minus_y * s * t
    return exact, 2 * U * (np.abs(s * t) + np.abs(s_minus_y * s)) + 4 * U * np.abs(exact)


@exercise("02.3", "write sigmoid_example_gradients() returning (dW, db)")
def check_sigmoid_example(fn) -> None:
    """Exercise 02.3: the gradients of the article's 3→2 example with sigmoid in place of ReLU.

    Any correctly derived formula passes: the textbook ``(s - y) * s * (1 - s)``, the same with ``1 - s`` as
    σ(-z), the fully stable one, autograd. At z = 34 they differ by up to 7 % (s - y and 1 - s cancel where
    σ(z) ≈ 1), so the answer is compared with the exact δ within a tolerance derived from float64's rounding
    (:func:`sigmoid_example_tolerance`), which the ✓ states; a wrong derivative is off by far more.
    """
    dW, db = unpack(call_answer(fn, call="sigmoid_example_gradients()"), ("dW", "db"), "sigmoid_example_gradients()")
    X, W, b, Y = X0[0], W0, B0, Y0[0]
    z = W @ X + b
    shape_of("dW", dW, (2, 3), "∂L/∂W has the shape of W, (2, 3): δ xᵀ, an outer product.")
    shape_of("db", db, (2,), "∂L/∂b has the shape of b, (2,).")
    delta, tol = sigmoid_example_tolerance(z, Y)
    dW_tol = np.outer(tol + U * np.abs(delta), np.abs(X))  # and the rounding of δ_i x_k
    s = _sigmoid(z)
    compare("dW", dW, np.outer(delta, X), rtol=0, atol=dW_tol, causes=[
        (np.outer(s - Y, X), "you left out the sigmoid's derivative σ'(z) = σ(z)(1 - σ(z)) from δ."),
        (np.outer(np.maximum(z, 0) - Y, X), "that is the ReLU example's gradient: replace the ReLU by the sigmoid."),
        (np.outer((s - Y) * _sigmoid(s) * (1 - _sigmoid(s)), X),
         "σ'(z) = σ(z)(1 - σ(z)) uses s = σ(z) directly; you applied the sigmoid to s a second time."),
        (np.outer(delta, X) * -1, "the sign is flipped: ∂L/∂a = a - y."),
    ])
    compare("db", db, delta, rtol=0, atol=tol)
    got = np.asarray(db, dtype=np.float64)
    how = (f"compared with the exact δ within 2u·(|σ(1-σ)| + |(σ-y)σ|) + 4u·|δ| (u = 2^-53; {tol[1]:.2g} for δ₂, "
           f"{tol[1] / abs(delta[1]):.0%} of it): the float64 rounding of σ(z), which s - y and 1 - s pass on whole "
           "where they cancel, plus the products' roundings")
    off = abs(got[1] / delta[1] - 1)
    if off > 0.01:
        passed(f"correct formula: δ = {got[0]:.4g}, {got[1]:.4g}. Note: the exact δ₂ is {delta[1]:.4g}; yours is "
               f"{off:.0%} off: σ(34) comes out as 1 - 16·2^-53, 16 float64 steps below 1, because rounding "
               "1 + e^-34 to float64 (spacing 2^-52 above 1) changed the tiny e^-34 by a few percent; σ(34) - 1 and "
               "1 - σ(34) are exact subtractions that expose that error, and δ₂ multiplies two of them (one, if you "
               "computed 1 - σ as σ(-z)). Computing both as σ(-z) = 1 / (1 + e^z) (here s - y = -σ(-z), since y = 1) "
               f"keeps full precision. {how[0].upper()}{how[1:]}.")
        return
    passed(f"correct: δ = {got[0]:.4g}, {got[1]:.4g}. The sigmoid saturates at z = 15 and 34, so the gradient almost "
           f"vanishes. {how[0].upper()}{how[1:]}.")
