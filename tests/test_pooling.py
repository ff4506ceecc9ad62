import torch

from training.pooling import AttentionPooling, cls_pool, mean_pool


def padded(batch_lengths, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = max(batch_lengths)
    tokens = torch.randn(len(batch_lengths), t, dim, generator=g)
    mask = torch.zeros(len(batch_lengths), t, dtype=torch.long)
    for i, n in enumerate(batch_lengths):
        mask[i, :n] = 1
    return tokens, mask


def test_mean_ignores_padding():
    tokens, mask = padded([2, 5])
    assert torch.allclose(mean_pool(tokens, mask)[0], tokens[0, :2].mean(0))
    assert torch.allclose(mean_pool(tokens, mask)[1], tokens[1].mean(0))
    changed = tokens.clone()
    changed[0, 2:] = 1e6  # garbage in the padding must not leak in
    assert torch.allclose(mean_pool(changed, mask), mean_pool(tokens, mask))


def test_cls_takes_first_token():
    tokens, mask = padded([3, 1])
    assert torch.equal(cls_pool(tokens, mask), tokens[:, 0])


def test_attention_starts_as_mean_and_ignores_padding():
    tokens, mask = padded([3, 6])
    attention = AttentionPooling(4)
    assert torch.allclose(attention.pool(tokens, mask), mean_pool(tokens, mask), atol=1e-6)
    torch.nn.init.normal_(attention.score.weight)
    out = attention.pool(tokens, mask)
    changed = tokens.clone()
    changed[0, 3:] = -1e3
    assert torch.allclose(attention.pool(changed, mask), out, atol=1e-6)
    assert not torch.allclose(out, mean_pool(tokens, mask), atol=1e-3)


def test_attention_save_load_roundtrip(tmp_path):
    attention = AttentionPooling(4)
    torch.nn.init.normal_(attention.score.weight)
    attention.save(tmp_path / "p")
    loaded = AttentionPooling.load(tmp_path / "p")
    tokens, mask = padded([2, 4])
    assert torch.equal(loaded.pool(tokens, mask), attention.pool(tokens, mask))
