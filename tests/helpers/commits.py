"""Looks at a gated layer's round just before each commit."""


def before_each_commit(layer, look):
    """Wraps ``layer.commit_round`` so that ``look(layer)`` runs first (the
    round's evidence is reset by the commit)."""
    commit = layer.commit_round

    def looked(*args, **kwargs):
        look(layer)
        return commit(*args, **kwargs)

    layer.commit_round = looked
