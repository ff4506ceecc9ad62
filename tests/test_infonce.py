import math

import pytest
import torch

from training.infonce import info_nce, info_nce_from_scores

# Rows are queries, columns passages; the diagonal holds the positives.
S = [[0.9, 0.1, 0.2, 0.0], [0.3, 0.8, 0.1, 0.2], [0.0, 0.4, 0.7, 0.5], [0.2, 0.2, 0.6, 0.6]]


def by_hand(matrix, tau):
    total = 0.0
    for i, row in enumerate(matrix):
        denominator = sum(math.exp(s / tau) for s in row)
        total += -math.log(math.exp(row[i] / tau) / denominator)
    return total / len(matrix)


@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0])
def test_loss_matches_hand_computation(tau):
    assert info_nce_from_scores(torch.tensor(S), tau).item() == pytest.approx(by_hand(S, tau), rel=1e-5)


def test_symmetric_term_averages_both_directions():
    transposed = [list(col) for col in zip(*S)]
    expected = (by_hand(S, 0.05) + by_hand(transposed, 0.05)) / 2
    assert info_nce_from_scores(torch.tensor(S), 0.05, symmetric=True).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_hard_negative_columns_enter_the_denominator_only():
    with_negative = [row + [0.85] for row in S]
    loss = info_nce_from_scores(torch.tensor(with_negative), 0.05).item()
    assert loss == pytest.approx(by_hand(with_negative, 0.05), rel=1e-5)
    assert loss > by_hand(S, 0.05)


def test_embeddings_use_cosine_similarity():
    q = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    assert info_nce(q, p, 0.5).item() == pytest.approx(by_hand([[1, 0], [0, 1]], 0.5), rel=1e-5)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        info_nce_from_scores(torch.tensor(S), 0.0)


def test_matryoshka_is_the_sum_of_per_prefix_losses():
    import torch.nn.functional as F

    from training.losses import Batch, InfoNCE, Matryoshka

    torch.manual_seed(0)
    q, p = torch.randn(6, 32), torch.randn(6, 32)
    inner = InfoNCE(0.05)
    got = Matryoshka(inner, [32, 16, 8, 16])(q, p, Batch([]))  # a repeated size counts once
    want = sum(
        inner(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), Batch([])) for d in (32, 16, 8)
    )
    assert torch.allclose(got, want)
    assert not torch.allclose(got, 3 * inner(q, p, Batch([])))  # the prefixes are scored on their own


def test_matryoshka_setting_is_checked():
    from common.errors import ConfigError
    from training.config import TrainConfig

    assert TrainConfig("b", "o", matryoshka="384, 256,128").matryoshka_dims == [384, 256, 128]
    for bad in ("384,,128", "0,64", "a,b", "-64"):
        with pytest.raises(ConfigError, match="matryoshka"):
            TrainConfig("b", "o", matryoshka=bad).check()
