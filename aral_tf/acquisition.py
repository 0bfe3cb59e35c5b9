"""ARAL's acquisition (Alg. 1, line 2): query the b unlabeled images with the lowest S(E(x, C(x))).

`balance_classes` (our option, not the paper's) takes those lowest scores
round by round over C's predicted classes.

Nothing here takes labels: scoring sees only pool images and which indices
are already labeled.
"""

import numpy as np
import tensorflow as tf

from aral_tf.training import predict_in_batches


def unlabeled_indices(pool_size, labeled_indices):
    """Sorted pool indices that are not in `labeled_indices`."""
    mask = np.ones(pool_size, dtype=bool)
    mask[np.asarray(labeled_indices, dtype=np.int64)] = False
    return np.flatnonzero(mask).astype(np.int64)


def _checked(scores, candidate_indices, budget):
    """Scores and int64 candidate indices as arrays; ValueError if misaligned or the budget does not fit."""
    scores = np.asarray(scores)
    candidate_indices = np.asarray(candidate_indices, dtype=np.int64)
    if scores.shape != candidate_indices.shape:
        raise ValueError(f"{scores.shape[0]} scores for {candidate_indices.shape[0]} candidates")
    if not 0 < budget <= len(candidate_indices):
        raise ValueError(f"budget {budget} must be in 1..{len(candidate_indices)} (the unlabeled pool)")
    return scores, candidate_indices


def select_lowest(scores, candidate_indices, budget):
    """The `budget` candidates with the lowest scores, as pool indices (int64).

    `scores[i]` belongs to `candidate_indices[i]`. Ties go to the smaller pool
    index, so the choice is deterministic.
    """
    scores, candidate_indices = _checked(scores, candidate_indices, budget)
    order = np.lexsort((candidate_indices, scores))
    return candidate_indices[order[:budget]]


def select_lowest_per_class(scores, predicted_classes, candidate_indices, budget):
    """The lowest scores taken class by class: round r takes each predicted class's r-th lowest.

    Within a round, classes go in the order of those scores; a class with no
    candidates left drops out. `predicted_classes` are C's predictions, never
    pool labels. Ties go to the smaller pool index.
    """
    scores, candidate_indices = _checked(scores, candidate_indices, budget)
    predicted_classes = np.asarray(predicted_classes, dtype=np.int64)
    if predicted_classes.shape != candidate_indices.shape:
        raise ValueError(f"{predicted_classes.shape[0]} classes for {candidate_indices.shape[0]} candidates")
    by_class = np.lexsort((candidate_indices, scores, predicted_classes))
    sorted_classes = predicted_classes[by_class]
    rank_in_class = np.empty(len(by_class), dtype=np.int64)
    rank_in_class[by_class] = np.arange(len(by_class)) - np.searchsorted(sorted_classes, sorted_classes)
    order = np.lexsort((candidate_indices, scores, rank_in_class))
    return candidate_indices[order[:budget]]


def score_pool(model, images, indices, batch_size, verbose=False, strategy=None, with_classes=False):
    """S(E(x, C(x))) for `images[indices]`, aligned with `indices`; with C's predicted classes if asked.

    The pool streams through `strategy` one batch at a time (each batch split
    across its replicas); only the scores (and classes) are kept.
    """
    function = model.acquisition_scores
    if with_classes:
        def function(batch):
            probability, _, logits = model.acquisition_scores(batch)
            return tf.stack([probability, tf.cast(tf.argmax(logits, axis=-1), probability.dtype)], axis=-1)
    outputs = predict_in_batches(function, images, batch_size, indices=indices, verbose=verbose,
                                 unit_name="pool image", strategy=strategy)
    return (outputs[:, 0], outputs[:, 1].astype(np.int64)) if with_classes else outputs


def select_queries(model, images, labeled_indices, budget, batch_size, verbose=False, strategy=None,
                   balance_classes=False):
    """Pool indices to label next: the `budget` lowest S(E(x, C(x))) among unlabeled images.

    With `balance_classes`, the lowest scores are taken round by round over C's predicted classes
    (`select_lowest_per_class`); the model must then return C's logits from `acquisition_scores`.
    """
    candidates = unlabeled_indices(len(images), labeled_indices)
    if balance_classes:
        scores, classes = score_pool(model, images, candidates, batch_size, verbose=verbose, strategy=strategy,
                                     with_classes=True)
        return select_lowest_per_class(scores, classes, candidates, budget)
    scores = score_pool(model, images, candidates, batch_size, verbose=verbose, strategy=strategy)
    return select_lowest(scores, candidates, budget)
