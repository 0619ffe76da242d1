"""The KL coefficient beta: fixed, or adaptive after Ziegler et al. (2019), "Fine-Tuning Language
Models from Human Preferences": beta follows a proportional controller towards a target KL."""

from __future__ import annotations


class FixedKLController:
    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon).

    The error is clipped at +-20% so one noisy batch moves beta a little; with n_steps rollouts per
    update and horizon H, a KL held at twice the target multiplies beta by about e^(0.2 n / H)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
