"""Who answers: a site that misses `max_missed_calls` calls in a row is left out until it answers.

A miss is a call the site never answered (`MissedCall`: unreachable, its process stopped, timed
out). A site's own failure or refusal is an answer, not a miss. A left-out site is not sampled
for training and not part of the population the global metrics and the champion compare; every
round's evaluation still asks it, and an answer brings it back (it trains again from the next
round).
"""

from dataclasses import dataclass, field

from fedflow.federation.channel import MissedCall


@dataclass
class Attendance:
    """Misses in a row per site, and the sites left out (with why)."""

    max_missed_calls: int
    misses: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    news: list[str] = field(default_factory=list)  # what changed since `take_news`, for the log and MLflow

    def answered(self, site: str) -> bool:
        """The site answered a call; True when this brings a left-out site back."""
        self.misses.pop(site, None)
        if self.left_out.pop(site, None) is None:
            return False
        self.news.append(f"site {site} answers again: it rejoins the federation")
        return True

    def failed(self, site: str, error: BaseException) -> str | None:
        """A call of the site failed; the reason it is left out when this miss is one too many."""
        if not isinstance(error, MissedCall):
            return None
        self.misses[site] = self.misses.get(site, 0) + 1
        if site in self.left_out or self.misses[site] < self.max_missed_calls:
            return None
        reason = f"missed {self.misses[site]} calls in a row (last: {error})"
        self.left_out[site] = reason
        self.news.append(f"site {site} is left out of the federation: {reason}")
        return reason

    def record(self, site: str, error: BaseException | None) -> None:
        """One call of the site: answered (`error` None) or failed."""
        if error is None:
            self.answered(site)
        else:
            self.failed(site, error)

    def take_news(self) -> list[str]:
        """What changed since the last call (sites left out or back), once."""
        news, self.news = self.news, []
        return news

    def present(self, sites: list[str]) -> list[str]:
        """`sites` without the left-out ones, in order."""
        return [site for site in sites if site not in self.left_out]
