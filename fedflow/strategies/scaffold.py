"""SCAFFOLD: Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML 2020 (arXiv:1910.06378), with the paper's option II for the site controls.

Server control c and a control c_i kept at each site correct the local gradients
(g - c_i + c) so that sites drift less apart. After K local steps of size lr a site sets
c_i+ = c_i - c + (x - y_i) / (K * lr) and sends only (y_i - x, c_i+ - c_i); c_i itself never
leaves the site. The server moves x by server_lr times the mean delta and c by the sum of the
control deltas over the number of eligible sites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from fedflow.aggregate import mean_delta, mean_extra
from fedflow.capabilities import ADAPTIVE_STEPS, Refusal
from fedflow.params import NamedArrays
from fedflow.strategies.base import (
    EXTRA_SEPARATOR,
    ClientHook,
    GradientAdjustment,
    HookOutcome,
    LocalRound,
    check_weighting,
)
from fedflow.update import DecodedUpdate

if TYPE_CHECKING:
    import torch

SERVER_CONTROL = "scaffold_c"
CONTROL_DELTA = "scaffold_dc"


def site_controls(
    *,
    server_control: Mapping[str, np.ndarray],
    site_control: Mapping[str, np.ndarray],
    start: Mapping[str, np.ndarray],
    end: Mapping[str, np.ndarray],
    steps: int,
    lr: float,
) -> tuple[NamedArrays, NamedArrays]:
    """Option II: the site's new control and the control delta it sends (pure)."""
    if steps <= 0 or lr <= 0:
        raise ValueError(f"SCAFFOLD needs at least one local step and a positive lr (got {steps}, {lr})")
    new: NamedArrays = {}
    delta: NamedArrays = {}
    for name in start:
        new[name] = (
            site_control[name] - server_control[name] + (start[name] - end[name]) / (steps * lr)
        ).astype(np.float32)
        delta[name] = (new[name] - site_control[name]).astype(np.float32)
    return new, delta


class ControlCorrection:
    """Adds c - c_i (server control minus the site's control) to every gradient."""

    def __init__(self, correction: Mapping[str, np.ndarray]) -> None:

        self.correction = correction
        self.tensors: dict[str, torch.Tensor] = {}

    def begin(self, parameters: Mapping[str, torch.nn.Parameter]) -> None:
        """The correction as float32 tensors, one per trained parameter."""
        import torch

        self.tensors = {
            name: torch.from_numpy(np.asarray(self.correction[name], dtype=np.float32)) for name in parameters
        }

    def adjust(self, name: str, parameter: torch.nn.Parameter) -> None:
        """g - c_i + c."""
        assert parameter.grad is not None
        parameter.grad += self.tensors[name]


class ScaffoldHook:
    """SCAFFOLD at a site: the corrected loop, then its new control (kept) and the change (sent)."""

    changes_gradients = True

    @staticmethod
    def _controls(local: LocalRound) -> tuple[NamedArrays, NamedArrays]:
        server = local.broadcast.get(SERVER_CONTROL, {})
        if not server:
            raise ValueError("SCAFFOLD asked for, but the payload has no server control")
        # The site's own control starts at zero; it lives in the site's private state.
        site = {k: local.state[k] if k in local.state else np.zeros_like(v) for k, v in server.items()}
        return server, site

    def gradient_adjustment(self, local: LocalRound) -> GradientAdjustment | None:
        """c - c_i on every gradient."""
        server, site = self._controls(local)
        return ControlCorrection({k: server[k] - site[k] for k in server})

    def after_training(self, local: LocalRound, end: NamedArrays, steps: int) -> HookOutcome:
        """Option II: keep c_i+, send c_i+ - c_i."""
        server, site = self._controls(local)
        # With momentum an SGD step moves lr / (1 - momentum) per unit gradient, not lr.
        effective_lr = local.learning_rate / (1.0 - local.momentum)
        controls, control_delta = site_controls(
            server_control=server,
            site_control=site,
            start={k: local.start[k] for k in server},
            end={k: end[k] for k in server},
            steps=steps,
            lr=effective_lr,
        )
        return HookOutcome(extras={CONTROL_DELTA: control_delta}, state=controls)


class Scaffold:
    """SCAFFOLD on the server; the sites run the corrected local loop (`ScaffoldHook`)."""

    name = "scaffold"
    averaging = True  # with server_lr 1 and zero controls, identical deltas move x by that delta
    site_extras: tuple[str, ...] = (CONTROL_DELTA,)
    capabilities: frozenset[str] = frozenset()
    refuses: tuple[Refusal, ...] = (
        Refusal(
            ADAPTIVE_STEPS, "its control variates are built from SGD's step size, which Adam does not have"
        ),
    )

    def __init__(self, *, server_lr: float = 1.0, weighting: str = "uniform") -> None:
        self.server_lr = server_lr
        check_weighting(weighting)
        self.weighting = weighting
        self.control: NamedArrays = {}
        self.num_sites = 0

    def setup(self, global_weights: Mapping[str, np.ndarray], *, num_sites: int) -> None:
        """Zero server control; N = the number of eligible sites."""
        self.num_sites = num_sites
        if not self.control:
            self.control = {k: np.zeros(w.shape, np.float32) for k, w in global_weights.items()}

    def client_hook(self) -> ClientHook:
        """Ask the sites for the corrected loop and their control deltas."""
        return ScaffoldHook()

    def broadcast(self) -> NamedArrays:
        """The server control, sent with the weights."""
        return {f"{SERVER_CONTROL}{EXTRA_SEPARATOR}{k}": v for k, v in self.control.items()}

    def aggregate(
        self, round_number: int, global_weights: Mapping[str, np.ndarray], updates: Sequence[DecodedUpdate]
    ) -> NamedArrays:
        """x += server_lr * mean(dy); c += (|S| / N) * mean(dc)."""
        self.setup(global_weights, num_sites=max(self.num_sites, len(updates)))
        delta = mean_delta(updates, weighting=self.weighting)
        control_delta = mean_extra(updates, CONTROL_DELTA)
        share = len(updates) / self.num_sites
        out: NamedArrays = {}
        for name, weight in global_weights.items():
            out[name] = (weight + self.server_lr * delta[name]).astype(weight.dtype)
            self.control[name] = (self.control[name] + share * control_delta[name]).astype(np.float32)
        return out

    def state(self) -> NamedArrays:
        """The server control (and N, as a one-element array)."""
        return {**{f"c::{k}": v for k, v in self.control.items()}, "num_sites": np.array([self.num_sites])}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the server control and N."""
        self.control = {k[3:]: np.asarray(v) for k, v in state.items() if k.startswith("c::")}
        if "num_sites" in state:
            self.num_sites = int(np.asarray(state["num_sites"])[0])
