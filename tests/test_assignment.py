"""DEC eqs. 1-3 against a NumPy transcription of the paper, plus numerical edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dec_lightning.modules.assignment import kl_divergence, soft_assignment, target_distribution


# --- NumPy reference, written directly from Xie et al. (2016) -------------------------------------
def ref_soft_assignment(z: np.ndarray, mu: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 1: q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha+1)/2) / sum_j' (same for j')."""
    n, k = len(z), len(mu)
    q = np.empty((n, k))
    for i in range(n):
        for j in range(k):
            q[i, j] = (1.0 + np.sum((z[i] - mu[j]) ** 2) / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / q.sum(axis=1, keepdims=True)


def ref_target_distribution(q: np.ndarray) -> np.ndarray:
    """Eq. 3: p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'), f_j = sum_i q_ij."""
    f = q.sum(axis=0)
    w = q**2 / f
    return w / w.sum(axis=1, keepdims=True)


def ref_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Eq. 2: KL(P||Q) = sum_i sum_j p_ij log(p_ij / q_ij); the module documents a mean over rows i."""
    return np.sum(p * np.log(p / q)) / len(p)


def random_problem(seed: int, n: int = 50, k: int = 5, d: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(scale=2.0, size=(k, d))


@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_soft_assignment_matches_paper(alpha: float, seed: int) -> None:
    z, mu = random_problem(seed)
    q = soft_assignment(torch.from_numpy(z), torch.from_numpy(mu), alpha)
    np.testing.assert_allclose(q.numpy(), ref_soft_assignment(z, mu, alpha), rtol=1e-5, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_soft_assignment_float32_matches_paper(alpha: float) -> None:
    """The training dtype: float32 inputs still agree with the float64 reference."""
    z, mu = random_problem(2)
    q = soft_assignment(torch.from_numpy(z).float(), torch.from_numpy(mu).float(), alpha)
    assert q.dtype == torch.float32
    np.testing.assert_allclose(q.double().numpy(), ref_soft_assignment(z, mu, alpha), rtol=1e-4, atol=1e-7)


def test_alpha_changes_the_kernel() -> None:
    """alpha is actually used (guards against a kernel that ignores it)."""
    z, mu = random_problem(3)
    q1 = soft_assignment(torch.from_numpy(z), torch.from_numpy(mu), 1.0)
    q2 = soft_assignment(torch.from_numpy(z), torch.from_numpy(mu), 2.0)
    assert not torch.allclose(q1, q2, rtol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_target_distribution_matches_paper(seed: int) -> None:
    z, mu = random_problem(seed)
    q = ref_soft_assignment(z, mu, 1.0)
    p = target_distribution(torch.from_numpy(q))
    np.testing.assert_allclose(p.numpy(), ref_target_distribution(q), rtol=1e-5, atol=0)


def test_target_distribution_sharpens_and_balances() -> None:
    """Eq. 3 squares Q (sharper rows) and divides by cluster frequency (large clusters lose weight)."""
    base = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    # every row a cyclic shift of `base`: equal frequencies f_j, so P is just Q^2 renormalised
    q = torch.stack([base.roll(i) for i in range(4)] * 3)
    p = target_distribution(q)
    torch.testing.assert_close(p, q**2 / (q**2).sum(dim=1, keepdim=True))
    assert torch.all(p.max(dim=1).values > q.max(dim=1).values)
    # two identical rows, but cluster 0 is popular overall: it gets less of P's mass than of Q's
    popular = torch.tensor([[0.5, 0.5]] + [[0.9, 0.1]] * 5, dtype=torch.float64)
    p = target_distribution(popular)
    assert p[0, 0] < 0.5 < p[0, 1]


@pytest.mark.parametrize("seed", [0, 1])
def test_kl_divergence_matches_paper(seed: int) -> None:
    z, mu = random_problem(seed)
    q = ref_soft_assignment(z, mu, 1.0)
    p = ref_target_distribution(q)
    kl = kl_divergence(torch.from_numpy(p), torch.from_numpy(q))
    assert kl.ndim == 0
    np.testing.assert_allclose(kl.item(), ref_kl(p, q), rtol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_rows_sum_to_one(alpha: float) -> None:
    z, mu = random_problem(5, n=64, k=10, d=3)
    q = soft_assignment(torch.from_numpy(z).float(), torch.from_numpy(mu).float(), alpha)
    p = target_distribution(q)
    for dist in (q, p):
        assert torch.all(dist >= 0)
        torch.testing.assert_close(dist.sum(dim=1), torch.ones(len(z)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_large_inputs_stay_finite(alpha: float) -> None:
    """Embeddings and centres scaled x1000 (squared distances ~1e6-1e8): rows finite, sum to 1, match eq. 1."""
    z, mu = random_problem(6)
    z, mu = z * 1000.0, mu * 1000.0
    q = soft_assignment(torch.from_numpy(z).float(), torch.from_numpy(mu).float(), alpha)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(len(z)), rtol=0, atol=1e-5)
    np.testing.assert_allclose(q.double().numpy(), ref_soft_assignment(z, mu, alpha), rtol=1e-3, atol=1e-6)
    p = target_distribution(q)
    assert torch.isfinite(p).all()
    assert torch.isfinite(kl_divergence(p, q))


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_far_centre_gets_no_mass(alpha: float) -> None:
    """A centre far from every point: its column ~0, the rest equal eq. 1 over the remaining centres."""
    z, mu = random_problem(7)
    far = np.full((1, mu.shape[1]), 1e6)
    mu_far = np.concatenate([mu, far])
    q = soft_assignment(torch.from_numpy(z).float(), torch.from_numpy(mu_far).float(), alpha)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(len(z)), rtol=0, atol=1e-6)
    assert q[:, -1].max() < 1e-9
    np.testing.assert_allclose(q[:, :-1].double().numpy(), ref_soft_assignment(z, mu, alpha), rtol=1e-4, atol=1e-7)
    # eq. 3 divides by the far cluster's frequency f_j ~ 0: P must stay finite and put no mass there either
    p = target_distribution(q)
    assert torch.isfinite(p).all()
    assert p[:, -1].max() < 1e-6
    loss = kl_divergence(p, q)
    assert torch.isfinite(loss)


def test_every_centre_far_stays_finite() -> None:
    """All squared distances ~1e12 with a steep kernel (alpha=50): the naive kernel underflows to 0/0."""
    z, mu = random_problem(8)
    mu = mu + 1e6
    q = soft_assignment(torch.from_numpy(z).float(), torch.from_numpy(mu).float(), 50.0)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(len(z)), rtol=0, atol=1e-5)


def test_kl_zero_when_equal_positive_otherwise() -> None:
    z, mu = random_problem(9)
    q = torch.from_numpy(ref_soft_assignment(z, mu, 1.0))
    assert kl_divergence(q, q).item() == pytest.approx(0.0, abs=1e-12)
    p = target_distribution(q)
    assert kl_divergence(p, q).item() > 1e-4
    # Gibbs' inequality on arbitrary distinct distributions too
    rng = np.random.default_rng(10)
    a = torch.from_numpy(rng.dirichlet(np.ones(6), size=20))
    b = torch.from_numpy(rng.dirichlet(np.ones(6), size=20))
    assert kl_divergence(a, b).item() > 0
    # hard (one-hot) targets with zeros: 0 log 0 = 0, still finite
    one_hot = torch.nn.functional.one_hot(q.argmax(dim=1), q.shape[1]).double()
    assert torch.isfinite(kl_divergence(one_hot, q))
    np.testing.assert_allclose(kl_divergence(one_hot, q).item(), -np.log(q.max(dim=1).values.numpy()).mean(), rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_kl_gradient_matches_eq4(alpha: float) -> None:
    """Autograd of eq. 2 (P fixed) equals the paper's eq. 4 gradients for z_i and mu_j (times 1/N for the mean)."""
    z_np, mu_np = random_problem(11, n=20, k=4, d=3)
    z = torch.from_numpy(z_np).requires_grad_()
    mu = torch.from_numpy(mu_np).requires_grad_()
    q = soft_assignment(z, mu, alpha)
    p = target_distribution(q).detach()
    kl_divergence(p, q).backward()

    q_np, p_np = q.detach().numpy(), p.numpy()
    diff = z_np[:, None, :] - mu_np[None, :, :]  # z_i - mu_j, (n, k, d)
    kernel = 1.0 / (1.0 + np.sum(diff**2, axis=2) / alpha)  # (1 + ||z_i - mu_j||^2 / alpha)^-1
    coeff = (alpha + 1.0) / alpha * kernel * (p_np - q_np)  # (n, k)
    grad_z = np.einsum("ij,ijd->id", coeff, diff) / len(z_np)
    grad_mu = -np.einsum("ij,ijd->jd", coeff, diff) / len(z_np)
    np.testing.assert_allclose(z.grad.numpy(), grad_z, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(mu.grad.numpy(), grad_mu, rtol=1e-6, atol=1e-12)


def far_from_origin_problem(n: int = 64, k: int = 5, d: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 embeddings of norm ~1000 with centres at unit-scale offsets from the same point."""
    g = torch.Generator().manual_seed(12)
    base = torch.randn(d, generator=g, dtype=torch.float64)
    base = base / base.norm() * 1000.0
    z = base + torch.randn(n, d, generator=g, dtype=torch.float64)
    mu = base + torch.randn(k, d, generator=g, dtype=torch.float64)
    return z.float(), mu.float()


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_squared_distances_exact_far_from_origin(alpha: float) -> None:
    """Norm ~1000, offsets ~1, > 25 rows: matches float64 to float32 precision; cdist's matmul path does not."""
    z, mu = far_from_origin_problem()
    assert len(z) > 25  # cdist switches to ||a||^2 + ||b||^2 - 2ab above 25 rows
    # reference from the very same float32 values, so only the distance computation is compared
    z64, mu64 = z.double(), mu.double()
    ref_sq = ((z64[:, None, :] - mu64[None]) ** 2).sum(-1)
    assert 1.0 < ref_sq.min() and ref_sq.max() < 100.0

    old_sq = torch.cdist(z, mu).pow(2).double()
    old_err = ((old_sq - ref_sq).abs() / ref_sq).max().item()
    assert old_err > 1e-3  # the previous formula: several % off (0.04 relative, 0.37 absolute here)

    ref_q = ref_soft_assignment(z64.numpy(), mu64.numpy(), alpha)
    q = soft_assignment(z, mu, alpha)
    np.testing.assert_allclose(q.double().numpy(), ref_q, rtol=1e-5, atol=1e-7)
    old_q = torch.softmax(-(alpha + 1.0) / 2.0 * torch.log1p(old_sq / alpha), dim=1).numpy()
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(old_q, ref_q, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_soft_assignment_gradcheck(alpha: float) -> None:
    """Gradients reach both embeddings and centres, and match finite differences (float64)."""
    z_np, mu_np = random_problem(13, n=4, k=3, d=2)
    z = torch.from_numpy(z_np).requires_grad_()
    mu = torch.from_numpy(mu_np).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: soft_assignment(a, b, alpha), (z, mu))
