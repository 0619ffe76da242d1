"""PPO's arithmetic on small tensors, checked against values worked out by hand: GAE, the clipped
policy and value losses, InstructGPT's per-token reward, whitening and the adaptive KL controller;
and which weights the value loss reaches (ppo.value_trunk)."""

from __future__ import annotations

import math

import pytest
import torch

from agentkit.tuning.ppo.advantages import gae, masked_mean, masked_whiten, token_rewards
from agentkit.tuning.ppo.kl_control import AdaptiveKLController, FixedKLController
from agentkit.tuning.ppo.losses import entropy_of, logprobs_of, policy_loss, value_loss


def test_gae_matches_a_hand_computed_case() -> None:
    # gamma 0.9, lambda 0.8, three tokens, value 0 past the end:
    #   delta_2 = 1.0 + 0 - 0.5 = 0.5                       A_2 = 0.5
    #   delta_1 = 0.0 + 0.9*0.5 - 0.4 = 0.05                A_1 = 0.05 + 0.72*0.5  = 0.41
    #   delta_0 = 0.2 + 0.9*0.4 - 0.3 = 0.26                A_0 = 0.26 + 0.72*0.41 = 0.5552
    rewards = torch.tensor([[0.2, 0.0, 1.0]])
    values = torch.tensor([[0.3, 0.4, 0.5]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[0.5552, 0.41, 0.5]]), atol=1e-6)
    assert torch.allclose(ret, adv + values)


def test_gae_ends_the_episode_at_the_mask() -> None:
    # Row 2 ends after two tokens: whatever sits past the end (values, rewards) must not leak back.
    rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 7.0]])
    values = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # gamma = lambda = 1: A_t = sum of future rewards - V_t = 1 - 0.5 on both real tokens.
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]))
    assert ret[1, 2] == 0


def test_token_rewards_put_the_score_on_the_last_real_token_minus_beta_kl() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -2.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = token_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    # kl row 0: 0.5, 0, -1; row 1: 0, 1, (masked) 0.  reward = -0.1 * kl (+ score at the end).
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, -1.0], [0.0, 1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 0.1 + 2.0], [0.0, -0.1 - 1.0, 0.0]]))


def test_clipped_policy_loss_and_clip_fraction() -> None:
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.9, 1.1]]))  # ratios 1.5, 0.9, 1.1
    adv = torch.tensor([[1.0, 1.0, -1.0]])
    loss, frac = policy_loss(new, old, adv, torch.ones(1, 3), clip_range=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped: no credit past 1 + eps); token 1: max(-0.9, -0.9) = -0.9;
    # token 2 (A < 0): max(1.1, 1.1) = 1.1. Mean = (-1.2 - 0.9 + 1.1) / 3.
    assert loss.item() == pytest.approx((-1.2 - 0.9 + 1.1) / 3, abs=1e-6)
    assert frac.item() == pytest.approx(1 / 3)
    # Past the clip on the side that would lower the loss, the gradient is zero.
    new.requires_grad_(True)
    policy_loss(new, old, adv, torch.tensor([[1.0, 0.0, 0.0]]), clip_range=0.2)[0].backward()
    assert new.grad[0, 0] == 0


def test_clipped_value_loss_keeps_the_larger_error() -> None:
    old = torch.tensor([[0.0, 0.0]])
    new = torch.tensor([[1.0, 0.1]])
    ret = torch.tensor([[1.0, 1.0]])
    loss, frac = value_loss(new, old, ret, torch.ones(1, 2), clip_range_value=0.2)
    # token 0: unclipped (1-1)^2 = 0, clipped (0.2-1)^2 = 0.64 -> 0.64; token 1: 0.81 both ways.
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2, abs=1e-6)
    assert frac.item() == pytest.approx(0.5)


def test_whitening_is_zero_mean_unit_variance_over_the_mask() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    white = masked_whiten(values, mask)
    real = white[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.std().item() == pytest.approx(1.0, abs=1e-4)  # unbiased, as masked_var
    assert (white[:, 3] == 0).all()  # the padding values (100, -50) did not enter
    assert masked_mean(values, mask).item() == pytest.approx(3.5)
    # shift_mean=False rescales only: the mean is kept.
    assert masked_mean(masked_whiten(values, mask, shift_mean=False), mask).item() == pytest.approx(3.5, abs=1e-5)


def test_adaptive_kl_controller_moves_beta_towards_the_target() -> None:
    ctl = AdaptiveKLController(0.1, target=4.0, horizon=100)
    assert ctl.update(6.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))  # 1.5x target: +20% error, clipped
    ctl = AdaptiveKLController(0.1, target=4.0, horizon=100)
    assert ctl.update(3.0, n_steps=10) == pytest.approx(0.1 * (1 - 0.2 * 10 / 100))  # -25% clipped to -20%
    ctl = AdaptiveKLController(0.1, target=4.0, horizon=100)
    assert ctl.update(4.4, n_steps=10) == pytest.approx(0.1 * (1 + 0.1 * 0.1))  # +10%, within the clip
    assert FixedKLController(0.3).update(100.0, 10) == 0.3


def test_logprobs_and_entropy_of_a_known_distribution() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25]]]))
    assert logprobs_of(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.25))
    assert entropy_of(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_response_mask_keeps_tokens_up_to_and_including_the_first_eos() -> None:
    from agentkit.tuning.ppo.rollout import response_mask

    response = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [9, 9, 3, 2]])
    mask = response_mask(response, eos_ids=[2, 3])  # two end-of-turn ids: whichever comes first ends it
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]]


def test_detached_value_trunk_keeps_the_value_loss_off_the_policy_tiny_random_llama() -> None:
    # The logic under test is where the value loss's gradient goes, not the model: a tiny random Llama.
    from transformers import LlamaConfig, LlamaForCausalLM

    from agentkit.tuning.ppo.rollout import forward_response, new_value_head

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    lm = LlamaForCausalLM(config)
    head = new_value_head(16)
    torch.nn.init.normal_(head.weight)
    query, response = torch.randint(0, 32, (2, 3)), torch.randint(0, 32, (2, 4))
    for detach, trunk_moves in ((False, True), (True, False)):
        lm.zero_grad(set_to_none=True)
        head.zero_grad(set_to_none=True)
        _, values, _ = forward_response(lm, head, query, torch.ones_like(query), response,
                                        torch.ones(2, 4), detach_values=detach)  # fmt: skip
        values.pow(2).sum().backward()
        trunk_grads = [p.grad for p in lm.model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert bool(trunk_grads) is trunk_moves
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
