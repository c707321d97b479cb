"""(epsilon, delta) spent so far, from Opacus's Renyi-DP accountant (Mironov 2017).

Each round is one step of a subsampled Gaussian mechanism with the round's noise multiplier
and sampling rate (sites sampled / sites eligible). Fedflow samples a fixed number of sites
without replacement; the accountant's Poisson-sampling analysis is the usual approximation.
"""


class PrivacyAccountant:
    """Tracks the rounds run so far; the history is what a checkpoint persists."""

    def __init__(self, *, delta: float, history: list[tuple[float, float]] | None = None) -> None:
        self.delta = delta
        self.history: list[tuple[float, float]] = list(history or [])

    def _epsilon(self, history: list[tuple[float, float]]) -> float:
        if not history:
            return 0.0
        from opacus.accountants import RDPAccountant  # only runs with DP pay for importing Opacus

        accountant = RDPAccountant()
        for noise_multiplier, sample_rate in history:
            accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
        return float(accountant.get_epsilon(delta=self.delta))

    @property
    def epsilon(self) -> float:
        """Epsilon spent by the rounds recorded so far."""
        return self._epsilon(self.history)

    def epsilon_if(self, *, noise_multiplier: float, sample_rate: float) -> float:
        """Epsilon after one more round with these settings (to stop before a budget is passed)."""
        return self._epsilon([*self.history, (noise_multiplier, sample_rate)])

    def record(self, *, noise_multiplier: float, sample_rate: float) -> float:
        """Record a round; returns the new epsilon."""
        self.history.append((noise_multiplier, sample_rate))
        return self.epsilon
