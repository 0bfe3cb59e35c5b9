"""ARAL's acquisition (Alg. 1, line 2): query the b unlabeled images with the lowest S(E(x, C(x))).

Nothing here takes labels: scoring sees only pool images and which indices
are already labeled.
"""

import numpy as np

from aral_tf.training import predict_in_batches


def unlabeled_indices(pool_size, labeled_indices):
    """Sorted pool indices that are not in `labeled_indices`."""
    mask = np.ones(pool_size, dtype=bool)
    mask[np.asarray(labeled_indices, dtype=np.int64)] = False
    return np.flatnonzero(mask).astype(np.int64)


def select_lowest(scores, candidate_indices, budget):
    """The `budget` candidates with the lowest scores, as pool indices (int64).

    `scores[i]` belongs to `candidate_indices[i]`. Ties go to the smaller pool
    index, so the choice is deterministic.
    """
    scores = np.asarray(scores)
    candidate_indices = np.asarray(candidate_indices, dtype=np.int64)
    if scores.shape != candidate_indices.shape:
        raise ValueError(f"{scores.shape[0]} scores for {candidate_indices.shape[0]} candidates")
    if not 0 < budget <= len(candidate_indices):
        raise ValueError(f"budget {budget} must be in 1..{len(candidate_indices)} (the unlabeled pool)")
    order = np.lexsort((candidate_indices, scores))
    return candidate_indices[order[:budget]]


def score_pool(model, images, indices, batch_size, verbose=False, strategy=None):
    """S(E(x, C(x))) for `images[indices]`, aligned with `indices`.

    The pool streams through `strategy` one batch at a time (each batch split
    across its replicas); only the scores are kept.
    """
    return predict_in_batches(model.acquisition_scores, images, batch_size, indices=indices, verbose=verbose,
                              unit_name="pool image", strategy=strategy)


def select_queries(model, images, labeled_indices, budget, batch_size, verbose=False, strategy=None):
    """Pool indices to label next: the `budget` lowest S(E(x, C(x))) among unlabeled images."""
    candidates = unlabeled_indices(len(images), labeled_indices)
    scores = score_pool(model, images, candidates, batch_size, verbose=verbose, strategy=strategy)
    return select_lowest(scores, candidates, budget)
