import numpy as np

from uservec.training.evaluation.bags import binary_matrix


def test_binary_matrix_counts_repeated_events_once():
    matrix = binary_matrix(np.array([0, 0, 0, 2]), np.array([1, 1, 3, 0]), (3, 4))
    np.testing.assert_array_equal(matrix.toarray(), [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert binary_matrix(np.array([], int), np.array([], int), (2, 2)).nnz == 0
