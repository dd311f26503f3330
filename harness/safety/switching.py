"""The switching gate: a scenario that switches live power runs on a live site only when the run
allows it (``--allow-switching``) and a person at the site confirms it, scenario by scenario.

A breaker opened on a bench energizes or de-energizes real conductors; the flag says the
engineer meant it when starting the run, the confirmation says nobody is working on the line
now. A non-interactive run (CI, a service) cannot confirm, so it refuses. Virtual sites switch
nothing real and pass the gate without a question.
"""

from __future__ import annotations

from harness.devices.prompts import OperatorStepError, PromptService


def switching_refusal(
    scenario: str, *, virtual: bool, allowed: bool, prompts: PromptService
) -> str | None:
    """Why ``scenario`` must not run, or None when it may switch."""
    if virtual:
        return None
    if not allowed:
        return "switches live power: refused on a live site without --allow-switching"
    try:
        prompts.confirm(
            "site",
            f"{scenario} is about to switch live power (open breakers, island the site). "
            "Confirm that the site is clear and the switching may start",
        )
    except OperatorStepError as exc:
        return f"switches live power: not confirmed ({exc})"
    return None
