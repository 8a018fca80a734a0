"""The planted-problem generator (benchmarks/generator.py): no training here."""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from generator import (  # noqa: E402
    LEAST_SQUARES_K,
    MIN_OMP_MARGIN,
    generate_problem,
    omp,
    score_picks,
)
from planted import omp_order  # noqa: E402

SEEDS = range(8)


@pytest.mark.parametrize("kind", ["ctr", "ctr_budget", "ctr_sparse", "least_squares"])
def test_deterministic_per_seed(kind):
    a, b = generate_problem(3, kind), generate_problem(3, kind)
    assert a.names == b.names and a.answer == b.answer
    assert np.array_equal(a.labels, b.labels)
    for name in a.names:
        assert np.array_equal(a.features[name], b.features[name])


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        generate_problem(0, "regression")


@pytest.mark.parametrize(
    "kind, expected_relations",
    [
        ("ctr", {"source", "copy", "recode", "partial", "coarsening"}),
        ("ctr_budget", {"source", "recode", "coarsening"}),
    ],
)
def test_ctr_answer_is_consistent(kind, expected_relations):
    relations = set()
    for seed in SEEDS:
        p = generate_problem(seed, kind)
        assert 8 <= len(p.names) <= 16
        assert all(v.dtype == np.int64 for v in p.features.values())
        assert set(np.unique(p.labels)) <= {0.0, 1.0}
        assert p.answer["k"] == len(p.answer["groups"])
        roles = [f for g in p.answer["groups"] for f in g["members"]]
        roles += list(p.answer["noise"])
        assert sorted(roles) == sorted(p.names)  # every field has one role
        for group in p.answer["groups"]:
            source = p.features[group["source"]]
            for name, relation in group["members"].items():
                relations.add(relation.split(":")[0])
                field = p.features[name]
                if relation == "copy":
                    assert np.array_equal(field, source)
                if relation in ("recode",) or relation.startswith("coarsening"):
                    # A function of the source: one value per source value.
                    pairs = np.unique(np.stack([source, field]), axis=1)
                    assert len(pairs[0]) == len(np.unique(pairs[0]))
                if relation == "recode":  # and a bijection
                    assert len(np.unique(field)) == len(np.unique(source))
                if relation.startswith("coarsening"):
                    assert len(np.unique(field)) < len(np.unique(source))
                if relation.startswith("partial"):
                    share = float(relation.split(":")[1])
                    assert abs(np.mean(field == source) - share) < 0.05
        for a, b in p.answer["interactions"]:
            # No marginal effect: the label rate is flat over either field.
            for name in (a, b):
                values = p.features[name]
                rates = [p.labels[values == v].mean() for v in np.unique(values)]
                assert np.ptp(rates) < 0.06
        for name, cardinality in p.answer["noise"].items():
            assert p.features[name].max() < cardinality
    assert relations == expected_relations


def test_ctr_budget_sizes_say_nothing_about_worth():
    """In the budget family the largest table is informative in some problems
    and noise in others, and so is the smallest: a size sort is no oracle."""
    largest, smallest = set(), set()
    for seed in SEEDS:
        p = generate_problem(seed, "ctr_budget")
        size = {name: int(v.max()) + 1 for name, v in p.features.items()}
        for chosen, pick in ((largest, max), (smallest, min)):
            name = pick(size, key=size.get)
            chosen.add("noise" if name in p.answer["noise"] else "informative")
        assert not p.answer["interactions"]
        assert 3 <= len(p.answer["groups"]) <= 6 and 3 <= len(p.answer["noise"]) <= 8
    assert largest == smallest == {"noise", "informative"}


def test_ctr_sparse_has_rare_large_effects_an_id_like_field_and_an_oracle():
    """The census-like family: a field that is 0 on most rows with large
    effects elsewhere and its sibling, nonzero on other rows; an id-like noise
    field; and an oracle order whose information grows with every pick and
    ranks a sparse field first in some problems and later in others."""
    sparse_first = set()
    for seed in SEEDS:
        p = generate_problem(seed, "ctr_sparse")
        assert 6 <= len(p.names) <= 16 and p.answer["k"] == len(p.answer["groups"])
        roles = [f for g in p.answer["groups"] for f in g["members"]]
        assert sorted(roles + list(p.answer["noise"])) == sorted(p.names)
        first, sibling = (
            p.features[g["source"]] for g in p.answer["groups"] if g["kind"] == "sparse"
        )
        assert 0.88 <= np.mean(first == 0) <= 0.97
        assert not np.any((first != 0) & (sibling != 0))
        # Large effects: the label rate rises where the field is not 0.
        assert p.labels[first != 0].mean() > p.labels[first == 0].mean() + 0.15
        largest = max(p.answer["noise"].values())
        assert 1.5 <= len(p.labels) / largest <= 2.0  # the id-like field
        information = p.answer["oracle_information"]
        assert all(b > a for a, b in zip(information, information[1:]))
        sources = {g["source"]: g["kind"] for g in p.answer["groups"]}
        assert sorted(p.answer["oracle_order"]) == sorted(sources)
        sparse_first.add(sources[p.answer["oracle_order"][0]])
    assert sparse_first == {"sparse", "main"}


