"""A seeded generator of planted selection problems whose right answer is known.

``generate_problem(seed, kind)`` draws a fresh problem per seed, varying what
matters to a field selector (issue 14):

* ``kind="ctr"``: categorical fields (int64 ids) and a binary label drawn from
  a logistic model. 2-5 main-effect fields (vocabularies 3-60, or 100-400 for a
  zip-code-like field with a coarse and a fine effect; uniform or skewed value
  frequencies; effect scales 0.4-1.5 logits), with probability 1/2 one XOR-like
  interaction pair (even vocabularies 2-6, label effect from the parity of
  ``a + b``, so neither field has a marginal effect), 0-3 redundant fields
  attached to main effects (an exact copy, an exact re-coding by a random
  bijection, a partial copy equal to its source on 70-90% of rows, or a
  coarsening ``source // c`` like zip and its prefix), and noise fields of
  2-5,000 values (the first always 1,000-5,000: memorisable next to 10,000-16,000
  rows), so that there are 8-16 fields in all.
* ``kind="ctr_budget"``: the same kind of label for byte budgets (issue 14,
  item 4), where a table's size says nothing about its worth: 3-6 main-effect
  fields and 3-8 noise fields draw their vocabularies from one log-uniform
  range (3-4,000 and 2-4,000 values). A main effect of 200 values or more is,
  with probability 1/2, zip-like (a coarse and a fine effect) and comes with
  its coarsening as a field (``source // c``, c 5-50: part of the information
  for a fraction of the bytes); with probability 1/2 one main effect has an
  exact re-coding (a table that costs bytes and brings nothing new). No
  interaction pair (its members are tiny: no budget decision).
* ``kind="ctr_sparse"``: tabular data of the kind census-style sets hold
  (issue 14 saw it go wrong on one kept aside): 2-4 broad main effects
  (vocabularies 2-16, effect scales 0.5-1.5 logits), a sparse field that is
  0 on 88-97% of rows and elsewhere one of 20-120 rare values with large
  positive effects (1.5-3 logits, like a capital gain), its sparse sibling
  (nonzero on 2-6% of the rows where the first is 0, 20-100 values, effects
  of 0.5-1.5 logits of random sign), with probability 1/2 an exact re-coding
  of a broad field and with probability 1/2 a coarsening of one, an id-like
  noise field with 1.5-2 rows per value and 1-4 small noise fields (2-50
  values). The answer adds ``oracle_order``: the group sources in the order
  of greedy forward selection by the information each adds given the ones
  before, as far as the training rows can teach it (a ridge logistic model
  additive in the chosen fields, as the label's is, fitted to the training
  rows; the gain is the held-out rows' mean log-likelihood of their true
  probabilities over the training label rate's; ``oracle_information``:
  that gain after each pick), so a selector's first picks can be compared
  with the ones that carry the most.
* ``kind="least_squares"``: 8-16 standardized real columns (one scalar per
  field), 4-6 informative with coefficients of log-uniform size 0.3-3 and random
  sign, 1-2 decoys correlated 0.85-0.95 with an informative column (the first
  with the strongest), Gaussian noise columns and label noise 0.3-1.0. The
  answer is Orthogonal Matching Pursuit's order of the first 4 picks on the
  training rows.

Field names are anonymous (``f00``, ``f01``, ...) and shuffled, so neither name
nor position gives a field's role away. The answer is plain JSON-able data:

``groups``: one per informative unit; ``members`` maps each field of the group
to its relation to the group's ``source`` (``source``, ``copy``, ``recode``,
``partial``, ``coarsening``, ``decoy``); covering a group means selecting any
of its members. An interaction pair is two groups (both fields are needed).
``interactions``: the pairs. ``noise``: noise field -> cardinality (ctr) or
``None`` (least squares). ``k``: the signal budget (the number of groups for
ctr, 4 for least squares). Least squares adds ``omp_order`` and ``omp_margins``
(per step, the best OMP score over the runner-up's).

Rows ``[0, train_rows)`` are for training, the rest are held out
(``selection_data``). Needs numpy only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

KINDS = ("ctr", "ctr_budget", "ctr_sparse", "least_squares")
LEAST_SQUARES_K = 4
MIN_OMP_MARGIN = 1.04
# Members that hold all of a group's information (a source and its exact copies).
EQUIVALENT = ("source", "copy", "recode")


@dataclasses.dataclass
class Problem:
    kind: str
    seed: int
    features: dict[str, np.ndarray]
    labels: np.ndarray
    answer: dict[str, Any]
    train_rows: int

    @property
    def names(self) -> list[str]:
        return list(self.features)


def omp(x: np.ndarray, y: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Orthogonal Matching Pursuit on standardized columns: order and margins.

    Each margin is the chosen column's score |x_i . residual| over the best
    other candidate's, so 1.0 is a tie.
    """
    chosen, margins, residual = [], [], y.astype(np.float64)
    x = x.astype(np.float64)
    for _ in range(k):
        scores = np.abs(x.T @ residual)
        scores[chosen] = -1.0
        top = np.argsort(-scores)
        chosen.append(int(top[0]))
        margins.append(float(scores[top[0]] / max(scores[top[1]], 1e-12)))
        beta = np.linalg.lstsq(x[:, chosen], y, rcond=None)[0]
        residual = y - x[:, chosen] @ beta
    return chosen, margins