def test_oracle_agreement_scores_groups_not_fields():
    p = generate_problem(0, "ctr_sparse")  # f01, then f03 (re-coded by f05)
    assert p.answer["oracle_order"][:2] == ["f01", "f03"]
    assert score_picks(p.answer, ["f01", "f05"])["first_pick_agrees"]
    assert score_picks(p.answer, ["f05", "f01"])["first_two_agree"]
    assert not score_picks(p.answer, ["f05", "f01"])["first_pick_agrees"]
    assert not score_picks(p.answer, ["f01", "f04"])["first_two_agree"]


def chi_square(values, labels):
    """Pearson's statistic of labels against values, and its degrees of freedom."""
    table = np.zeros((values.max() + 1, 2))
    np.add.at(table, (values, labels.astype(int)), 1)
    table = table[table.sum(1) > 0]
    expected = table.sum(1, keepdims=True) * table.sum(0) / table.sum()
    return ((table - expected) ** 2 / expected).sum(), len(table) - 1


def test_ctr_noise_is_independent_of_the_label():
    """Noise fields are drawn apart from the label: the chi-square statistic of
    each small noise field against the label stays within 6 standard deviations
    of its mean under independence (df, sd sqrt(2 df)); a main effect's does not."""
    tested = 0
    for seed in SEEDS:
        p = generate_problem(seed, "ctr")
        for name, cardinality in p.answer["noise"].items():
            if cardinality <= 50:
                statistic, df = chi_square(p.features[name], p.labels)
                assert statistic < df + 6 * np.sqrt(2 * df), (seed, name)
                tested += 1
    assert tested >= 4
    p = generate_problem(0, "ctr")
    strongest = max(p.answer["groups"], key=lambda g: g["logit_std"])["source"]
    statistic, df = chi_square(p.features[strongest], p.labels)
    assert statistic > df + 20 * np.sqrt(2 * df)


def test_least_squares_answer_is_omp():
    for seed in SEEDS:
        p = generate_problem(seed, "least_squares")
        names, train = p.names, slice(0, p.train_rows)
        x = np.stack([p.features[f][train] for f in names], 1)
        assert np.allclose(x.std(0), 1.0, atol=0.05)
        expected = [names[i] for i in omp_order(x, p.labels[train], LEAST_SQUARES_K)]
        assert p.answer["omp_order"] == expected
        assert min(p.answer["omp_margins"]) >= MIN_OMP_MARGIN
        assert p.answer["k"] == LEAST_SQUARES_K
        for group in p.answer["groups"]:
            for name, relation in group["members"].items():
                if relation.startswith("decoy"):
                    r = np.corrcoef(p.features[name], p.features[group["source"]])
                    assert 0.8 < r[0, 1] < 0.97
        assert score_picks(p.answer, expected)["omp_order_agrees"]


def test_omp_margin_is_one_on_a_tie():
    x = np.eye(4)[:, :3].repeat(2, 0)
    order, margins = omp(x, x[:, 0] + x[:, 1], 1)
    assert margins == [1.0]


def test_problems_vary_across_seeds():
    ctr = [generate_problem(s, "ctr") for s in SEEDS]
    assert len({p.answer["k"] for p in ctr}) >= 3
    assert len({len(p.names) for p in ctr}) >= 3
    assert len({len(p.labels) for p in ctr}) >= 3
    assert any(p.answer["interactions"] for p in ctr)
    assert not all(p.answer["interactions"] for p in ctr)
    cards = [c for p in ctr for c in p.answer["noise"].values()]
    assert min(cards) < 20 and max(cards) >= 1000
    ls = [generate_problem(s, "least_squares") for s in SEEDS]
    assert len({len(p.names) for p in ls}) >= 3
    assert len({tuple(p.answer["omp_order"]) for p in ls}) >= 5


def test_score_picks():
    p = generate_problem(4, "ctr")  # two groups with a coarsening, one copy
    groups = p.answer["groups"]
    sources = [g["source"] for g in groups]
    perfect = score_picks(p.answer, sources)
    assert perfect["all_groups"] and perfect["all_informative"]
    assert not perfect["redundant_while_missing"]
    copied = next(g for g in groups if len(g["members"]) > 1)
    assert copied["members"] == {"f11": "source", "f12": "coarsening:10"}
    other = next(f for f in copied["members"] if f != copied["source"])
    noise = next(iter(p.answer["noise"]))
    rest = [s for s in sources if s != copied["source"]]
    scored = score_picks(p.answer, [copied["source"], other, noise, *rest])
    assert scored["redundant_while_missing"] and scored["noise_picks"] == 1
    assert not scored["all_groups"] and len(scored["missed"]) == 2
    assert scored["strictly_redundant_while_missing"]  # taken after its source
    # The source after its coarsening adds information: redundant, not strictly.
    scored = score_picks(p.answer, [other, copied["source"], *rest])
    assert scored["redundant_while_missing"]
    assert not scored["strictly_redundant_while_missing"]