def _frequencies(rng: np.random.Generator, vocab: int) -> np.ndarray:
    """Uniform, or (probability 0.3) skewed like 1 / rank."""
    if vocab > 2 and rng.random() < 0.3:
        p = 1.0 / np.arange(1, vocab + 1)
        return rng.permutation(p / p.sum())
    return np.full(vocab, 1.0 / vocab)


def _draw(rng: np.random.Generator, vocab: int, n: int) -> tuple[np.ndarray, str]:
    p = _frequencies(rng, vocab)
    shape = "uniform" if np.allclose(p, p[0]) else "skewed"
    return rng.choice(vocab, size=n, p=p), shape


def _centred(effect: np.ndarray, values: np.ndarray) -> np.ndarray:
    return effect - effect[values].mean()


def _ctr_start(seed: int, stream: int) -> tuple[np.random.Generator, int, np.ndarray]:
    """A CTR-style problem's generator, row count and base logit."""
    rng = np.random.default_rng([seed, stream])
    n = int(rng.integers(10, 17)) * 1000
    return rng, n, np.full(n, rng.uniform(-1.5, 0.5))


def _effect(rng, values, vocab: int, scale: float, factor: int) -> np.ndarray:
    """Each row's centred logit effect of a main-effect field: one normal
    effect a value, or (``factor`` > 0, zip-like) a coarse one per
    ``values // factor`` plus a fine one of half the scale."""
    if factor:
        coarse = rng.normal(0, scale, vocab // factor + 1)[values // factor]
        effect = coarse + rng.normal(0, 0.5 * scale, vocab)[values]
    else:
        effect = rng.normal(0, scale, vocab)[values]
    return effect - effect.mean()


def _main_group(members: dict, vocab: int, shape: str, scale: float, effect) -> dict:
    """A main effect's entry of the answer."""
    return {
        "kind": "main",
        "members": members,
        "vocabulary": vocab,
        "frequencies": shape,
        "scale": scale,
        "logit_std": float(effect.std()),
    }


def _finish_ctr(kind, seed, rng, logit, fields, groups, interactions, noise):
    """Draws the labels from ``logit`` and finishes a CTR-style problem."""
    y = (rng.random(len(logit)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    cards = {i: role.get("noise") for i, (_, role) in enumerate(fields)}
    return _finish(
        kind,
        seed,
        rng,
        [f for f, _ in fields],
        y,
        groups,
        interactions,
        noise,
        cards,
        k=len(groups),
    )


def _ctr(seed: int) -> Problem:
    rng, n, logit = _ctr_start(seed, 0)
    fields: list[tuple[np.ndarray, dict]] = []  # (values, role)
    groups: list[dict] = []

    n_main = int(rng.integers(2, 6))
    n_redundant = int(rng.integers(0, 4))
    redundancy = list(rng.choice(["copy", "recode", "partial", "coarsening"], 3))
    # The first redundant field belongs to the main effect of the largest
    # scale (the trap of issue 14; its realised effect is not always the
    # largest); the others to random main effects.
    scales = np.sort(rng.uniform(0.4, 1.5, n_main))[::-1]
    owners = [0] + [int(rng.integers(0, n_main)) for _ in range(n_redundant - 1)]
    attach = {g: [] for g in range(n_main)}
    for owner, relation in zip(owners, redundancy[:n_redundant]):
        attach[owner].append(str(relation))

    for g in range(n_main):
        zip_like = "coarsening" in attach[g]
        if zip_like:
            vocab = int(rng.integers(10, 41)) * 10
        else:
            vocab = int(round(np.exp(rng.uniform(np.log(3), np.log(60)))))
        values, shape = _draw(rng, vocab, n)
        scale = float(scales[g])
        factor = int(rng.integers(5, 11)) if zip_like else 0
        effect = _effect(rng, values, vocab, scale, factor)
        logit += effect
        index = len(groups)
        members = {len(fields): "source"}
        fields.append((values, {"group": index}))
        for relation in attach[g]:
            if relation == "copy":
                copy = values.copy()
            elif relation == "recode":
                copy = rng.permutation(vocab)[values]
            elif relation == "partial":
                fraction = float(rng.uniform(0.7, 0.9))
                keep = rng.random(n) < fraction
                copy = np.where(keep, values, rng.integers(0, vocab, n))
                relation = f"partial:{fraction:.2f}"
            else:
                copy = values // factor
                relation = f"coarsening:{factor}"
            members[len(fields)] = relation
            fields.append((copy, {"group": index}))
        groups.append(_main_group(members, vocab, shape, scale, effect))

    interactions = []
    if rng.random() < 0.5:
        va, vb = (int(v) for v in rng.choice([2, 4, 6], 2))
        a, b = rng.integers(0, va, n), rng.integers(0, vb, n)
        strength = float(rng.uniform(0.8, 2.0))
        logit += strength * (2 * ((a + b) % 2) - 1)
        pair = []
        for values, vocab in ((a, va), (b, vb)):
            pair.append(len(fields))
            groups.append(
                {
                    "kind": "interaction",
                    "members": {len(fields): "source"},
                    "vocabulary": vocab,
                    "frequencies": "uniform",
                    "scale": strength,
                    "logit_std": strength,
                }
            )
            fields.append((values, {"group": len(groups) - 1}))
        interactions.append(pair)

    n_noise = int(rng.integers(2, 7))
    n_noise = int(np.clip(n_noise, 8 - len(fields), 16 - len(fields)))
    noise = []
    for j in range(n_noise):
        if j == 0:
            vocab = int(rng.integers(1000, 5001))
        else:
            vocab = int(round(np.exp(rng.uniform(np.log(2), np.log(5000)))))
        values, _ = _draw(rng, vocab, n)
        noise.append(len(fields))
        fields.append((values, {"noise": vocab}))

    return _finish_ctr("ctr", seed, rng, logit, fields, groups, interactions, noise)


def _log_uniform(rng: np.random.Generator, low: int, high: int) -> int:
    return int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))


def _ctr_budget(seed: int) -> Problem:
    rng, n, logit = _ctr_start(seed, 2)
    fields: list[tuple[np.ndarray, dict]] = []  # (values, role)
    groups: list[dict] = []

    n_main = int(rng.integers(3, 7))
    scales = np.sort(rng.uniform(0.4, 1.5, n_main))[::-1]
    recoded = int(rng.integers(0, n_main)) if rng.random() < 0.5 else None
    for g in range(n_main):
        vocab = _log_uniform(rng, 3, 4000)
        values, shape = _draw(rng, vocab, n)
        scale = float(scales[g])
        factor = _log_uniform(rng, 5, 50) if vocab >= 200 and rng.random() < 0.5 else 0
        effect = _effect(rng, values, vocab, scale, factor)
        logit += effect
        members = {len(fields): "source"}
        fields.append((values, {"group": len(groups)}))
        if factor:
            members[len(fields)] = f"coarsening:{factor}"
            fields.append((values // factor, {"group": len(groups)}))
        if g == recoded:
            members[len(fields)] = "recode"
            fields.append((rng.permutation(vocab)[values], {"group": len(groups)}))
        groups.append(_main_group(members, vocab, shape, scale, effect))

    noise = []
    for _ in range(int(rng.integers(3, 9))):
        vocab = _log_uniform(rng, 2, 4000)
        values, _ = _draw(rng, vocab, n)
        noise.append(len(fields))
        fields.append((values, {"noise": vocab}))

    return _finish_ctr("ctr_budget", seed, rng, logit, fields, groups, [], noise)


def _sparse_values(rng, n: int, rows: np.ndarray, vocab: int) -> np.ndarray:
    """0 outside ``rows`` (booleans); there one of the values 1..``vocab``,
    skewed like 1 / rank."""
    values = np.zeros(n, np.int64)
    p = rng.permutation(1.0 / np.arange(1, vocab + 1))
    values[rows] = 1 + rng.choice(vocab, size=int(rows.sum()), p=p / p.sum())
    return values


# The oracle's ridge penalty on each value's logit effect (a prior of
# variance 1: the planted effects are a few logits at most).
ORACLE_RIDGE = 1.0


def _information(
    columns: list[np.ndarray], y: np.ndarray, p: np.ndarray, fit: np.ndarray
) -> float:
    """What a logistic model additive in ``columns`` (one effect per value,
    ``ORACLE_RIDGE``-penalised, fitted by Newton's method to the ``fit``
    rows' labels ``y``) gains on the other rows: the mean log-likelihood of
    their true probabilities ``p`` under its predictions, less under the
    ``fit`` rows' label rate. A field of many rare values thus gains only
    what its rows can teach."""
    if not columns:
        return 0.0
    test = ~fit
    rate = float(y[fit].mean())

    def likelihood(q: np.ndarray) -> float:
        q = np.clip(q, 1e-6, 1 - 1e-6)
        return float(np.mean(p[test] * np.log(q) + (1 - p[test]) * np.log(1 - q)))

    base = likelihood(np.full(int(test.sum()), rate))
    blocks, offset = [], 0
    for column in columns:
        _, codes = np.unique(column, return_inverse=True)
        blocks.append(codes.reshape(-1) + offset)
        offset += int(codes.max()) + 1
    x = np.zeros((len(y), offset + 1))
    x[:, -1] = 1.0  # the intercept, not penalised
    for codes in blocks:
        x[np.arange(len(y)), codes] = 1.0
    penalty = np.full(offset + 1, ORACLE_RIDGE)
    penalty[-1] = 0.0
    w = np.zeros(offset + 1)
    w[-1] = np.log(rate / (1 - rate))
    xf, yf = x[fit], y[fit]
    for _ in range(25):
        q = 1 / (1 + np.exp(-(xf @ w)))
        gradient = xf.T @ (q - yf) + penalty * w
        hessian = (xf * (q * (1 - q))[:, None]).T @ xf + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return likelihood(1 / (1 + np.exp(-(x[test] @ w)))) - base


def _oracle_order(
    sources: list[np.ndarray], y: np.ndarray, p: np.ndarray, fit: np.ndarray
) -> tuple[list[int], list[float]]:
    """Greedy forward selection of ``sources`` by :func:`_information`: the
    order and the information after each pick."""
    order: list[int] = []
    information: list[float] = []
    while len(order) < len(sources):
        rest = [i for i in range(len(sources)) if i not in order]
        gains = [
            _information([sources[j] for j in order + [i]], y, p, fit) for i in rest
        ]
        order.append(rest[int(np.argmax(gains))])
        information.append(round(max(gains), 5))
    return order, information


def _ctr_sparse(seed: int) -> Problem:
    rng, n, logit = _ctr_start(seed, 3)
    fields: list[tuple[np.ndarray, dict]] = []  # (values, role)
    groups: list[dict] = []

    def add_group(values, effect, vocab, shape, scale, redundant=()):
        members = {len(fields): "source"}
        fields.append((values, {"group": len(groups)}))
        for relation, copy in redundant:
            members[len(fields)] = relation
            fields.append((copy, {"group": len(groups)}))
        groups.append(_main_group(members, vocab, shape, scale, effect))

    n_main = int(rng.integers(2, 5))
    scales = np.sort(rng.uniform(0.5, 1.5, n_main))[::-1]
    recoded = int(rng.integers(0, n_main)) if rng.random() < 0.5 else None
    coarsened = int(rng.integers(0, n_main)) if rng.random() < 0.5 else None
    for g in range(n_main):
        vocab = int(rng.integers(8 if g == coarsened else 2, 17))
        values, shape = _draw(rng, vocab, n)
        effect = _effect(rng, values, vocab, float(scales[g]), 0)
        logit += effect
        redundant = []
        if g == recoded:
            redundant.append(("recode", rng.permutation(vocab)[values]))
        if g == coarsened:
            factor = int(rng.integers(2, 5))
            redundant.append((f"coarsening:{factor}", values // factor))
        add_group(values, effect, vocab, shape, float(scales[g]), redundant)

    # The sparse field and its sibling: rare values with large effects.
    first_on = rng.random(n) < rng.uniform(0.03, 0.12)
    second_on = ~first_on & (rng.random(n) < rng.uniform(0.02, 0.06))
    for rows, (low, high), vocab, sign in (
        (first_on, (1.5, 3.0), int(rng.integers(20, 121)), 1.0),
        (second_on, (0.5, 1.5), int(rng.integers(20, 101)), None),
    ):
        values = _sparse_values(rng, n, rows, vocab)
        scale = float(rng.uniform(low, high))
        signs = rng.choice([-1.0, 1.0], vocab) if sign is None else sign
        table = np.concatenate(
            [[0.0], signs * np.abs(rng.normal(scale, 0.5 * scale, vocab))]
        )
        effect = _centred(table, values)[values]
        logit += effect
        add_group(values, effect, vocab + 1, "sparse", scale)
        groups[-1]["kind"] = "sparse"

    noise = []
    vocab = int(n / rng.uniform(1.5, 2.0))  # id-like: 1.5-2 rows per value
    noise_sizes = [vocab] + [
        _log_uniform(rng, 2, 50) for _ in range(int(rng.integers(1, 5)))
    ]
    for vocab in noise_sizes:
        values = rng.integers(0, vocab, n)
        noise.append(len(fields))
        fields.append((values, {"noise": vocab}))

    sources = [fields[next(iter(g["members"]))][0] for g in groups]
    problem = _finish_ctr("ctr_sparse", seed, rng, logit, fields, groups, [], noise)
    fit = np.arange(n) < problem.train_rows
    oracle, information = _oracle_order(
        sources, problem.labels, 1 / (1 + np.exp(-logit)), fit
    )
    problem.answer["oracle_order"] = [
        problem.answer["groups"][i]["source"] for i in oracle
    ]
    problem.answer["oracle_information"] = information
    return problem


def _least_squares(seed: int) -> Problem:
    rng = np.random.default_rng([seed, 1])
    # Redrawn (at most 20 times) until every OMP step has a clear winner (a
    # margin of 1.04: a decoy of correlation 0.95 leaves about 1.05), so the
    # order to compare with is well defined.
    attempts = 0
    while True:
        attempts += 1
        problem = _least_squares_draw(seed, rng)
        if attempts == 20 or min(problem.answer["omp_margins"]) >= MIN_OMP_MARGIN:
            break
    problem.answer["attempts"] = attempts
    return problem


def _least_squares_draw(seed: int, rng: np.random.Generator) -> Problem:
    n = int(rng.integers(8, 13)) * 1000
    p = int(rng.integers(8, 17))
    n_inf = int(rng.integers(4, 7))
    n_decoy = int(rng.integers(1, 3))
    x = rng.normal(size=(n, p))
    sizes = np.sort(np.exp(rng.uniform(np.log(0.3), np.log(3.0), n_inf)))[::-1]
    coef = np.zeros(p)
    coef[:n_inf] = sizes * rng.choice([-1.0, 1.0], n_inf)
    groups = [
        {"kind": "main", "members": {i: "source"}, "coefficient": float(coef[i])}
        for i in range(n_inf)
    ]
    for d in range(n_decoy):
        column = n_inf + d
        source = 0 if d == 0 else int(rng.integers(0, n_inf))
        rho = float(rng.uniform(0.85, 0.95))
        x[:, column] = rho * x[:, source] + np.sqrt(1 - rho**2) * x[:, column]
        groups[source]["members"][column] = f"decoy:{rho:.2f}"
    sigma = float(rng.uniform(0.3, 1.0))
    y = x @ coef + sigma * rng.normal(size=n)
    x = (x - x.mean(0)) / x.std(0)
    noise = list(range(n_inf + n_decoy, p))
    columns = [x[:, i].astype(np.float32) for i in range(p)]
    cards = {i: None for i in range(p)}
    problem = _finish(
        "least_squares",
        seed,
        rng,
        columns,
        y.astype(np.float32),
        groups,
        [],
        noise,
        cards,
        k=LEAST_SQUARES_K,
    )
    names = problem.names
    train = slice(0, problem.train_rows)
    matrix = np.stack([problem.features[f][train] for f in names], 1)
    order, margins = omp(matrix, problem.labels[train], LEAST_SQUARES_K)
    problem.answer["omp_order"] = [names[i] for i in order]
    problem.answer["omp_margins"] = margins
    problem.answer["label_noise"] = sigma
    return problem


def _finish(kind, seed, rng, columns, y, groups, interactions, noise, cards, k):
    """Shuffles and names the fields, and writes the answer by name."""
    order = rng.permutation(len(columns))
    name = {int(i): f"f{j:02d}" for j, i in enumerate(order)}
    features = {name[int(i)]: columns[int(i)] for i in order}
    if kind != "least_squares":
        features = {f: v.astype(np.int64) for f, v in features.items()}
    for group in groups:
        group["members"] = {name[i]: rel for i, rel in group["members"].items()}
        group["source"] = next(f for f, r in group["members"].items() if r == "source")
    answer = {
        "kind": kind,
        "seed": seed,
        "k": k,
        "groups": groups,
        "interactions": [[name[a], name[b]] for a, b in interactions],
        "noise": {name[i]: cards[i] for i in noise},
    }
    return Problem(kind, seed, features, y, answer, int(0.8 * len(y)))


def generate_problem(seed: int, kind: str = "ctr") -> Problem:
    """A planted problem drawn from ``seed`` (deterministic per seed and kind)."""
    if kind == "ctr":
        return _ctr(seed)
    if kind == "ctr_budget":
        return _ctr_budget(seed)
    if kind == "ctr_sparse":
        return _ctr_sparse(seed)
    if kind == "least_squares":
        return _least_squares(seed)
    raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")


def score_picks(answer: dict, order: list[str]) -> dict:
    """Quality of a pick order within the signal budget ``answer["k"]``.

    ``all_informative``: no noise pick among the first k. ``all_groups``: the
    first k picks cover every group (the right answer).
    ``redundant_while_missing``: a pick from an already covered group while
    another group is still missing (within k picks, any redundant pick is one).
    ``strictly_redundant_while_missing``: only picks taken after the source or
    an exact copy of it (not the source after its coarsening or partial copy,
    which adds information). ``noise_picks``: noise fields among the first k.
    ``missed``: the groups not covered, by source name and
    kind. Least squares adds OMP order and set agreement; an answer with an
    ``oracle_order`` (``ctr_sparse``) adds whether the first pick, and the
    first two, cover the oracle's first groups.
    """
    k = answer["k"]
    picks = list(order[:k])
    group_of = {f: i for i, g in enumerate(answer["groups"]) for f in g["members"]}
    covered: set[int] = set()
    redundant, strict = [], []
    taken: dict[int, list[str]] = {}
    for field in picks:
        if field not in group_of:
            continue
        g = group_of[field]
        if g in covered and len(covered) < len(answer["groups"]):
            redundant.append(field)
            # Strictly redundant: its information is (nearly) all in a member
            # already taken, i.e. a source-equivalent member was taken before.
            members = answer["groups"][g]["members"]
            if any(members[f].split(":")[0] in EQUIVALENT for f in taken[g]):
                strict.append(field)
        covered.add(g)
        taken.setdefault(g, []).append(field)
    noise = [f for f in picks if f in answer["noise"]]
    result = {
        "k": k,
        "picks": picks,
        "noise_picks": len(noise),
        "all_informative": not noise,
        "redundant_picks": len(redundant),
        "redundant_while_missing": bool(redundant),
        "strictly_redundant_while_missing": bool(strict),
    }
    if answer["kind"] == "least_squares":
        expected = answer["omp_order"]
        result["omp_order_agrees"] = picks == expected
        result["omp_set_agrees"] = set(picks) == set(expected)
        result["first_pick_agrees"] = picks[:1] == expected[:1]
        result["decoy_picks"] = sum(
            answer["groups"][group_of[f]]["members"][f].startswith("decoy")
            for f in picks
            if f in group_of
        )
        return result
    if "oracle_order" in answer:
        oracle = [group_of[f] for f in answer["oracle_order"]]
        chosen = [group_of.get(f) for f in order]
        result["first_pick_agrees"] = chosen[:1] == oracle[:1]
        result["first_two_agree"] = set(chosen[:2]) == set(oracle[:2])
    result["all_groups"] = len(covered) == len(answer["groups"])
    result["missed"] = [
        {"source": g["source"], "kind": g["kind"], "logit_std": g["logit_std"]}
        for i, g in enumerate(answer["groups"])
        if i not in covered
    ]
    result["non_source_picks"] = [
        {"field": f, "relation": answer["groups"][group_of[f]]["members"][f]}
        for f in picks
        if f in group_of and answer["groups"][group_of[f]]["members"][f] != "source"
    ]
    return result


def describe(answer: dict) -> str:
    """One line: the groups with their relations, interactions and noise sizes."""
    parts = []
    for g in answer["groups"]:
        members = ",".join(f"{f}:{r}" for f, r in g["members"].items())
        strength = g.get("logit_std", g.get("coefficient"))
        parts.append(f"{g['kind']}({members}; {strength:.2f})")
    noise = ",".join(f"{f}:{c}" if c else f for f, c in answer["noise"].items())
    return " ".join(parts) + f" noise({noise})"
